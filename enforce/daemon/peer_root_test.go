//go:build !nokernel

package daemon

import (
	"fmt"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Needs root (to set this process's groups); left out of `make unit` by the
// nokernel tag.
// The socket records the caller's groups when it connects. A group such as
// 65534 (bytes fe ff 00 00) must survive the decoding.
func TestPeerGroupsComeFromTheSocket(t *testing.T) {
	saved, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	want := []int{0, 100, 65534} // the kernel keeps them sorted
	if err := syscall.Setgroups(want); err != nil {
		t.Fatalf("needs root to set this process's groups: %v", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if rerr := syscall.Setgroups(saved); rerr != nil {
		t.Fatal(rerr)
	}
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
