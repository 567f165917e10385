package enforce

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// stageMounts binds each mount source, from the descriptor the source
// policy judged, onto dir/N in the state directory; runc binds from there.
// runc cannot bind from the descriptor itself (a mount in the host's
// namespace is not bindable from the container's), and binding from the
// profile's path again would let whoever owns a directory on it swap in
// another between the check and the mount.
func stageMounts(sources []*os.File, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for i, f := range sources {
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("mount source %s: %w", f.Name(), err)
		}
		dst := filepath.Join(dir, strconv.Itoa(i))
		if fi.IsDir() {
			err = os.Mkdir(dst, 0o700)
		} else {
			err = os.WriteFile(dst, nil, 0o600)
		}
		if err != nil {
			return fmt.Errorf("mount point for %s: %w", f.Name(), err)
		}
		src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", f.Name(), err)
		}
		// Private: nothing mounted under the source later reaches the
		// sandbox, and nothing of the sandbox's propagates back.
		if err := unix.Mount("", dst, "", unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make %s private: %w", dst, err)
		}
	}
	return nil
}

// unstageMounts unmounts every staged source and removes the directory.
// Missing is fine.
func unstageMounts(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
