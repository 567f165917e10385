package profiles

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxFileSize caps the profile, seccomp and config files clawguard reads:
// the largest real one is a few kilobytes, and a path such as /dev/zero or a
// huge file must not exhaust the root daemon's memory.
const MaxFileSize = 1 << 20

// ReadRegular reads a regular file of at most max bytes. Devices, FIFOs,
// sockets and directories are refused before anything is read; a FIFO is
// opened non-blocking, so nobody can stall the reader by naming one.
func ReadRegular(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return readRegular(f, path, max)
}

// OpenRegular opens a regular file for reading, refusing anything else as
// ReadRegular does, without reading it. Close it when done.
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readRegularNoLinks is ReadRegular for an absolute path with no symbolic
// link on the way (see openNoLinks).
func readRegularNoLinks(path string, max int64) ([]byte, error) {
	fd, err := openNoLinks(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return readRegular(os.NewFile(uintptr(fd), path), path, max)
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
