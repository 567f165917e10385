package allowlist

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestPolicyMatchesExactNamesAndSubdomainsOfWildcards(t *testing.T) {
	p := NewPolicy([]Rule{
		{Host: "api.anthropic.com", Ports: tcp(443)},
		{Host: "*.example.com", Ports: tcp(443, 8443)},
		{Host: "API.Anthropic.com.", Ports: tcp(80)},
	})
	tests := []struct {
		name  string
		ok    bool
		ports []Port
	}{
		{"api.anthropic.com", true, tcp(80, 443)},
		{"API.ANTHROPIC.COM.", true, tcp(80, 443)},
		{"x.api.anthropic.com", false, nil},
		{"anthropic.com", false, nil},
		{"a.example.com", true, tcp(443, 8443)},
		{"a.b.example.com", true, tcp(443, 8443)},
		{"example.com", false, nil},
		{"badexample.com", false, nil},
	}
	for _, tt := range tests {
		ports, ok := p.Ports(tt.name)
		if ok != tt.ok || !slices.Equal(ports, tt.ports) {
			t.Errorf("Ports(%q) = %v, %v; want %v, %v", tt.name, ports, ok, tt.ports, tt.ok)
		}
	}
	if !slices.Equal(p.ExactNames(), []string{"api.anthropic.com"}) {
		t.Errorf("exact names %v", p.ExactNames())
	}
}

func TestBlockedRanges(t *testing.T) {
	for addr, blocked := range map[string]bool{
		"169.254.169.254": true, "10.1.2.3": true, "127.0.0.1": true, "172.20.0.1": true, "192.168.1.1": true,
		"100.64.0.1": true, "224.0.0.1": true, "255.255.255.255": true, "0.0.0.0": true,
		"198.51.100.10": false, "8.8.8.8": false, "198.18.0.5": false,
	} {
		if _, got := Blocked(netip.MustParseAddr(addr)); got != blocked {
			t.Errorf("Blocked(%s) = %v, want %v", addr, got, blocked)
		}
	}
}

func TestCIDREntryAllowsAPrivateRangeExplicitly(t *testing.T) {
	p := NewPolicy([]Rule{{CIDR: netip.MustParsePrefix("10.77.0.0/16"), Ports: tcp(5432)}})
	if !p.ExplicitlyAllowed(netip.MustParseAddr("10.77.1.2")) || p.ExplicitlyAllowed(netip.MustParseAddr("10.78.0.1")) {
		t.Fatal("cidr coverage wrong")
	}
}

func TestCacheNeverShortensAnAllowance(t *testing.T) {
	c := NewCache()
	t0 := time.Unix(1000, 0)
	a := netip.MustParseAddr("198.51.100.1")
	got := c.Update(t0, "api.example.com", []netip.Addr{a}, tcp(443), time.Hour, FromStartup)
	if !got[0].Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("expiry %v", got[0].Expires)
	}
	got = c.Update(t0.Add(time.Minute), "api.example.com", []netip.Addr{a}, tcp(443), 30*time.Second, FromQuery)
	if !got[0].Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("a shorter TTL shortened the allowance to %v", got[0].Expires)
	}
	got = c.Update(t0.Add(50*time.Minute), "api.example.com", []netip.Addr{a}, tcp(443), time.Hour, FromRefresh)
	if !got[0].Expires.Equal(t0.Add(110*time.Minute)) || got[0].Source != FromRefresh {
		t.Fatalf("a longer TTL did not extend: %+v", got[0])
	}
}

func TestCacheGCForgetsExpiredAndNameForFindsTheLatest(t *testing.T) {
	c := NewCache()
	t0 := time.Unix(1000, 0)
	a := netip.MustParseAddr("198.51.100.1")
	c.Update(t0, "old.example.com", []netip.Addr{a}, nil, time.Second, FromQuery)
	c.Update(t0.Add(time.Millisecond), "new.example.com", []netip.Addr{a}, nil, time.Hour, FromQuery)
	if n, ok := c.NameFor(a); !ok || n != "new.example.com" {
		t.Fatalf("NameFor = %q %v", n, ok)
	}
	c.GC(t0.Add(2 * time.Second))
	snap := c.Snapshot(t0.Add(2 * time.Second))
	if len(snap) != 1 || snap[0].Name != "new.example.com" {
		t.Fatalf("snapshot after GC %v", snap)
	}
}

func TestKeepClampsThenAddsGrace(t *testing.T) {
	for _, tt := range []struct{ ttl, want time.Duration }{
		{time.Second, 40 * time.Second}, {5 * time.Minute, 5*time.Minute + 10*time.Second}, {48 * time.Hour, time.Hour + 10*time.Second},
	} {
		if got := Keep(tt.ttl, 30*time.Second, time.Hour, 10*time.Second); got != tt.want {
			t.Errorf("Keep(%v) = %v, want %v", tt.ttl, got, tt.want)
		}
	}
}

// tcp is ports of TCP, as entries without protocols have.
func tcp(nums ...uint16) []Port {
	out := make([]Port, len(nums))
	for i, n := range nums {
		out[i] = Port{Proto: TCP, Num: n}
	}
	return out
}

func TestPortsCarryTheirProtocol(t *testing.T) {
	p := NewPolicy([]Rule{
		{Host: "api.example.com", Ports: tcp(443)},
		{Host: "api.example.com", Ports: []Port{{UDP, 443}}},
		{Host: "dns.example.com", Ports: []Port{{UDP, 53}}},
	})
	got, _ := p.Ports("api.example.com")
	if want := []Port{{TCP, 443}, {UDP, 443}}; !slices.Equal(got, want) {
		t.Errorf("api: %v, want %v", got, want)
	}
	got, _ = p.Ports("dns.example.com")
	if want := []Port{{UDP, 53}}; !slices.Equal(got, want) {
		t.Errorf("dns: %v, want %v (no TCP)", got, want)
	}
	for in, want := range map[string]Port{`"443/udp"`: {UDP, 443}, `"80/tcp"`: {TCP, 80}, `443`: {TCP, 443}} {
		var got Port
		if err := json.Unmarshal([]byte(in), &got); err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	if b, _ := json.Marshal([]Port{{UDP, 53}}); string(b) != `["53/udp"]` {
		t.Errorf("marshal: %s", b)
	}
}

// A wildcard covers names under its suffix label by label: an escaped dot
// makes one label, which is not under the suffix however the text ends.
func TestWildcardsMatchLabelByLabel(t *testing.T) {
	p := NewPolicy([]Rule{{Host: "*.example.com", Ports: tcp(443)}})
	for name, want := range map[string]bool{
		"api.example.com":      true,
		"a.b.example.com.":     true,
		"example.com":          false, // the suffix itself is not a subdomain
		"badexample.com":       false,
		`a\.example.com`:       false, // one label "a.example" under com
		`evil\.example.com.`:   false,
		"API.EXAMPLE.COM":      true,
		"example.com.evil.net": false,
	} {
		if _, ok := p.Ports(name); ok != want {
			t.Errorf("%q allowed %v, want %v", name, ok, want)
		}
	}
}
