// Package volume keeps sandboxes' size-capped writable storage: one ext4
// image per volume in a root-owned directory, attached to a loop device
// while its sandbox runs, for the runtime to mount inside the sandbox.
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
	Sandbox   string `json:"sandbox"`
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
	Owner     uint32 `json:"owner_uid"`
	// UID and GID own the filesystem's root directory: the sandbox user
	// it was last attached for.
	UID       uint32    `json:"uid"`
	GID       uint32    `json:"gid"`
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

// Want is one volume a sandbox asks for.
type Want struct {
	Name string
	Size int64
}

// Ensure makes sure each volume the sandbox asks for exists with its size
// and belongs to owner, and reports the ones it made. Every volume is
// checked before any is made: the existing ones must be owner's and of the
// size asked for, the new ones must fit the host's disk together. A new one
// is preallocated, formatted ext4 and its root directory owned by uid:gid.
// If making one fails, the ones made before it are removed again: a refused
// start leaves nothing reserved.
//
// Root is held to the owner too: a member could otherwise prepare a volume
// under a name root runs (the built-in "openclaw", say) and have its files
// read by root's agent, a prompt injection planted in advance.
func (s Store) Ensure(ctx context.Context, sandbox string, wants []Want, owner, uid, gid uint32) (created []string, err error) {
	var fresh []Want
	var need int64
	for _, w := range wants {
		size := roundUp(w.Size)
		info, err := s.Get(sandbox, w.Name)
		switch {
		case errors.Is(err, os.ErrNotExist):
			fresh, need = append(fresh, Want{w.Name, size}), need+size
			continue
		case err != nil:
			return nil, err
		case info.Owner != owner:
			return nil, fmt.Errorf("volume %s of sandbox %s: %w (uid %d): run under another --name, or remove it first (`clawguard volume rm %s %s`, root or its owner)",
				w.Name, sandbox, ErrNotOwner, info.Owner, sandbox, w.Name)
		case info.SizeBytes != size:
			return nil, fmt.Errorf("volume %s of sandbox %s is %s, the profile asks for %s: set size: %s, or remove the volume (and what is in it) with `clawguard volume rm %s %s`",
				w.Name, sandbox, formatSize(info.SizeBytes), formatSize(size), formatSize(info.SizeBytes), sandbox, w.Name)
		}
		if _, err := os.Stat(info.Image); errors.Is(err, os.ErrNotExist) {
			// The record is written first: a crash before the image
			// was renamed into place left a claim and no data.
			fresh, need = append(fresh, Want{w.Name, size}), need+size
		} else if err != nil {
			return nil, fmt.Errorf("volume %s of sandbox %s: %w", w.Name, sandbox, err)
		}
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Join(s.dir, sandbox), 0o700); err != nil {
		return nil, fmt.Errorf("create volume directory: %w", err)
	}
	for _, w := range fresh {
		_ = os.Remove(s.image(sandbox, w.Name) + ".new") // a crash's leftover, not to be counted
	}
	if err := roomFor(filepath.Join(s.dir, sandbox), need); err != nil {
		return nil, fmt.Errorf("volumes of sandbox %s (%s new): %w", sandbox, formatSize(need), err)
	}
	defer func() {
		if err != nil {
			for _, n := range created {
				_ = s.Remove(sandbox, n)
			}
			created = nil
		}
	}()
	for _, w := range fresh {
		info := Info{Sandbox: sandbox, Name: w.Name, SizeBytes: w.Size, Owner: owner, UID: uid, GID: gid, CreatedAt: time.Now().UTC(), Image: s.image(sandbox, w.Name)}
		if err := s.record(info); err != nil {
			return created, err
		}
		created = append(created, w.Name)
		if err := makeImage(ctx, info.Image, w.Size, uid, gid); err != nil {
			return created, fmt.Errorf("create volume %s of sandbox %s (%s): %w", w.Name, sandbox, formatSize(w.Size), err)
		}
	}
	return created, nil
}

func (s Store) record(info Info) error {
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := renameio.WriteFile(s.meta(info.Sandbox, info.Name), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("record volume %s of sandbox %s: %w", info.Name, info.Sandbox, err)
	}
	return nil
}

// roomFor checks that need bytes leave the filesystem of dir its reserve.
func roomFor(dir string, need int64) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return err
	}
	avail, total := int64(fs.Bavail)*fs.Bsize, int64(fs.Blocks)*fs.Bsize
	if avail-need < total/Reserve {
		return fmt.Errorf("the state directory's filesystem has %s free of %s; volumes must leave %s free: ask for less or free space",
			formatSize(avail), formatSize(total), formatSize(total/Reserve))
	}
	return nil
}

