package profiles

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// MaxFileSize caps the profile, seccomp and config files clawguard reads:
// the largest real one is a few kilobytes, and a path such as /dev/zero or a
// huge file must not exhaust the root daemon's memory.
const MaxFileSize = 1 << 20

// ReadRegular reads a regular file of at most max bytes. Devices, FIFOs,
// sockets and directories are refused before they are opened for reading
// (see OpenRegular), so nobody can stall the reader or set a device off by
// naming one.
func ReadRegular(path string, max int64) ([]byte, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	return readRegular(f, path, max)
}

// OpenRegular opens a regular file for reading, refusing anything else
// before it is really opened: the path is opened O_PATH (which opens no
// device, blocks on no FIFO and runs no driver code), judged by fstat, and
// only a regular file is then reopened for reading through that
// descriptor, so what is read is what was judged. Opening /dev/watchdog
// for reading arms a hardware watchdog, whatever is done with it after.
// Close it when done.
func OpenRegular(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return reopenRegular(fd, path)
}

// reopenRegular takes an O_PATH descriptor, refuses it unless it is a
// regular file, and reopens it for reading. It closes fd.
func reopenRegular(fd int, path string) (*os.File, error) {
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fileType(st.Mode))
	}
	rfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(rfd), path), nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return "not a regular file"
}

// readRegularNoLinks is ReadRegular for an absolute path with no symbolic
// link on the way (see openNoLinks).
func readRegularNoLinks(path string, max int64) ([]byte, error) {
	return ReadBeneath(unix.AT_FDCWD, path, max)
}

// ReadBeneath reads the regular file at path, relative to dirfd and
// beneath it (or absolute), with no symbolic link on the way, of at most
// max bytes, judged before it is opened for reading as OpenRegular does.
func ReadBeneath(dirfd int, path string, max int64) ([]byte, error) {
	fd, err := openNoLinks(dirfd, path, unix.O_PATH)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f, err := reopenRegular(fd, path)
	if err != nil {
		return nil, err
	}
	return readRegular(f, path, max)
}

func readRegular(f *os.File, path string, max int64) ([]byte, error) {
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s is %d bytes; at most %d are read", path, fi.Size(), max)
	}
	// The size can grow after the stat: read one byte past the cap to tell.
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s grew past %d bytes while it was read", path, max)
	}
	return b, nil
}
