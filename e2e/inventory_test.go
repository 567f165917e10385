package e2e

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/clawguard/clawguard/runtime"
)

// inventory is every object a sandbox could leave behind, by name.
type inventory struct {
	Containers []string
	Snapshots  []string // active (non-image) snapshots
	NetNS      []string
	Mounts     []string // mount points under the state directory
	State      []string // sandbox state directories
}

func (h *harness) inventory(t testing.TB) inventory {
	t.Helper()
	var inv inventory
	client, err := containerd.New(h.address)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), runtime.Namespace)
	cs, err := client.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		inv.Containers = append(inv.Containers, c.ID())
	}
	err = client.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		if i.Kind != snapshots.KindCommitted {
			inv.Snapshots = append(inv.Snapshots, i.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "cg-") {
				inv.NetNS = append(inv.NetNS, e.Name())
			}
		}
	}
	inv.Mounts = mountsUnder(h.stateDir)
	if entries, err := os.ReadDir(h.stateDir + "/sandboxes"); err == nil {
		for _, e := range entries {
			inv.State = append(inv.State, e.Name())
		}
	}
	for _, l := range [][]string{inv.Containers, inv.Snapshots, inv.NetNS, inv.Mounts, inv.State} {
		slices.Sort(l)
	}
	return inv
}

// has reports whether anything of sandbox name is in the inventory.
func (inv inventory) has(name string) []string {
	var found []string
	if slices.Contains(inv.Containers, name) {
		found = append(found, "container "+name)
	}
	if slices.Contains(inv.Snapshots, name) {
		found = append(found, "snapshot "+name)
	}
	if slices.Contains(inv.NetNS, "cg-"+name) {
		found = append(found, "netns cg-"+name)
	}
	for _, m := range inv.Mounts {
		if strings.Contains(m, "/"+name+"/") {
			found = append(found, "mount "+m)
		}
	}
	if slices.Contains(inv.State, name) {
		found = append(found, "state "+name)
	}
	return found
}

// assertNothingOf fails if any object of the sandbox remains.
func (h *harness) assertNothingOf(t testing.TB, name string) {
	t.Helper()
	if left := h.inventory(t).has(name); len(left) > 0 {
		t.Fatalf("sandbox %s left behind: %v", name, left)
	}
}