// makeImage writes a preallocated ext4 image at path, through a temporary
// name so that a failure leaves nothing that looks like a volume.
func makeImage(ctx context.Context, path string, size int64, uid, gid uint32) (retErr error) {
	tmp := path + ".new"
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
	noCopyOnWrite(f)
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return fmt.Errorf("reserve %s on the host's disk: %w", formatSize(size), err)
	}
	mkfs, err := findTool("mke2fs")
	if err != nil {
		return err
	}
	// The reservation must survive: mke2fs would discard (punch out) the
	// blocks, and ext4's lazy initialisation, once the volume is mounted,
	// zeroes its inode tables through the loop device by punching holes,
	// handing blocks back to the host that the agent's writes would later
	// need again. So nothing is discarded and everything is initialised
	// now. No reserved blocks: the filesystem is all the agent's. The root
	// directory is the sandbox user's.
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-t", "ext4", "-m", "0",
		"-E", fmt.Sprintf("nodiscard,lazy_itable_init=0,lazy_journal_init=0,root_owner=%d:%d", uid, gid), tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", mkfs, err, strings.TrimSpace(string(out)))
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// noCopyOnWrite asks a copy-on-write filesystem (btrfs) to write the image
// in place: otherwise every block the agent rewrites would take new space
// on the host, and the reservation would cap nothing. Best effort: other
// filesystems write in place anyway.
func noCopyOnWrite(f *os.File) {
	var fs unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &fs) != nil || fs.Type != unix.BTRFS_SUPER_MAGIC {
		return
	}
	// FS_NOCOW_FL, from linux/fs.h; x/sys does not name it.
	const noCOW = 0x00800000
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		_ = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|noCOW))
	}
}

// findTool finds an e2fsprogs tool where Debian puts it, whatever PATH
// says.
func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/" + name, "/sbin/" + name} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install e2fsprogs (apt-get install e2fsprogs)", name)
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

// List returns every volume, by sandbox and name. Records that cannot be
// read are left out and reported in the error, beside the others.
func (s Store) List() ([]Info, error) {
	metas, err := filepath.Glob(filepath.Join(s.dir, "*", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Info
	var bad []error
	for _, m := range metas {
		sandbox, name := filepath.Base(filepath.Dir(m)), strings.TrimSuffix(filepath.Base(m), ".json")
		info, err := s.Get(sandbox, name)
		if err != nil {
			// One unreadable record must not hide the others, nor keep
			// them from being listed or removed.
			bad = append(bad, err)
			continue
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Sandbox != out[j].Sandbox {
			return out[i].Sandbox < out[j].Sandbox
		}
		return out[i].Name < out[j].Name
	})
	return out, errors.Join(bad...)
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

// Attach attaches the sandbox's volume to a free loop device and returns
// the device, open. The runtime mounts the device inside the sandbox's own
// mount namespace, never on the host, where any user's new mount namespace
// would take a copy of the mount and keep the filesystem alive after the
// sandbox. The device clears itself once it is closed and no longer
// mounted: the caller closes it after the sandbox's task has mounted it, or
// on failure.
//
// The filesystem's root directory is given to uid:gid first if it was
// someone else's (the profile's user changed since the last run).
func (s Store) Attach(ctx context.Context, sandbox, name string, uid, gid uint32) (*os.File, error) {
	info, err := s.Get(sandbox, name)
	if err != nil {
		return nil, fmt.Errorf("volume %s of sandbox %s: %w", name, sandbox, err)
	}
	// Two attachments of one ext4 image through two loop devices would
	// corrupt it: an earlier one not yet gone is an error. The kernel
	// frees an autoclear device a moment after its last unmount, so a stop
	// just before is given that moment.
	for i := 0; ; i++ {
		dev, err := attached(info.Image)
		if err != nil {
			return nil, err
		}
		if dev == "" {
			break
		}
		if i == 100 {
			return nil, fmt.Errorf("volume %s of sandbox %s: %w: %s still holds it, for a process that keeps the last run's mounts (losetup -l %s; it frees itself when that process ends)",
				name, sandbox, ErrInUse, dev, dev)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if info.UID != uid || info.GID != gid {
		if err := chownRoot(ctx, info.Image, uid, gid); err != nil {
			return nil, fmt.Errorf("give volume %s of sandbox %s to %d:%d: %w", name, sandbox, uid, gid, err)
		}
		info.UID, info.GID = uid, gid
		if err := s.record(info); err != nil {
			return nil, err
		}
	}
	dev, err := mount.SetupLoop(info.Image, mount.LoopParams{Autoclear: true})
	if err != nil {
		return nil, fmt.Errorf("attach volume %s of sandbox %s: %w", name, sandbox, err)
	}
	return dev, nil
}

// chownRoot changes the owner of an unmounted image's root directory.
func chownRoot(ctx context.Context, img string, uid, gid uint32) error {
	debugfs, err := findTool("debugfs")
	if err != nil {
		return err
	}
	for _, set := range []string{fmt.Sprintf("sif / uid %d", uid), fmt.Sprintf("sif / gid %d", gid)} {
		if out, err := exec.CommandContext(ctx, debugfs, "-w", "-R", set, img).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", debugfs, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// InUse returns the loop device the volume's image is attached to, or ""
// when it is free.
func InUse(info Info) (string, error) { return attached(info.Image) }

// Usage is what a volume holds: from the mounted filesystem when a path
// into it is given (the sandbox's, through /proc/PID/root), else from the
// image's superblock, which ext4 brings up to date when it is unmounted.
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
