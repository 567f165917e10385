package profiles

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// SecretsDir is a secrets directory opened once and judged through its
// descriptor, with each of its files opened and judged once and kept open
// for the copy. Whoever owns a directory on the path may swap the secrets
// directory for a link to /etc, or a file in it for another, between a check
// of the path and a copy from it; a descriptor cannot be swapped, so what is
// staged is what was checked, and was opened with the credentials of
// whoever opened the directory.
type SecretsDir struct {
	f *os.File
	// Real is where the directory is, no link on the way.
	Real string
	// Names are its secret files, checked as SecretFiles describes, and
	// Files the same files, open, in the same order.
	Names []string
	Files []*os.File
}

// OpenSecrets opens the secrets directory dir as OpenSource does, then
// judges it through the descriptor: private (no access for group or
// others), holding only plain, private, small regular files. Close it when
// done.
func OpenSecrets(base, dir string, pol SourcePolicy) (*SecretsDir, error) {
	f, err := OpenSource(base, dir, pol, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	d := &SecretsDir{f: f, Real: f.Name()}
	if err := d.check(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// OpenSource opens p, a path from a profile (relative to base, the
// profile's directory, or absolute), refusing every symbolic link on the
// way, and a relative p must stay beneath base: the owner of a project
// directory can swap a directory in it for a link to someone else's at any
// moment, and must get an error, not that directory. The real path of what
// was opened (the returned file's Name) must pass the source policy. Use the
// file, never the path, from then on.
func OpenSource(base, p string, pol SourcePolicy, flags uint64) (*os.File, error) {
	dirfd := unix.AT_FDCWD
	if !filepath.IsAbs(p) {
		// The profile's directory too, with no link on the way: Load
		// pinned its real path, and a swap since is an error.
		bfd, err := openNoLinks(unix.AT_FDCWD, base, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return nil, fmt.Errorf("open the profile's directory %s without following links: %v (did it change?)", base, err)
		}
		defer unix.Close(bfd)
		dirfd = bfd
	}
	abs := p
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(base, p)
	}
	fd, err := openNoLinks(dirfd, p, flags)
	switch {
	case errors.Is(err, unix.ELOOP):
		real, _ := filepath.EvalSymlinks(abs)
		return nil, fmt.Errorf("%s: a symbolic link on the way (it resolves to %s); write the real path, with no link in it", abs, real)
	case errors.Is(err, unix.EXDEV):
		return nil, fmt.Errorf("%s is outside the profile's directory %s; write an absolute path for it", abs, base)
	case err != nil:
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s does not exist", abs)
		}
		return nil, fmt.Errorf("%s: %v", abs, err)
	}
	// A mount source is a directory or a regular file, nothing else (a
	// socket or a device renamed into place must not reach a sandbox).
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %v", abs, err)
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFDIR && t != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is neither a directory nor a regular file", abs)
	}
	at, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("locate %s: %w", abs, err)
	}
	if _, err := pol.Check(at); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), at), nil
}

func (d *SecretsDir) check() error {
	fi, err := d.f.Stat()
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o; others can read it", d.Real, perm)
	}
	entries, err := d.f.ReadDir(maxSecretFiles + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %v", d.Real, unwrapPathError(err))
	}
	if len(entries) > maxSecretFiles {
		return fmt.Errorf("%s holds more than %d files", d.Real, maxSecretFiles)
	}
	for _, e := range entries {
		f, err := d.open(e.Name())
		if err != nil {
			return err
		}
		d.Names, d.Files = append(d.Names, e.Name()), append(d.Files, f)
	}
	return nil
}

// open opens one secret file beneath the directory, refusing links and
// anything that is not a private regular file of at most 1 MiB with a plain
// name.
func (d *SecretsDir) open(name string) (*os.File, error) {
	path := filepath.Join(d.Real, name)
	if !reSecret.MatchString(name) {
		return nil, fmt.Errorf("%s: secret file names use letters, digits, '.', '_', '-' and do not start with '.'", path)
	}
	fd, err := openNoLinks(int(d.f.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symlink; secrets must be regular files", path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	info, err := f.Stat()
	switch {
	case err != nil:
		err = fmt.Errorf("%s: %v", path, err)
	case !info.Mode().IsRegular():
		err = fmt.Errorf("%s is not a regular file", path)
	case info.Mode().Perm() != 0o600 && info.Mode().Perm() != 0o400:
		err = fmt.Errorf("%s has mode %04o; want 0600 or 0400", path, info.Mode().Perm())
	case info.Size() > maxSecretSize:
		err = fmt.Errorf("%s is larger than 1 MiB", path)
	case info.Sys().(*syscall.Stat_t).Nlink != 1:
		// A hard link to a file of someone else's (a host key) would be
		// copied as if it were a secret of the project's.
		err = fmt.Errorf("%s has other hard links; a secret must be a file of its own", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Close releases the directory and its files.
func (d *SecretsDir) Close() error {
	for _, f := range d.Files {
		f.Close()
	}
	return d.f.Close()
}
