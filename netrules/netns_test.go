//go:build !nokernel

package netrules

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// requireRoot fails a kernel test run without root. These files are left
// out of `make unit` (-tags nokernel), never skipped: a run that includes
// them has to prove them.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("kernel test needs root: run `sudo make test`, or `make unit`, which leaves the kernel tests out")
	}
}

func TestNetNSHasOnlyLoopbackUpAndIsIdempotent(t *testing.T) {
	requireRoot(t)
	const sb = "nstest-lo"
	t.Cleanup(func() { _ = DeleteNetNS(sb) })
	path, err := EnsureNetNS(sb)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := EnsureNetNS(sb); err != nil || again != path {
		t.Fatalf("second EnsureNetNS: %q, %v", again, err)
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&1 == 0 {
		t.Fatalf("links %v", links)
	}
	routes, err := nl.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			t.Fatalf("default route in a loopback-only namespace: %v", r)
		}
	}
	names, err := ListNetNS()
	if err != nil || !slices.Contains(names, sb) {
		t.Fatalf("ListNetNS = %v, %v", names, err)
	}
}

func TestDeleteNetNSRemovesItAndToleratesAbsence(t *testing.T) {
	requireRoot(t)
	const sb = "nstest-del"
	if _, err := EnsureNetNS(sb); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := DeleteNetNS(sb); err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
	}
	if _, err := os.Stat(NetNSPath(sb)); !os.IsNotExist(err) {
		t.Fatalf("namespace file remains: %v", err)
	}
}

// The name gate's dial makes its socket in the sandbox's namespace and
// connects it from any thread: it reaches a listener there (and only
// there: the host's loopback is another), is refused by a closed port,
// and gives up when its context ends.
func TestTheNameGateDialsFromInsideTheNamespace(t *testing.T) {
	requireRoot(t)
	const sb = "nstest-dial"
	t.Cleanup(func() { _ = DeleteNetNS(sb) })
	path, err := EnsureNetNS(sb)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := InNetNSAt(path, func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("inside"))
			c.Close()
		}
	}()
	at := netip.MustParseAddrPort(ln.Addr().String())
	dial := NameGateDialer(path)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx, at)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "inside" {
		t.Fatalf("read %q from the namespace's listener", got)
	}
	if _, err := dial(ctx, netip.AddrPortFrom(at.Addr(), at.Port()+1)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a closed port in the namespace: %v, want ECONNREFUSED", err)
	}
	// A destination that drops the SYN: the dial ends with its context.
	if out, err := exec.Command("ip", "netns", "exec", NetNSName(sb), "iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	short, stop := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer stop()
	start := time.Now()
	var ne net.Error
	if _, err := dial(short, netip.AddrPortFrom(at.Addr(), 9)); !(errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()) || time.Since(start) > 2*time.Second {
		t.Errorf("a dial to a destination that drops it: %v after %s, want the context's deadline", err, time.Since(start))
	}
}
