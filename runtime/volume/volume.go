// Package volume keeps sandboxes' size-capped writable storage: one ext4
// image per volume in a root-owned directory, loop-mounted while its sandbox
// runs.
//
// An image takes its whole size from the host's disk when it is created
// (fallocate), so a volume can never take more than it was given: an agent
// that fills it gets ENOSPC, and the host, the daemon and the other
// sandboxes write on. Project quota would cap a host directory in place, but
// it needs a kernel built with quota formats that many (these machines
// among them) lack; an image works on any kernel with loop devices.
package volume

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"
)

// Store is the directory the images live in: DIR/SANDBOX/NAME.img, with
// NAME.json beside it saying whose it is.
type Store struct{ dir string }

// New returns the store rooted at dir; nothing is created until a volume is.
func New(dir string) Store { return Store{dir: dir} }

// Info describes one volume.
type Info struct {
	Sandbox   string    `json:"sandbox"`
	Name      string    `json:"name"`
	SizeBytes int64     `json:"size_bytes"`
	Owner     uint32    `json:"owner_uid"`
	CreatedAt time.Time `json:"created_at"`
	// Image is the file that holds the filesystem.
	Image string `json:"image"`
}

// ErrNotOwner is returned when a volume belongs to another user.
var ErrNotOwner = errors.New("volume belongs to another user")

// ErrInUse is returned when a volume's image is attached to a loop device:
// mounting it a second time would corrupt it.
var ErrInUse = errors.New("volume is in use")

// Reserve is the part of the state directory's filesystem a new volume
// must leave free: volumes are there for the host's sake, and one that
// fills the disk to the last block would starve the daemon's own writes.
const Reserve = 20 // a twentieth, 5%

func (s Store) image(sandbox, name string) string {
	return filepath.Join(s.dir, sandbox, name+".img")
}
func (s Store) meta(sandbox, name string) string {
	return filepath.Join(s.dir, sandbox, name+".json")
}

// Ensure makes sure the sandbox's volume name exists with size bytes and
// belongs to owner. A new one is preallocated, formatted ext4 and its root
// directory owned by uid:gid. It reports whether it created the volume.
//
// Root is held to the owner too: a member could otherwise prepare a volume
// under a name root runs (the built-in "openclaw", say) and have its files
// read by root's agent, a prompt injection planted in advance.
func (s Store) Ensure(ctx context.Context, sandbox, name string, size int64, owner, uid, gid uint32) (created bool, err error) {
	size = roundUp(size)
	info, err := s.Get(sandbox, name)
	fresh := false
	switch {
	case err == nil:
		if info.Owner != owner {
			return false, fmt.Errorf("volume %s of sandbox %s: %w (uid %d): run under another --name, or remove it first (`clawguard volume rm %s %s`, root or its owner)",
				name, sandbox, ErrNotOwner, info.Owner, sandbox, name)
		}
		if info.SizeBytes != size {
			return false, fmt.Errorf("volume %s of sandbox %s is %s, the profile asks for %s: set size: %s, or remove the volume (and what is in it) with `clawguard volume rm %s %s`",
				name, sandbox, formatSize(info.SizeBytes), formatSize(size), formatSize(info.SizeBytes), sandbox, name)
		}
		if _, err := os.Stat(info.Image); err == nil {
			return false, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("volume %s of sandbox %s: %w", name, sandbox, err)
		}
		// The record is written first: a crash before the image was
		// renamed into place left a claim and no data.
	case errors.Is(err, os.ErrNotExist):
		info = Info{Sandbox: sandbox, Name: name, SizeBytes: size, Owner: owner, CreatedAt: time.Now().UTC(), Image: s.image(sandbox, name)}
		if err := os.MkdirAll(filepath.Join(s.dir, sandbox), 0o700); err != nil {
			return false, fmt.Errorf("create volume directory: %w", err)
		}
		b, _ := json.MarshalIndent(info, "", "  ")
		if err := renameio.WriteFile(s.meta(sandbox, name), append(b, '\n'), 0o600); err != nil {
			return false, fmt.Errorf("record volume %s of sandbox %s: %w", name, sandbox, err)
		}
		fresh = true
	default:
		return false, err
	}
	if err := makeImage(ctx, info.Image, size, uid, gid); err != nil {
		if fresh {
			_ = os.Remove(s.meta(sandbox, name))
			_ = os.Remove(filepath.Join(s.dir, sandbox))
		}
		return false, fmt.Errorf("create volume %s of sandbox %s (%s): %w", name, sandbox, formatSize(size), err)
	}
	return true, nil
}

