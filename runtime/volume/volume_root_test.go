//go:build !nokernel

package volume

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("loop devices and mounts need root: run `sudo make test`, or `make unit`, which leaves the root tests out")
	}
}

// mountAttached mounts an attached volume as the runtime would, closes the
// device (the mount holds it now) and returns the mount point.
func mountAttached(t *testing.T, dev *os.File) string {
	t.Helper()
	mnt := t.TempDir()
	if err := unix.Mount(dev.Name(), mnt, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		dev.Close()
		t.Fatal(err)
	}
	dev.Close()
	t.Cleanup(func() { _ = unix.Unmount(mnt, 0) })
	return mnt
}

// waitFree waits for the kernel to clear a volume's loop device after its
// last unmount.
func waitFree(t *testing.T, info Info) {
	t.Helper()
	for range 200 {
		if dev, _ := InUse(info); dev == "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the loop device did not clear itself after the unmount")
}

// The whole life of a volume on the real kernel: made to its size and
// reserved on the host at once, attached and mounted for the sandbox user,
// full at its size (ENOSPC for the writer) with the host's blocks
// unchanged, refused a second attachment and removal while in use, its loop
// device gone with the mount, what was written kept for the next run (of
// another sandbox user), refused to another owner and to root, removed.
func TestAVolumeHoldsItsSizeAndNoMore(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := New(filepath.Join(t.TempDir(), "volumes"))
	const size = 24 << 20
	created, err := s.Ensure(ctx, "sb", []Want{{"work", size}}, 1000, 1000, 1000)
	if err != nil || len(created) != 1 {
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

	dev, err := s.Attach(ctx, "sb", "work", 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountAttached(t, dev)
	if err := syscall.Stat(mnt, &st); err != nil || st.Uid != 1000 || st.Gid != 1000 {
		t.Fatalf("volume root: uid %d gid %d (%v), want 1000:1000", st.Uid, st.Gid, err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := s.Attach(short, "sb", "work", 1000, 1000); err == nil {
		t.Fatal("a second attachment of a mounted volume succeeded")
	}
	cancel()
	if err := s.Remove("sb", "work"); !errors.Is(err, ErrInUse) {
		t.Fatalf("remove of a mounted volume: %v, want ErrInUse", err)
	}

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
	// ext4 would initialise its inode tables lazily, seconds after the
	// mount, by punching holes through the loop device (measured: 64M of
	// reservation lost 4M in 4 s); the image is made with them initialised,
	// so the host's blocks stay put. Give lazy init its chance.
	time.Sleep(3 * time.Second)
	if used, err := Usage(info, mnt); err != nil || used < wrote {
		t.Fatalf("Usage = %d, %v; wrote %d", used, err, wrote)
	}
	if err := syscall.Stat(info.Image, &st); err != nil || st.Blocks != allocated {
		t.Fatalf("image grew on the host: %d blocks, was %d", st.Blocks, allocated)
	}

	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	waitFree(t, info)
	if u, err := Usage(info, ""); err != nil || u < wrote {
		t.Fatalf("Usage from the superblock = %d, %v; wrote %d", u, err, wrote)
	}
	for _, owner := range []uint32{1001, 0} {
		if _, err := s.Ensure(ctx, "sb", []Want{{"work", size}}, owner, 1000, 1000); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("uid %d's Ensure of uid 1000's volume: %v, want ErrNotOwner", owner, err)
		}
	}
	if _, err := s.Ensure(ctx, "sb", []Want{{"work", 2 * size}}, 1000, 1000, 1000); err == nil {
		t.Fatal("Ensure with another size succeeded")
	}
	if created, err := s.Ensure(ctx, "sb", []Want{{"work", size}}, 1000, 1000, 1000); err != nil || len(created) != 0 {
		t.Fatalf("the owner's Ensure of its volume = %v, %v", created, err)
	}
	// The next run, as another sandbox user: its root is handed over, the
	// data is there.
	dev, err = s.Attach(ctx, "sb", "work", 1001, 1002)
	if err != nil {
		t.Fatal(err)
	}
	mnt = mountAttached(t, dev)
	if err := syscall.Stat(mnt, &st); err != nil || st.Uid != 1001 || st.Gid != 1002 {
		t.Fatalf("volume root after a change of user: uid %d gid %d (%v), want 1001:1002", st.Uid, st.Gid, err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "fill")); err != nil || fi.Size() != wrote {
		t.Fatalf("after a new run: %v, %v; want %d bytes", fi, err, wrote)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	waitFree(t, info)
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Owner != 1000 || list[0].SizeBytes != size || list[0].UID != 1001 {
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

// A start that asks for several volumes makes none when any is refused:
// one of another owner's, or new ones that would leave the host's disk
// without its reserve together.
func TestARefusedSetOfVolumesMakesNone(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "volumes")
	s := New(dir)
	if _, err := s.Ensure(ctx, "sb", []Want{{"theirs", 16 << 20}}, 1001, 1001, 1001); err != nil {
		t.Fatal(err)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(dir), &fs); err != nil {
		t.Fatal(err)
	}
	free := int64(fs.Bavail) * fs.Bsize
	for _, tc := range []struct {
		name  string
		wants []Want
	}{
		{"one is another user's", []Want{{"mine", 16 << 20}, {"theirs", 16 << 20}}},
		{"together past the reserve", []Want{{"mine", 16 << 20}, {"big", free}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			created, err := s.Ensure(ctx, "sb", tc.wants, 1000, 1000, 1000)
			if err == nil || len(created) != 0 {
				t.Fatalf("Ensure = %v, %v; want a refusal that makes nothing", created, err)
			}
			t.Log(err)
			if m, _ := filepath.Glob(filepath.Join(dir, "sb", "mine*")); len(m) != 0 {
				t.Fatalf("left behind: %v", m)
			}
		})
	}
}

// One unreadable record is reported, and the others are still listed.
func TestAnUnreadableRecordHidesNoOtherVolume(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "volumes")
	s := New(dir)
	if _, err := s.Ensure(context.Background(), "good", []Want{{"w", 16 << 20}}, 0, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bad"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad", "w.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err == nil || len(list) != 1 || list[0].Sandbox != "good" {
		t.Fatalf("List = %+v, %v; want the good volume and an error for the bad record", list, err)
	}
}

// startHolder runs args as a process of the test's own, killed (by pid) at
// cleanup, and waits for it to print "ready".
func startHolder(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make([]byte, 6)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("%v did not get ready: %q, %v", args, line, err)
	}
	return cmd
}

// Any user can copy the host's mounts into a namespace of its own
// (unshare -Urm), and the copy keeps a filesystem alive after the host
// unmounts it: a volume mounted on the host would stay attached after its
// sandbox stopped, and its next start would be refused. The control mounts
// on the host and shows the copy pinning it; the volume as clawguard
// mounts it, only inside the sandbox's own namespace, is freed when that
// namespace ends, while the same copy is still held.
func TestANamespaceCopiedFromTheHostCannotPinAVolume(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed")
	}
	ctx := context.Background()
	s := New(filepath.Join(t.TempDir(), "volumes"))
	if _, err := s.Ensure(ctx, "sb", []Want{{"work", 16 << 20}}, 0, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	info, _ := s.Get("sb", "work")
	// pinnedFor reports whether the image stays attached for d.
	pinnedFor := func(d time.Duration) bool {
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if dev, _ := InUse(info); dev == "" {
				return false
			}
		}
		return true
	}
	hold := []string{"unshare", "-m", "sh", "-c", "echo ready; exec sleep 60"}

	t.Run("control: mounted on the host, a copied namespace pins it", func(t *testing.T) {
		dev, err := s.Attach(ctx, "sb", "work", 1000, 1000)
		if err != nil {
			t.Fatal(err)
		}
		mnt := t.TempDir()
		if err := unix.Mount(dev.Name(), mnt, "ext4", 0, ""); err != nil {
			t.Fatal(err)
		}
		dev.Close()
		attacker := startHolder(t, hold...)
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Fatal(err)
		}
		if !pinnedFor(time.Second) {
			t.Fatal("control: the copy did not keep the volume: the attack cannot be shown here")
		}
		_ = attacker.Process.Kill()
		_ = attacker.Wait()
		waitFree(t, info)
	})

	dev, err := s.Attach(ctx, "sb", "work", 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	sandbox := startHolder(t, "unshare", "-m", "--propagation", "private", "sh", "-c",
		"mount -t ext4 "+dev.Name()+" "+mnt+" && echo ready && exec sleep 60")
	dev.Close()
	startHolder(t, hold...) // the attacker's copy, held to the end
	if !pinnedFor(200 * time.Millisecond) {
		t.Fatal("the volume came free while its sandbox still had it mounted")
	}
	_ = sandbox.Process.Kill()
	_ = sandbox.Wait()
	waitFree(t, info)
}
