package egress

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/clawguard/clawguard/enforce/audit"
	"github.com/clawguard/clawguard/netrules/allowlist"
	"github.com/clawguard/clawguard/netrules/namegate"
)

var _ namegate.Decider = (*TLSNames)(nil)

// TLSNames judges the name gate's connections by the book's own records: a
// TLS connection passes only if its server name is allowlisted on that port
// and this sandbox's DNS gate resolved that name to that very address, in a
// binding still live. An address is shared by every site on a CDN; the
// binding of a name to it is this sandbox's alone.
type TLSNames struct {
	b               *Book
	passed, refused atomic.Uint64
}

// TLSRefusal is a TLS connection the name gate turned away.
type TLSRefusal struct {
	Time        time.Time      `json:"time"`
	ServerName  string         `json:"server_name,omitempty"`
	Destination netip.AddrPort `json:"destination"`
	// Kind is the reason in one word (namegate.Reason); Reason says it.
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// TLSNames returns the book's decider for the name gate.
func (e *Book) TLSNames() *TLSNames { return &e.tls }

// Decide implements namegate.Decider.
func (n *TLSNames) Decide(now time.Time, serverName string, dst netip.AddrPort) (bool, namegate.Refusal) {
	ok, why := n.decide(now, serverName, dst)
	if ok {
		n.passed.Add(1)
	}
	return ok, why
}

func (n *TLSNames) decide(now time.Time, serverName string, dst netip.AddrPort) (bool, namegate.Refusal) {
	no := func(r namegate.Reason, format string, args ...any) (bool, namegate.Refusal) {
		return false, namegate.Refusal{Reason: r, Detail: fmt.Sprintf(format, args...)}
	}
	name := allowlist.Canonical(serverName)
	if name == "" {
		return no(namegate.NoName, "no server name")
	}
	if n.b.tripped("a TLS server name", name) {
		return no(namegate.LeakAttempt, "the placeholder of a bound secret in the server name")
	}
	addr, port := dst.Addr().Unmap(), allowlist.Port{Proto: allowlist.TCP, Num: dst.Port()}
	if n.b.policy.CIDRAllows(addr, port) {
		return true, namegate.Refusal{} // a cidr: entry opens the address whatever the name
	}
	ports, ok := n.b.policy.Ports(name)
	if !ok {
		return no(namegate.NotAllowlisted, "server name %s is not allowlisted", name)
	}
	if !slices.Contains(ports, port) {
		return no(namegate.NotAllowlisted, "server name %s is not allowlisted on port %d", name, dst.Port())
	}
	b, ok := n.b.cache.Bound(name, addr)
	if !ok {
		if other, found := n.b.cache.NameFor(addr); found {
			return no(namegate.NotResolved, "%s was not resolved to %s by this sandbox (that address was learned for %s)", name, addr, other)
		}
		return no(namegate.NotResolved, "%s was not resolved to %s by this sandbox", name, addr)
	}
	if !b.Expires.After(now) {
		return no(namegate.Expired, "%s resolved to %s, but that expired at %s", name, addr, b.Expires.UTC().Format(time.RFC3339))
	}
	return true, namegate.Refusal{}
}

// Refused implements namegate.Decider: counted by reason, kept for
// status, and sampled into the audit log as the DNS gate's refusals are
// (the agent decides how often it tries).
func (n *TLSNames) Refused(serverName string, dst netip.AddrPort, why namegate.Refusal) {
	n.refused.Add(1)
	now := n.b.now()
	n.b.mu.Lock()
	n.b.tlsRefusals = appendCapped(n.b.tlsRefusals, TLSRefusal{Time: now, ServerName: serverName, Destination: dst, Kind: string(why.Reason), Reason: why.Detail})
	n.b.tlsRefusedBy[string(why.Reason)]++
	n.b.mu.Unlock()
	n.b.auditSampled(now, audit.Event{Kind: "tls_refused", Name: serverName, Destination: dst.String(), Reason: why.Detail})
	n.b.changed()
}

// Counts are the connections passed and refused so far, and the refused by
// their kind.
func (n *TLSNames) Counts() (passed, refused uint64, refusedBy map[string]uint64) {
	n.b.mu.Lock()
	by := maps.Clone(n.b.tlsRefusedBy)
	n.b.mu.Unlock()
	return n.passed.Load(), n.refused.Load(), by
}
