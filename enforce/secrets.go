package enforce

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/clawguard/clawguard/profiles"
)

// stageSecrets copies each secret file into a fresh tmpfs at dst (so secret
// values never touch a disk clawguard writes), owned by uid:gid with mode
// 0400. The files are read from src, opened and judged when the sandbox was
// prepared (profiles.OpenSecrets): a directory or file swapped since cannot
// change what is copied.
//
// A file with a placeholder gets the placeholder instead of its contents:
// its secret is bound to hosts, and the broker alone holds it.
func stageSecrets(src *profiles.SecretsDir, placeholders map[string]string, dst string, uid, gid uint32) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	size := int64(1 << 20)
	for _, f := range src.Files {
		if fi, err := f.Stat(); err == nil {
			size += fi.Size() + 4096
		}
	}
	opts := "mode=0700,size=" + strconv.FormatInt(size, 10)
	if err := unix.Mount("tmpfs", dst, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount secrets tmpfs at %s: %w", dst, err)
	}
	for i, n := range src.Names {
		var in io.Reader = src.Files[i]
		if p, ok := placeholders[n]; ok {
			in = strings.NewReader(p)
		}
		if err := copySecret(in, filepath.Join(dst, n), uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func copySecret(in io.Reader, dst string, uid, gid uint32) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("stage secret %s: %w", filepath.Base(dst), err)
	}
	// The file was checked at most 1 MiB; it may have grown since.
	if _, err := io.Copy(out, io.LimitReader(in, 1<<20)); err != nil {
		out.Close()
		return fmt.Errorf("copy secret %s: %w", filepath.Base(dst), err)
	}
	if err := out.Chown(int(uid), int(gid)); err != nil {
		out.Close()
		return fmt.Errorf("chown secret %s: %w", filepath.Base(dst), err)
	}
	if err := out.Chmod(0o400); err != nil {
		out.Close()
		return fmt.Errorf("chmod secret %s: %w", filepath.Base(dst), err)
	}
	return out.Close()
}

// unstageSecrets unmounts the tmpfs (its contents vanish with it) and removes
// the mount point. Missing is fine.
func unstageSecrets(dst string) error {
	// A start that was retried by hand may have stacked mounts; peel them
	// off until the directory is a plain directory again.
	for i := 0; ; i++ {
		err := unix.Unmount(dst, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("unmount secrets %s: %w", dst, err)
		}
		if i == 16 {
			return fmt.Errorf("unmount secrets %s: still mounted after %d unmounts", dst, i+1)
		}
	}
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dst, err)
	}
	return nil
}
