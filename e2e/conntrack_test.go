package e2e

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestOldFlowsDieWithTheirSandbox: sandbox A, allowed DNS over UDP to the
// fake server, asks it from a fixed source port, and the host tracks the
// flow. A stops; B, allowed nothing, is given A's address and sends the very
// same flow. Every sandbox chain accepts ESTABLISHED first, so in the
// control (the supervising processes leave tracked flows behind) B's query
// is answered through A's flow. With the defence no entry of the address
// outlives A, and B's query goes unanswered. Both cases go without the
// second layer in B's namespace, which would drop B's query by itself
// (its own namespace tracks no flow of A's): this test is of the host's.
func TestOldFlowsDieWithTheirSandbox(t *testing.T) {
	h := env
	const sport = "40053"
	ask := func(name string) bool {
		t.Helper()
		var d probeDNS
		h.netProbe(t, name, &d, "dns", fakeDNSAddr+":53", "api.example.test", "A", "udp", sport)
		return d.Error == ""
	}
	for _, tc := range []struct {
		name, weaken string
		answered     bool
	}{
		{"control: flows left behind open the next sandbox", "conntrack,inner-layer", true},
		{"flows are forgotten with their sandbox", "inner-layer", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := h.start(t, profile{Name: "ct-a", Weaken: tc.weaken,
				Extra: "egress:\n  allow:\n    - {cidr: " + fakeDNSAddr + "/32, ports: [53], protocols: [udp]}\n"})
			ip := h.sandboxIP(t, "ct-a")
			if !ask("ct-a") {
				t.Fatal("A's allowed query went unanswered")
			}
			if n := flowsOf(t, ip); n == 0 {
				t.Fatalf("the host tracks no flow of %s after A's query", ip)
			}
			h.stopSandbox(t, a)
			if n := flowsOf(t, ip); tc.weaken == "inner-layer" && n != 0 {
				t.Errorf("%d tracked flows of %s outlived sandbox A", n, ip)
			}
			h.start(t, profile{Name: "ct-b", Weaken: tc.weaken})
			if got := h.sandboxIP(t, "ct-b"); got != ip {
				t.Fatalf("B was given %s, not A's %s: the test needs the address reused", got, ip)
			}
			if got := ask("ct-b"); got != tc.answered {
				t.Errorf("B's query through A's flow answered: %v, want %v", got, tc.answered)
			}
		})
	}
}

// flowsOf counts the host's tracked flows from or to addr.
func flowsOf(t *testing.T, addr string) int {
	t.Helper()
	flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(addr)
	n := 0
	for _, f := range flows {
		if f.Forward.SrcIP.Equal(ip) || f.Forward.DstIP.Equal(ip) {
			n++
		}
	}
	return n
}
