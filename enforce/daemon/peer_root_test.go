//go:build !nokernel

package daemon

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// Needs root (to set this process's groups); left out of `make unit` by the
// nokernel tag.
// The socket records the caller's groups when it connects. A group such as
// 65534 (bytes fe ff 00 00) must survive the decoding.
func TestPeerGroupsComeFromTheSocket(t *testing.T) {
	// Set on one thread only, as asCaller does: syscall.Setgroups would
	// change every thread of the test binary (through glibc, which aborts
	// the process if one thread refuses).
	want := []uint32{0, 100, 65534} // the kernel keeps them sorted
	var fds [2]int
	err := asCaller(caller{groups: want}, func() error {
		var err error
		fds, err = unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	got, err := peerGroups(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("groups from the socket %v, want those at connect time %v", got, want)
	}
}
