//go:build !nokernel

package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("loop devices and mounts need root: run `sudo make test`, or `make unit`, which leaves the root tests out")
	}
}

// The whole life of a volume on the real kernel: made to its size and
// reserved on the host at once, mounted for the sandbox user, full at its
// size (ENOSPC for the writer), what was written kept across a remount,
// refused to a second mount and to another owner, and removed.
func TestAVolumeHoldsItsSizeAndNoMore(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := New(filepath.Join(t.TempDir(), "volumes"))
	const size = 24 << 20
	created, err := s.Ensure(ctx, "sb", "work", size, 1000, 1000, 1000)
	if err != nil || !created {
		t.Fatalf("Ensure = %v, %v", created, err)
	}
	info, err := s.Get("sb", "work")
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(info.Image, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 < size || st.Mode&0o777 != 0o600 || st.Uid != 0 {
		t.Fatalf("image: %d bytes allocated, mode %o, uid %d; want all %d reserved, 0600, root's", st.Blocks*512, st.Mode&0o777, st.Uid, size)
	}
	allocated := st.Blocks

	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := s.Mount("sb", "work", mnt, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Unmount(mnt) })
	if err := syscall.Stat(mnt, &st); err != nil || st.Uid != 1000 || st.Gid != 1000 {
		t.Fatalf("volume root: uid %d gid %d (%v), want 1000:1000", st.Uid, st.Gid, err)
	}
	if err := s.Mount("sb", "work", mnt+"2", 1000, 1000); !errors.Is(err, ErrInUse) {
		t.Fatalf("second mount of a mounted volume: %v, want ErrInUse", err)
	}
	if err := s.Remove("sb", "work"); !errors.Is(err, ErrInUse) {
		t.Fatalf("remove of a mounted volume: %v, want ErrInUse", err)
	}

	// Fill it: the write fails with ENOSPC near the size, not past it.
	f, err := os.Create(filepath.Join(mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var wrote int64
	for range 64 {
		n, err := f.Write(buf)
		wrote += int64(n)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write: %v, want ENOSPC", err)
			}
			break
		}
	}
	f.Close()
	if wrote >= size || wrote < size/2 {
		t.Fatalf("wrote %d bytes into a %d-byte volume", wrote, size)
	}
	used, err := Usage(info, mnt)
	if err != nil || used < wrote {
		t.Fatalf("Usage = %d, %v; wrote %d", used, err, wrote)
	}
	if err := syscall.Stat(info.Image, &st); err != nil || st.Blocks != allocated {
		t.Fatalf("image grew on the host: %d blocks, was %d", st.Blocks, allocated)
	}

	if err := Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	// Unmounted, the superblock says the same.
	if u, err := Usage(info, ""); err != nil || u < wrote {
		t.Fatalf("Usage from the superblock = %d, %v; wrote %d", u, err, wrote)
	}
	if _, err := s.Ensure(ctx, "sb", "work", size, 1001, 1001, 1001); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("another user's Ensure: %v, want ErrNotOwner", err)
	}
	if _, err := s.Ensure(ctx, "sb", "work", 2*size, 1000, 1000, 1000); err == nil {
		t.Fatal("Ensure with another size succeeded")
	}
	// Not root either: what another user left in a volume is not for
	// root's agent to read.
	if _, err := s.Ensure(ctx, "sb", "work", size, 0, 1000, 1000); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("root's Ensure of a member's volume: %v, want ErrNotOwner", err)
	}
	if created, err := s.Ensure(ctx, "sb", "work", size, 1000, 1000, 1000); err != nil || created {
		t.Fatalf("the owner's Ensure of its volume = %v, %v", created, err)
	}
	// Kept across a remount (with another sandbox user).
	if err := s.Mount("sb", "work", mnt, 1001, 1001); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "fill")); err != nil || fi.Size() != wrote {
		t.Fatalf("after a remount: %v, %v; want %d bytes", fi, err, wrote)
	}
	if err := Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Owner != 1000 || list[0].SizeBytes != size {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := s.Remove("sb", "work"); err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Fatalf("List after Remove = %+v, %v", list, err)
	}
	if _, err := os.Stat(info.Image); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("image after Remove: %v", err)
	}
}

// A volume that would leave the host's disk with less than its reserve is
// refused before anything is written.
func TestAVolumeLargerThanTheFreeSpaceIsRefused(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "volumes")
	s := New(dir)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(dir), &fs); err != nil {
		t.Fatal(err)
	}
	_, err := s.Ensure(context.Background(), "sb", "big", int64(fs.Bavail)*fs.Bsize, 0, 1000, 1000)
	if err == nil {
		t.Fatal("a volume of all the free space was made")
	}
	t.Log(err)
	if m, _ := filepath.Glob(filepath.Join(dir, "sb", "*")); len(m) != 0 {
		t.Fatalf("left behind: %v", m)
	}
}
