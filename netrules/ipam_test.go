package netrules

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestAddressesAreNotReusedWhileLeased(t *testing.T) {
	a := ipam{path: t.TempDir() + "/leases.json", subnet: netip.MustParsePrefix("10.89.250.0/29")}
	var got []string
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		ip, fresh, err := a.allocate(n)
		if err != nil || !fresh {
			t.Fatal(err)
		}
		got = append(got, ip.String())
	}
	if !slices.Equal(got, []string{"10.89.250.2", "10.89.250.3", "10.89.250.4", "10.89.250.5", "10.89.250.6"}) {
		t.Fatalf("leases %v", got)
	}
	if _, _, err := a.allocate("f"); err == nil || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("full subnet: %v", err)
	}
	// Its own lease again: not fresh, so its flows are kept (adoption).
	if ip, fresh, _ := a.allocate("c"); ip.String() != "10.89.250.4" || fresh {
		t.Fatalf("a sandbox keeps its address, got %s (fresh %v)", ip, fresh)
	}
	if err := a.release("c"); err != nil {
		t.Fatal(err)
	}
	if ip, fresh, _ := a.allocate("f"); ip.String() != "10.89.250.4" || !fresh {
		t.Fatalf("released address reused: got %s", ip)
	}
}
