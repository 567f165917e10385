package enforce

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/netrules/allowlist"
	"github.com/clawguard/clawguard/profiles"

	"github.com/clawguard/clawguard/enforce/egress"
)

// A slice of /proc/net/tcp6 and /proc/net/tcp: listeners on 18789 on
// IPv4 loopback and on every IPv6 address, an established connection on the
// same port, and a listener on another port.
const procNetTCP = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4965 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:4965 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: 00000000000000000000000000000000:4965 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
`

func TestListenersAreReadFromProcNetInHostByteOrder(t *testing.T) {
	got := parseListeners(strings.NewReader(procNetTCP), 18789)
	if want := []string{"127.0.0.1", "::"}; !slices.Equal(got, want) {
		t.Errorf("listeners on 18789: %v, want %v", got, want)
	}
	if got := parseListeners(strings.NewReader(procNetTCP), 80); !slices.Equal(got, []string{"0.0.0.0"}) {
		t.Errorf("listeners on 80: %v", got)
	}
}

func TestSetMembersAreExplainedByCIDRsOrByTheGatesBindings(t *testing.T) {
	p := &profiles.Profile{Egress: profiles.Egress{Allow: []profiles.AllowEntry{
		{Host: "api.example.com", Ports: []int{443}},
		{CIDR: "10.20.0.0/24", Ports: []int{5432}},
	}}}
	snap := &egress.Snapshot{Bindings: []allowlist.Binding{{Name: "api.example.com", Addr: netip.MustParseAddr("198.51.100.10"), Ports: []allowlist.Port{{Proto: allowlist.TCP, Num: 443}}}}}
	for _, tc := range []struct {
		member netrules.SetMember
		ok     bool
	}{
		{netrules.SetMember{Addr: netip.MustParseAddr("198.51.100.10"), Proto: "tcp", Port: 443}, true},
		{netrules.SetMember{Addr: netip.MustParseAddr("198.51.100.10"), Proto: "tcp", Port: 80}, false},
		{netrules.SetMember{Addr: netip.MustParseAddr("10.20.0.7"), Proto: "tcp", Port: 5432}, true},
		{netrules.SetMember{Addr: netip.MustParseAddr("10.20.1.7"), Proto: "tcp", Port: 5432}, false},
		{netrules.SetMember{Addr: netip.MustParseAddr("198.51.100.12"), Proto: "udp", Port: 53}, false},
		// Members of the ranges set: within an entry's range, or not.
		{netrules.SetMember{Addr: netip.MustParseAddr("10.20.0.0"), Prefix: netip.MustParsePrefix("10.20.0.0/24"), Proto: "tcp", Port: 5432}, true},
		{netrules.SetMember{Addr: netip.MustParseAddr("10.0.0.0"), Prefix: netip.MustParsePrefix("10.0.0.0/8"), Proto: "tcp", Port: 5432}, false},
		// TCP entries explain no UDP member.
		{netrules.SetMember{Addr: netip.MustParseAddr("198.51.100.10"), Proto: "udp", Port: 443}, false},
		{netrules.SetMember{Addr: netip.MustParseAddr("10.20.0.7"), Proto: "udp", Port: 5432}, false},
	} {
		if got := explained(tc.member, p, snap); got != tc.ok {
			t.Errorf("%s %s/%d: explained %v, want %v", tc.member.Addr, tc.member.Proto, tc.member.Port, got, tc.ok)
		}
	}
}

func TestSecretValuesAreFoundInTheEnvironment(t *testing.T) {
	got := leaks([]byte("PATH=/bin\x00NOTE=sk-live-123456\x00"), map[string][]byte{"key": []byte("sk-live-123456"), "other": []byte("absent-value")})
	if !slices.Equal(got, []string{"key"}) {
		t.Errorf("leaks %v", got)
	}
}
