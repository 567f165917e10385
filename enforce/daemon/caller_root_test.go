//go:build !nokernel

package daemon

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Needs root (to change a thread's file-system ids); left out of `make
// unit` by the nokernel tag.
// asCaller opens as the caller: a root-only file is refused, a file of one
// of the caller's groups is not, and the daemon's other threads keep root's
// identity throughout.
func TestAsCallerOpensWithTheCallersPermissions(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rootOnly := filepath.Join(dir, "root-only")
	groupOnly := filepath.Join(dir, "group-only")
	for _, f := range []struct {
		path string
		mode os.FileMode
		gid  int
	}{{rootOnly, 0o600, 0}, {groupOnly, 0o640, 4242}} {
		if err := os.WriteFile(f.path, []byte("x"), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(f.path, 0, f.gid); err != nil {
			t.Fatal(err)
		}
	}
	open := func(path string) error {
		f, err := os.Open(path)
		if err == nil {
			f.Close()
		}
		return err
	}
	// Another user's process: its /proc entries are guarded by a ptrace
	// check, which root passes by capability.
	other := exec.Command("sleep", "30")
	other.Dir = dir // it holds a world-readable file
	other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65533, Gid: 65533}}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	if err := os.WriteFile(filepath.Join(dir, "public"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Through the process's cwd link, which only a ptrace check guards.
	viaProc := fmt.Sprintf("/proc/%d/cwd/public", other.Process.Pid)
	nobody := caller{uid: 65534, gid: 65534}
	inGroup := caller{uid: 65534, gid: 65534, groups: []uint32{4242}}
	tests := []struct {
		name   string
		c      caller
		path   string
		denied bool
	}{
		{"root opens a root-only file (control)", caller{}, rootOnly, false},
		{"a member may not", nobody, rootOnly, true},
		{"a member outside the group may not read the group's file", nobody, groupOnly, true},
		{"a member in the group may", inGroup, groupOnly, false},
		{"a member in the group still may not read root's", inGroup, rootOnly, true},
		// The ptrace check on /proc/PID is a capability check too: the
		// thread keeps none of root's.
		{"a member may not read another user's process through /proc", nobody, viaProc, true},
	}
	// Control: the daemon's own threads (root, with its capabilities) may.
	if err := open(viaProc); err != nil {
		t.Fatalf("control: root cannot read %s either: %v", viaProc, err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Root's opens on other threads, all the while.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var rootErr error
			var mu sync.Mutex
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if err := open(rootOnly); err != nil {
							mu.Lock()
							rootErr = err
							mu.Unlock()
						}
					}
				}()
			}
			var err error
			for range 50 {
				if err = asCaller(tt.c, func() error { return open(tt.path) }); (err != nil) != tt.denied {
					break
				}
			}
			close(stop)
			wg.Wait()
			if tt.denied && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
				t.Errorf("got %v, want permission denied", err)
			}
			if !tt.denied && err != nil {
				t.Errorf("got %v", err)
			}
			if rootErr != nil {
				t.Errorf("another thread lost root's identity: %v", rootErr)
			}
			if err := open(rootOnly); err != nil {
				t.Errorf("after asCaller: %v", err)
			}
		})
	}
}
