//go:build !nokernel

package netrules

import (
	"os"
	"slices"
	"testing"

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
