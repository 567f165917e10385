// Package allowlist decides which names and addresses a sandbox may reach,
// and remembers which addresses were allowed for which name until when. It
// is plain data: no sockets, no kernel, time passed in.
package allowlist

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Rule is one allowlist entry: a host name ("api.example.com", or
// "*.example.com" for any subdomain of example.com but not example.com), or a
// CIDR, with its ports. A wildcard's Bound limits the names it lets through
// (see Wildcards).
type Rule struct {
	Host  string
	CIDR  netip.Prefix
	Ports []Port
	// TLS are the TCP ports of Ports on which a connection must also pass
	// the name gate: its server name is checked, not only its address.
	TLS   []uint16
	Bound NameBound
}

// IP protocol numbers of the ports an entry may open.
const (
	TCP uint8 = 6
	UDP uint8 = 17
)

// Port is a destination port of one protocol: "443/tcp". A TCP entry
// opens nothing for UDP (QUIC on 443 is another door, and no name check
// sees inside it).
type Port struct {
	Proto uint8
	Num   uint16
}

// ProtoNumber reads "tcp" or "udp".
func ProtoNumber(name string) (uint8, bool) {
	switch name {
	case "tcp":
		return TCP, true
	case "udp":
		return UDP, true
	}
	return 0, false
}

// ProtoName writes TCP or UDP as "tcp" or "udp".
func ProtoName(proto uint8) string {
	switch proto {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return strconv.Itoa(int(proto))
}

func (p Port) String() string { return strconv.Itoa(int(p.Num)) + "/" + ProtoName(p.Proto) }

// MarshalText writes "443/tcp".
func (p Port) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalJSON reads "443/tcp", or a bare number as written before ports
// had protocols (read as TCP).
func (p *Port) UnmarshalJSON(b []byte) error {
	if n, err := strconv.ParseUint(string(b), 10, 16); err == nil {
		*p = Port{Proto: TCP, Num: uint16(n)}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	num, proto, _ := strings.Cut(s, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	pr, ok := ProtoNumber(proto)
	if err != nil || !ok {
		return fmt.Errorf("port %q: want NUMBER/tcp or NUMBER/udp", s)
	}
	*p = Port{Proto: pr, Num: uint16(n)}
	return nil
}

func comparePorts(a, b Port) int {
	if a.Num != b.Num {
		return int(a.Num) - int(b.Num)
	}
	return int(a.Proto) - int(b.Proto)
}

// Policy answers "may this sandbox resolve this name, and on which ports".
type Policy struct {
	exact    map[string][]Port
	suffixes map[string][]Port    // "example.com" (from "*.example.com") -> ports
	bounds   map[string]NameBound // "example.com" -> what "*.example.com" lets through
	cidrs    []Rule
	// The ports behind the name gate, by exact name and by suffix, as the
	// ports themselves are.
	tlsExact, tlsSuffixes map[string][]Port
}

// NewPolicy builds a policy from rules. A wildcard written twice gets the
// union of the ports and the tighter of each bound.
func NewPolicy(rules []Rule) *Policy {
	p := &Policy{exact: map[string][]Port{}, suffixes: map[string][]Port{}, bounds: map[string]NameBound{},
		tlsExact: map[string][]Port{}, tlsSuffixes: map[string][]Port{}}
	for _, r := range rules {
		var tls []Port
		for _, n := range r.TLS {
			tls = append(tls, Port{Proto: TCP, Num: n})
		}
		switch {
		case r.CIDR.IsValid():
			p.cidrs = append(p.cidrs, Rule{CIDR: r.CIDR.Masked(), Ports: r.Ports})
		case strings.HasPrefix(r.Host, "*."):
			s := Canonical(r.Host[2:])
			b, seen := p.bounds[s]
			if !seen {
				b = r.Bound
			}
			p.suffixes[s], p.bounds[s] = union(p.suffixes[s], r.Ports), b.tighter(r.Bound)
			p.tlsSuffixes[s] = union(p.tlsSuffixes[s], tls)
		default:
			h := Canonical(r.Host)
			p.exact[h] = union(p.exact[h], r.Ports)
			p.tlsExact[h] = union(p.tlsExact[h], tls)
		}
	}
	return p
}

// under reports whether name is a subdomain of suffix, label by label: as
// text "a\.example.com" ends in ".example.com", but it is the one label
// "a.example" under com, asked of com's servers, not example.com's.
func under(name, suffix string) bool {
	n, s := dns.SplitDomainName(name), dns.SplitDomainName(suffix)
	return len(n) > len(s) && slices.Equal(n[len(n)-len(s):], s)
}

// Canonical lower-cases a name and drops the trailing dot.
func Canonical(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// Ports returns the ports a name is allowed on, and whether it is allowed.
func (p *Policy) Ports(name string) ([]Port, bool) {
	name = Canonical(name)
	ports, ok := p.exact[name]
	for suffix, ps := range p.suffixes {
		if under(name, suffix) {
			ports, ok = union(ports, ps), true
		}
	}
	return ports, ok
}

// NameGated reports whether a connection to name on port must pass the name
// gate. One entry that asks for it is enough: a name under both an exact
// entry and a wildcard, or an address shared by two names, is checked by
// name if either says so.
func (p *Policy) NameGated(name string, port Port) bool {
	name = Canonical(name)
	if slices.Contains(p.tlsExact[name], port) {
		return true
	}
	for suffix, ps := range p.tlsSuffixes {
		if under(name, suffix) && slices.Contains(ps, port) {
			return true
		}
	}
	return false
}

// wildcardOf returns the wildcard a name is counted under: the most
// specific one it is a subdomain of. A name that is also an exact entry is
// under none: it was named one by one, and is no channel of a wildcard's.
func (p *Policy) wildcardOf(name string) (string, bool) {
	name = Canonical(name)
	if _, exact := p.exact[name]; exact {
		return "", false
	}
	best := ""
	for suffix := range p.suffixes {
		if len(suffix) > len(best) && under(name, suffix) {
			best = suffix
		}
	}
	return best, best != ""
}

// ExactNames are the names that can be resolved ahead of time.
func (p *Policy) ExactNames() []string {
	names := make([]string, 0, len(p.exact))
	for n := range p.exact {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// CIDRs are the static entries.
func (p *Policy) CIDRs() []Rule { return p.cidrs }

// ExplicitlyAllowed reports whether a CIDR entry covers addr: the only way a
// private or reserved address may be reached.
func (p *Policy) ExplicitlyAllowed(addr netip.Addr) bool {
	for _, r := range p.cidrs {
		if r.CIDR.Contains(addr) {
			return true
		}
	}
	return false
}

// CIDRAllows reports whether a CIDR entry opens port at addr.
func (p *Policy) CIDRAllows(addr netip.Addr, port Port) bool {
	for _, r := range p.cidrs {
		if r.CIDR.Contains(addr) && slices.Contains(r.Ports, port) {
			return true
		}
	}
	return false
}

func union(a, b []Port) []Port {
	out := append(slices.Clone(a), b...)
	slices.SortFunc(out, comparePorts)
	return slices.Compact(out)
}

// blocked are destinations a DNS answer may not open: loopback, private,
// link-local (cloud metadata at 169.254.169.254 among them), CGNAT, this
// network, IETF protocol assignments, multicast and the reserved class E.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// Blocked reports whether an answer address is in a range that must not be
// opened by a name, and names the range.
func Blocked(addr netip.Addr) (string, bool) {
	addr = addr.Unmap()
	if !addr.Is4() {
		return "IPv6", true
	}
	for _, b := range blocked {
		if b.Contains(addr) {
			return b.String(), true
		}
	}
	return "", false
}

// Source says how an address came to be allowed.
type Source string

const (
	FromStartup Source = "startup resolve"
	FromRefresh Source = "refresh"
	FromQuery   Source = "proxied query"
	FromCIDR    Source = "cidr"
)

// Binding is one address allowed because of one name.
type Binding struct {
	Name    string     `json:"name"`
	Addr    netip.Addr `json:"address"`
	Ports   []Port     `json:"ports"`
	Expires time.Time  `json:"expires"`
	Source  Source     `json:"source"`
	Seen    time.Time  `json:"seen"`
}

// Cache remembers, per name and address, until when the address is allowed.
// It never shortens an allowance: a later answer with a shorter TTL leaves the
// longer expiry in place, because clients may still hold the earlier answer.
type Cache struct {
	mu       sync.Mutex
	bindings map[string]map[netip.Addr]*Binding
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{bindings: map[string]map[netip.Addr]*Binding{}} }

// Update records that name resolved to addrs at now, allowed until now+keep,
// and returns each address with the expiry to install (the later of the
// existing and the new one).
func (c *Cache) Update(now time.Time, name string, addrs []netip.Addr, ports []Port, keep time.Duration, src Source) []Binding {
	c.mu.Lock()
	defer c.mu.Unlock()
	name = Canonical(name)
	m := c.bindings[name]
	if m == nil {
		m = map[netip.Addr]*Binding{}
		c.bindings[name] = m
	}
	out := make([]Binding, 0, len(addrs))
	for _, a := range addrs {
		exp := now.Add(keep)
		b := m[a]
		if b == nil {
			b = &Binding{Name: name, Addr: a}
			m[a] = b
		}
		if exp.After(b.Expires) {
			b.Expires = exp
		}
		b.Ports, b.Source, b.Seen = ports, src, now
		out = append(out, *b)
	}
	return out
}

// GC forgets bindings that expired before now.
func (c *Cache) GC(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, m := range c.bindings {
		for a, b := range m {
			if !b.Expires.After(now) {
				delete(m, a)
			}
		}
		if len(m) == 0 {
			delete(c.bindings, name)
		}
	}
}

// Snapshot returns every live binding, by name then address.
func (c *Cache) Snapshot(now time.Time) []Binding {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Binding
	for _, m := range c.bindings {
		for _, b := range m {
			if b.Expires.After(now) {
				out = append(out, *b)
			}
		}
	}
	slices.SortFunc(out, func(a, b Binding) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return a.Addr.Compare(b.Addr)
	})
	return out
}

// Bound returns the binding of name to addr, expired or not (GC has not run
// yet), and whether there is one.
func (c *Cache) Bound(name string, addr netip.Addr) (Binding, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.bindings[Canonical(name)][addr]; ok {
		return *b, true
	}
	return Binding{}, false
}

// NameFor returns the name that most recently mapped to addr, if any: drops
// are reported with it.
func (c *Cache) NameFor(addr netip.Addr) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *Binding
	for _, m := range c.bindings {
		if b, ok := m[addr]; ok && (best == nil || b.Seen.After(best.Seen)) {
			best = b
		}
	}
	if best == nil {
		return "", false
	}
	return best.Name, true
}

// Keep is how long an answer keeps its addresses allowed: the TTL clamped to
// [min, max], plus grace so connections opened just before expiry finish.
func Keep(ttl, minTTL, maxTTL, grace time.Duration) time.Duration {
	return max(minTTL, min(ttl, maxTTL)) + grace
}

func (b Binding) String() string {
	return fmt.Sprintf("%s %s %v until %s (%s)", b.Name, b.Addr, b.Ports, b.Expires.Format(time.RFC3339), b.Source)
}