// makeImage writes a preallocated ext4 image at path, through a temporary
// name so that a failure leaves nothing that looks like a volume.
func makeImage(ctx context.Context, path string, size int64, uid, gid uint32) (retErr error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(path), &fs); err != nil {
		return err
	}
	avail, total := int64(fs.Bavail)*fs.Bsize, int64(fs.Blocks)*fs.Bsize
	if avail-size < total/Reserve {
		return fmt.Errorf("the state directory's filesystem has %s free of %s; a volume must leave %s free: choose a smaller size or free space",
			formatSize(avail), formatSize(total), formatSize(total/Reserve))
	}
	tmp := path + ".new"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		f.Close()
		if retErr != nil {
			os.Remove(tmp)
		}
	}()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return fmt.Errorf("reserve %s on the host's disk: %w", formatSize(size), err)
	}
	mkfs, err := findMkfs()
	if err != nil {
		return err
	}
	// nodiscard keeps the reservation: mke2fs would otherwise punch the
	// blocks out again. No reserved blocks: the filesystem is all the
	// agent's. The root directory is the sandbox user's.
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-t", "ext4", "-m", "0",
		"-E", fmt.Sprintf("nodiscard,root_owner=%d:%d", uid, gid), tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", mkfs, err, strings.TrimSpace(string(out)))
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// findMkfs finds mke2fs where Debian puts it, whatever PATH says.
func findMkfs() (string, error) {
	if p, err := exec.LookPath("mke2fs"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mke2fs", "/sbin/mke2fs"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("mke2fs not found: install e2fsprogs (apt-get install e2fsprogs)")
}

// Get reads the record of one volume.
func (s Store) Get(sandbox, name string) (Info, error) {
	b, err := os.ReadFile(s.meta(sandbox, name))
	if err != nil {
		return Info{}, err
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("volume %s of sandbox %s: %w", name, sandbox, err)
	}
	info.Sandbox, info.Name, info.Image = sandbox, name, s.image(sandbox, name)
	return info, nil
}

// List returns every volume, by sandbox and name.
func (s Store) List() ([]Info, error) {
	metas, err := filepath.Glob(filepath.Join(s.dir, "*", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, m := range metas {
		sandbox, name := filepath.Base(filepath.Dir(m)), strings.TrimSuffix(filepath.Base(m), ".json")
		info, err := s.Get(sandbox, name)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Sandbox != out[j].Sandbox {
			return out[i].Sandbox < out[j].Sandbox
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Remove deletes a volume and everything in it. A volume in use is
// refused.
func (s Store) Remove(sandbox, name string) error {
	img := s.image(sandbox, name)
	if _, err := os.Stat(s.meta(sandbox, name)); err != nil {
		return fmt.Errorf("volume %s of sandbox %s: %w", name, sandbox, err)
	}
	if dev, err := attached(img); err != nil {
		return err
	} else if dev != "" {
		return fmt.Errorf("volume %s of sandbox %s: %w (%s): stop the sandbox first", name, sandbox, ErrInUse, dev)
	}
	for _, p := range []string{img, img + ".new", s.meta(sandbox, name)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove volume %s of sandbox %s: %w", name, sandbox, err)
		}
	}
	_ = os.Remove(filepath.Join(s.dir, sandbox)) // only if empty
	return nil
}

// Mount mounts the sandbox's volume at target (created, mode 0700): nosuid,
// nodev and noexec, private, its root directory owned by uid:gid (the
// sandbox's user may have changed since the volume was made).
func (s Store) Mount(sandbox, name, target string, uid, gid uint32) error {
	img := s.image(sandbox, name)
	// Two mounts of one ext4 image through two loop devices would
	// corrupt it: an earlier mount not yet gone is an error. The kernel
	// frees an autoclear loop device a moment after its last unmount, so
	// a stop just before is given that moment.
	for i := 0; ; i++ {
		dev, err := attached(img)
		if err != nil {
			return err
		}
		if dev == "" {
			break
		}
		if i == 100 {
			return fmt.Errorf("volume %s of sandbox %s: %w (%s still holds it)", name, sandbox, ErrInUse, dev)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	m := mount.Mount{Type: "ext4", Source: img, Options: []string{"loop", "nosuid", "nodev", "noexec", "rw"}}
	if err := m.Mount(target); err != nil {
		return fmt.Errorf("mount volume %s of sandbox %s: %w", name, sandbox, err)
	}
	if err := unix.Mount("", target, "", unix.MS_PRIVATE, ""); err != nil {
		_ = Unmount(target)
		return fmt.Errorf("make volume %s private: %w", name, err)
	}
	if err := unix.Lchown(target, int(uid), int(gid)); err != nil {
		_ = Unmount(target)
		return fmt.Errorf("give volume %s to %d:%d: %w", name, uid, gid, err)
	}
	return nil
}

// Unmount unmounts a volume mounted at target and removes the mount point.
// It waits for the filesystem to be really gone, not detached lazily: the
// next start mounts the same image again, and it must find it free. Not
// mounted is fine.
func Unmount(target string) error {
	var err error
	for range 50 {
		if err = unix.Unmount(target, 0); !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Usage is what a volume holds: from the mounted filesystem when it is
// mounted at mountpoint, else from the image's superblock, which ext4
// brings up to date when it is unmounted.
func Usage(info Info, mountpoint string) (used int64, err error) {
	if mountpoint != "" {
		var fs unix.Statfs_t
		if err := unix.Statfs(mountpoint, &fs); err == nil && fs.Type == unix.EXT4_SUPER_MAGIC {
			return int64(fs.Blocks-fs.Bfree) * fs.Bsize, nil
		}
	}
	f, err := os.Open(info.Image)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return superblockUsed(f)
}

// superblockUsed reads the used bytes from an ext4 superblock (at byte
// 1024 of the image).
func superblockUsed(r io.ReaderAt) (int64, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return 0, fmt.Errorf("read superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xEF53 {
		return 0, errors.New("not an ext4 image")
	}
	blocks, free := uint64(le.Uint32(sb[0x04:])), uint64(le.Uint32(sb[0x0C:]))
	const incompat64bit = 0x80
	if le.Uint32(sb[0x60:])&incompat64bit != 0 {
		blocks |= uint64(le.Uint32(sb[0x150:])) << 32
		free |= uint64(le.Uint32(sb[0x158:])) << 32
	}
	logSize := le.Uint32(sb[0x18:])
	if logSize > 6 || free > blocks {
		return 0, errors.New("corrupt superblock")
	}
	return int64(blocks-free) << (10 + logSize), nil
}

// attached returns the loop device that has img as its backing file, or "".
func attached(img string) (string, error) {
	real, err := filepath.EvalSymlinks(img)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	devs, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return "", err
	}
	for _, d := range devs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // detached meanwhile
		}
		if strings.TrimSuffix(string(b), "\n") == real {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(d))), nil
		}
	}
	return "", nil
}

// roundUp rounds a size up to whole 4 KiB blocks.
func roundUp(n int64) int64 { return (n + 4095) &^ 4095 }

// formatSize writes a byte count as the profile does, in whole MiB
// (volumes are at least 16 MiB; a host's free space rounds down).
func formatSize(b int64) string { return strconv.FormatInt(b>>20, 10) + "M" }
