package profiles

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// openNoLinks opens path relative to dirfd (or absolute) without following
// any symbolic link; a relative path must also stay beneath dirfd (no ".."
// may leave it). openat2 does it in one call. Where openat2 is missing or
// filtered (kernels before 5.6; systemd's RestrictSUIDSGID= answers ENOSYS
// because it cannot inspect openat2's flags), the same is done a component
// at a time: each opened with O_NOFOLLOW relative to the one before, so no
// link is ever followed either.
func openNoLinks(dirfd int, path string, flags uint64) (int, error) {
	resolve := uint64(unix.RESOLVE_NO_SYMLINKS)
	if !strings.HasPrefix(path, "/") {
		resolve |= unix.RESOLVE_BENEATH
	}
	fd, err := unix.Openat2(dirfd, path, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: resolve})
	if !errors.Is(err, unix.ENOSYS) {
		return fd, err
	}
	return walkNoLinks(dirfd, path, flags)
}

func walkNoLinks(dirfd int, path string, flags uint64) (int, error) {
	start, from := dirfd, "."
	if strings.HasPrefix(path, "/") {
		start, from = unix.AT_FDCWD, "/"
	}
	var parts []string
	for _, p := range strings.Split(path, "/") {
		switch p {
		case "", ".":
		case "..":
			// openat2 would allow a ".." that stays beneath; refusing
			// every one is simpler and only stricter.
			return -1, unix.EXDEV
		default:
			parts = append(parts, p)
		}
	}
	cur, err := unix.Openat(start, from, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for i, p := range parts {
		last := i == len(parts)-1
		fl := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			fl = int(flags) | unix.O_NOFOLLOW | unix.O_CLOEXEC
		}
		next, err := unix.Openat(cur, p, fl, 0)
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			return -1, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(next)
			return -1, unix.ELOOP
		}
		if !last && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			unix.Close(next)
			return -1, unix.ENOTDIR
		}
		cur = next
	}
	if len(parts) == 0 {
		// The start itself, opened as asked.
		unix.Close(cur)
		return unix.Openat(start, from, int(flags)|unix.O_CLOEXEC, 0)
	}
	return cur, nil
}
