//go:build !nokernel

package dnsproxy

import (
	"net"
	"net/netip"
	"os"
	"testing"
)

// Needs root (ports below 1024); left out of `make unit` by the nokernel tag.
func TestGatePortsAreOnesNoUnprivilegedUserCanBind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: ports below 1024")
	}
	seen := map[int]bool{}
	var open []net.PacketConn
	defer func() {
		for _, pc := range open {
			pc.Close()
		}
	}()
	for i := 0; i < 8; i++ {
		pc, ln, err := Listen(netip.MustParseAddr("127.0.0.1"), 0)
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		open = append(open, pc)
		port := pc.LocalAddr().(*net.UDPAddr).Port
		if port < GatePortFirst || port > GatePortLast || port >= 1024 {
			t.Fatalf("gate port %d is outside %d-%d, below 1024", port, GatePortFirst, GatePortLast)
		}
		if servicePorts("/etc/services")[port] {
			t.Fatalf("gate port %d belongs to a service in /etc/services", port)
		}
		seen[port] = true
	}
	if len(seen) != 8 {
		t.Fatalf("ports reused while held: %v", seen)
	}
}
