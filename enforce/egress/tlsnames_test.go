package egress

import (
	"context"
	"github.com/clawguard/clawguard/netrules/namegate"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/clawguard/clawguard/enforce/audit"
	"github.com/clawguard/clawguard/enforce/enforcetest"
)

// The name gate's decision, from the book's records alone: the CDN case
// (one address, many names), an address learned for another name, an
// expired binding, a port the name is not allowed on, and wildcards.
func TestATLSNamePassesOnlyAtAnAddressThisSandboxResolvedItTo(t *testing.T) {
	now := time.Unix(10000, 0)
	e := testEgress(t, &recordingNet{}, &now, enforcetest.AllowCIDR("198.51.100.128/26", 443))
	cdn := netip.MustParseAddr("198.51.100.10")   // api.example.com and a.cdn.example.com both
	other := netip.MustParseAddr("198.51.100.20") // a.cdn.example.com only
	admit := func(name string, ttl time.Duration, addrs ...netip.Addr) {
		t.Helper()
		if _, err := e.Admit(context.Background(), name, addrs, ttl); err != nil {
			t.Fatal(err)
		}
	}
	admit("api.example.com.", 60*time.Second, cdn)
	admit("a.cdn.example.com.", 60*time.Second, other)
	d := e.TLSNames()
	at := func(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
	tests := []struct {
		name, sni string
		dst       netip.AddrPort
		after     time.Duration
		ok        bool
		kind      namegate.Reason
		reason    string
	}{
		{"the name at the address it resolved to", "api.example.com", at(cdn, 443), 0, true, "", ""},
		{"letter case and a trailing dot are the same name", "API.Example.COM.", at(cdn, 443), 0, true, "", ""},
		{"a v4-mapped v6 destination is the same address", "api.example.com", netip.AddrPortFrom(netip.AddrFrom16(cdn.As16()), 443), 0, true, "", ""},
		{"another site on the same CDN address", "attacker.example", at(cdn, 443), 0, false, namegate.NotAllowlisted, "not allowlisted"},
		{"an allowlisted name at an address learned for another", "a.cdn.example.com", at(cdn, 443), 0, false, namegate.NotResolved, "learned for api.example.com"},
		{"an allowlisted name at an address nobody resolved", "api.example.com", at(netip.MustParseAddr("198.51.100.99"), 443), 0, false, namegate.NotResolved, "not resolved"},
		{"the right address on a port the name does not have", "api.example.com", at(cdn, 8443), 0, false, namegate.NotAllowlisted, "port 8443"},
		{"a wildcard's name at its own address", "a.cdn.example.com", at(other, 443), 0, true, "", ""},
		{"no server name", "", at(cdn, 443), 0, false, namegate.NoName, "no server name"},
		{"any name at an address a cidr entry opens on that port", "whatever.example", at(netip.MustParseAddr("198.51.100.130"), 443), 0, true, "", ""},
		{"a cidr entry's address on another port", "whatever.example", at(netip.MustParseAddr("198.51.100.130"), 8443), 0, false, namegate.NotAllowlisted, "not allowlisted"},
		{"within TTL plus grace", "api.example.com", at(cdn, 443), 69 * time.Second, true, "", ""},
		{"past TTL plus grace", "api.example.com", at(cdn, 443), 71 * time.Second, false, namegate.Expired, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := d.Decide(now.Add(tt.after), tt.sni, tt.dst)
			if ok != tt.ok || why.Reason != tt.kind || !strings.Contains(why.Detail, tt.reason) {
				t.Fatalf("Decide(%q, %s) = %v, %+v; want %v, %s %q", tt.sni, tt.dst, ok, why, tt.ok, tt.kind, tt.reason)
			}
		})
	}
}

func TestARefusedTLSConnectionIsCountedKeptAndAudited(t *testing.T) {
	now := time.Unix(10000, 0)
	e := testEgress(t, &recordingNet{}, &now)
	var kinds []string
	e.audit = func(ev audit.Event) { kinds = append(kinds, ev.Kind) }
	d := e.TLSNames()
	dst := netip.MustParseAddrPort("198.51.100.10:443")
	for range 3 {
		d.Refused("attacker.example", dst, namegate.Refusal{Reason: namegate.NotAllowlisted, Detail: "server name attacker.example is not allowlisted"})
	}
	d.Refused("", dst, namegate.Refusal{Reason: namegate.NoName, Detail: "no server name"})
	if _, refused, by := d.Counts(); refused != 4 || by["not_allowlisted"] != 3 || by["no_name"] != 1 {
		t.Fatalf("refused = %d by %v, want 4: 3 not_allowlisted, 1 no_name", refused, by)
	}
	e.mu.Lock()
	kept := len(e.tlsRefusals)
	e.mu.Unlock()
	if kept != 4 || len(kinds) != 4 || kinds[0] != "tls_refused" {
		t.Fatalf("kept %d refusals, audit %v", kept, kinds)
	}
}
