package e2e

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestAnEntryOpensOnlyItsProtocols: an entry without protocols is TCP
// only, so UDP to the same address and port (QUIC on 443, or here DNS on
// 53) stays closed; the control is the same entry with protocols
// [tcp, udp], which opens both. Status shows each entry's protocols.
func TestAnEntryOpensOnlyItsProtocols(t *testing.T) {
	h := env
	if r, err := hostDNS("api.example.test", 1); err != nil || r == nil {
		t.Fatalf("control: the fake DNS server does not answer the host: %v", err)
	}
	ask := func(name, proto string) bool {
		t.Helper()
		var d probeDNS
		h.netProbe(t, name, &d, "dns", fakeDNSAddr+":53", "api.example.test", "A", proto)
		return d.Error == ""
	}
	for _, tc := range []struct {
		name, protocols string
		tcp, udp        bool
	}{
		{"proto-tcp", "", true, false},
		{"proto-both", ", protocols: [tcp, udp]", true, true},
		{"proto-udp", ", protocols: [udp]", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.start(t, profile{Name: tc.name, Extra: "egress:\n  allow:\n    - {cidr: " + fakeDNSAddr + "/32, ports: [53]" + tc.protocols + "}\n"})
			if got := ask(tc.name, "tcp"); got != tc.tcp {
				t.Errorf("TCP to %s:53 answered: %v, want %v", fakeDNSAddr, got, tc.tcp)
			}
			if got := ask(tc.name, "udp"); got != tc.udp {
				t.Errorf("UDP to %s:53 answered: %v, want %v", fakeDNSAddr, got, tc.udp)
			}
			out, _, _ := h.cg("status", "--json", tc.name)
			var st []struct {
				Allowlist []struct {
					Protocols []string `json:"protocols"`
				} `json:"allowlist"`
			}
			if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 || len(st[0].Allowlist) != 1 {
				t.Fatalf("status: %v\n%s", err, out)
			}
			want := []string{"tcp"}
			switch {
			case tc.tcp && tc.udp:
				want = []string{"tcp", "udp"}
			case tc.udp:
				want = []string{"udp"}
			}
			if got := st[0].Allowlist[0].Protocols; !slices.Equal(got, want) {
				t.Errorf("status shows protocols %v, want %v", got, want)
			}
		})
	}
}
