// Package egress is the bookkeeping of one sandbox's egress: it answers the
// DNS gate (dnsproxy.Gate) with the profile's allowlist, writes what each
// answer allows into the sandbox's ip set before the answer is released,
// re-resolves names as their TTLs run out, records what was refused,
// dropped and denied, and publishes it all for status and verify.
package egress

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clawguard/clawguard/enforce/audit"
	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/netrules/allowlist"
	"github.com/clawguard/clawguard/netrules/dnsproxy"
	"github.com/clawguard/clawguard/netrules/nflog"
	"github.com/clawguard/clawguard/profiles"
)

// Sets is the part of host networking egress writes: a sandbox's allowlist
// set.
type Sets interface {
	Allow(sandbox string, entries []netrules.Entry) error
}

// grace keeps an address allowed a little past its TTL, so a connection
// opened just before expiry can still be set up.
const grace = 10 * time.Second

// refusalsKept is how many refused queries status shows.
const refusalsKept = 50

// Book is one sandbox's DNS gate and refresh loop: it implements
// dnsproxy.Gate with the profile's allowlist, the address cache and the
// sandbox's ip set, and publishes what it did for `clawguard status`.
type Book struct {
	name     string
	policy   *allowlist.Policy
	cache    *allowlist.Cache
	net      Sets
	minTTL   time.Duration
	maxTTL   time.Duration
	log      *slog.Logger
	snapPath string
	audit    func(audit.Event)
	now      func() time.Time

	// wildcards bounds the names each wildcard lets through, and so the
	// cache's names under it.
	wildcards *allowlist.Wildcards

	// Counts for metrics.
	answered, refused, refreshErrors atomic.Uint64

	// setMu is held from the check of installed through the kernel write
	// to the record of what was written (see admit).
	setMu     sync.Mutex
	mu        sync.Mutex
	installed map[installedKey]time.Time // until when the set holds each entry, as we wrote it
	refusals  []Refusal
	// auditBudget bounds refusal lines in the audit log; unlogged counts
	// those over it, reported with the next line.
	auditBudget budget
	unlogged    int
	// alarms are the credential broker's events (a foreign key, a leak
	// attempt): sampled too, since the agent makes them at will, but on a
	// budget of their own, which no flood of refused queries can spend.
	alarms         budget
	alarmsUnlogged int
	drops          []DroppedAnswer
	denied         []DeniedPacket
	tlsRefusals    []TLSRefusal
	// tlsRefusedBy counts the name gate's refusals by namegate.Reason.
	tlsRefusedBy map[string]uint64
	tls          TLSNames
	// tripwords are the placeholders' random parts; trip is told where
	// one was seen (a DNS query, a server name).
	tripwords []string
	trip      func(where, detail string)
	dirty     chan struct{}
}

// installedKey is one set entry: of the main set, or with tls of the name
// gate's (an address and port is checked by name once any name there asks
// for it, so the two are written and kept apart).
type installedKey struct {
	addr netip.Addr
	port allowlist.Port
	tls  bool
}

// Refusal is a DNS query answered without asking upstream.
type Refusal struct {
	Time   time.Time `json:"time"` // the latest
	Name   string    `json:"name"`
	Type   string    `json:"type"`
	Reason string    `json:"reason"`
	Count  int       `json:"count"` // refusals of this name, type and reason while it was kept
}

// Refusals are aggregated, and the audit lines of what the agent can cause
// at will (refusals, denials, dropped answers) sampled: an agent decides
// how often it asks for a name it may not have, and 200,000 refusals in a
// burst must neither push every other sandbox's history out of the shared
// audit log nor rewrite the status snapshot 200,000 times.
const (
	auditPerMinute  = 60 // such lines a sandbox may add to the audit log per minute
	publishInterval = 250 * time.Millisecond
)

// DroppedAnswer is an address an upstream answer carried that the sandbox
// may not reach (private, loopback, metadata, ...).
type DroppedAnswer struct {
	Time  time.Time  `json:"time"`
	Name  string     `json:"name"`
	Addr  netip.Addr `json:"address"`
	Range string     `json:"range"`
}

// DeniedPacket is a packet the sandbox's chain dropped, as NFLOG reported it.
type DeniedPacket struct {
	Time     time.Time  `json:"time"`
	Dst      netip.Addr `json:"destination"`
	Port     uint16     `json:"port,omitempty"`
	Protocol string     `json:"protocol"`
	Name     string     `json:"name,omitempty"` // the name that last mapped to Dst
}

// Snapshot is what the book publishes about a sandbox's egress.
type Snapshot struct {
	Updated   time.Time               `json:"updated"`
	DNSPort   int                     `json:"dns_port"`
	Bindings  []allowlist.Binding     `json:"bindings"`
	Wildcards []allowlist.WildcardUse `json:"wildcards,omitempty"`
	Refused   []Refusal               `json:"refused_queries"`
	Dropped   []DroppedAnswer         `json:"dropped_answers"`
	Denied    []DeniedPacket          `json:"denied_packets"`
	// TLSPassed and TLSRefusedCount count the name gate's decisions;
	// TLSRefused are the last connections it turned away.
	TLSPassed       uint64       `json:"tls_passed,omitempty"`
	TLSRefusedCount uint64       `json:"tls_refused_count,omitempty"`
	TLSRefused      []TLSRefusal `json:"tls_refused,omitempty"`
	// TLSRefusedBy counts the refusals by their kind.
	TLSRefusedBy map[string]uint64 `json:"tls_refused_by,omitempty"`
}

// New returns the book of sandbox name under profile p; it writes the set
// through sets, publishes to snapPath and records denials with record.
func New(name string, p *profiles.Profile, sets Sets, snapPath string, record func(audit.Event), log *slog.Logger) *Book {
	policy := allowlist.NewPolicy(allowRules(p))
	e := &Book{
		name: name, policy: policy, cache: allowlist.NewCache(), wildcards: allowlist.NewWildcards(policy), net: sets,
		minTTL: p.Egress.DNS.MinTTL.Duration, maxTTL: p.Egress.DNS.MaxTTL.Duration, log: log,
		snapPath: snapPath, audit: record, now: time.Now, dirty: make(chan struct{}, 1),
		installed: map[installedKey]time.Time{}, auditBudget: budget{perMinute: auditPerMinute}, alarms: budget{perMinute: alarmsPerMinute}, tlsRefusedBy: map[string]uint64{},
	}
	e.tls.b = e
	return e
}

// allowRules converts the profile's allowlist for netrules.
// Policy is the profile's allowlist as a policy: what the gate and verify
// judge names and addresses by.
func Policy(p *profiles.Profile) *allowlist.Policy { return allowlist.NewPolicy(allowRules(p)) }

func allowRules(p *profiles.Profile) []allowlist.Rule {
	var out []allowlist.Rule
	for _, a := range p.Egress.Allow {
		r := allowlist.Rule{Host: a.Host}
		r.Bound.Max, r.Bound.PerMinute = a.NameBound()
		for _, port := range a.TLSPorts() {
			r.TLS = append(r.TLS, uint16(port))
		}
		if a.CIDR != "" {
			r.CIDR = netip.MustParsePrefix(a.CIDR) // validated before
		}
		for _, proto := range a.Protos() {
			n, _ := allowlist.ProtoNumber(proto) // validated before
			for _, port := range a.Ports {
				r.Ports = append(r.Ports, allowlist.Port{Proto: n, Num: uint16(port)})
			}
		}
		out = append(out, r)
	}
	return out
}

// StaticEntries are the members of the ranges set: one per cidr entry and
// port, however large the range.
func (e *Book) StaticEntries() ([]netrules.NetEntry, error) {
	var out []netrules.NetEntry
	for _, r := range e.policy.CIDRs() {
		for _, port := range r.Ports {
			out = append(out, netrules.NetEntry{Prefix: r.CIDR, Proto: port.Proto, Port: port.Num})
		}
	}
	return out, nil
}

// Allowed implements dnsproxy.Gate. A name that carries a placeholder is
// refused, whatever the allowlist says, and trips the wire.
func (e *Book) Allowed(name string) bool {
	if e.tripped("a DNS query", name) {
		return false
	}
	_, ok := e.policy.Ports(name)
	return ok
}

// SetTripwire makes the placeholders' random parts (words) trip the wire
// wherever the book sees names: DNS queries and TLS server names. Set it
// before the gates serve.
func (e *Book) SetTripwire(words []string, trip func(where, detail string)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tripwords, e.trip = words, trip
}

// tripped reports whether name carries a tripword, in any case and split
// across labels, and if so trips the wire.
func (e *Book) tripped(where, name string) bool {
	e.mu.Lock()
	words, trip := e.tripwords, e.trip
	e.mu.Unlock()
	if len(words) == 0 {
		return false
	}
	flat := strings.ToLower(strings.ReplaceAll(name, ".", ""))
	for _, w := range words {
		if strings.Contains(flat, w) {
			trip(where, fmt.Sprintf("the placeholder of a bound secret in %q", name))
			return true
		}
	}
	return false
}

// Forward implements dnsproxy.Gate: a new name under a wildcard is let
// through while the wildcard has room and has not had its new names for
// the minute. It counts for grace until its answer comes and Admit keeps
// it for the answer's time; a name with no answer (NXDOMAIN, a timeout)
// leaves the count when that hold runs out, but stays in the minute's.
func (e *Book) Forward(name string) (string, bool) {
	why := e.wildcards.Forward(e.now(), name, grace)
	return why, why == ""
}

// Admit implements dnsproxy.Gate: drop forbidden addresses, then install the
// rest in the set; the proxy releases the answer only after this returns.
func (e *Book) Admit(_ context.Context, name string, addrs []netip.Addr, ttl time.Duration) ([]netip.Addr, error) {
	e.answered.Add(1)
	return e.admit(name, addrs, ttl, allowlist.FromQuery)
}

func (e *Book) admit(name string, addrs []netip.Addr, ttl time.Duration, src allowlist.Source) ([]netip.Addr, error) {
	now := e.now()
	ports, ok := e.policy.Ports(name)
	if !ok {
		return nil, nil
	}
	var keep []netip.Addr
	for _, a := range addrs {
		if rng, blocked := allowlist.Blocked(a); blocked && !e.policy.ExplicitlyAllowed(a) {
			e.log.Warn("dns answer points at a forbidden range; dropped", "sandbox", e.name, "name", name, "address", a, "range", rng)
			e.mu.Lock()
			e.drops = appendCapped(e.drops, DroppedAnswer{Time: now, Name: allowlist.Canonical(name), Addr: a, Range: rng})
			e.mu.Unlock()
			e.auditSampled(now, audit.Event{Kind: "dropped_answer", Name: allowlist.Canonical(name), Destination: a.String(), Reason: "answer in " + rng})
			continue
		}
		keep = append(keep, a)
	}
	if len(keep) == 0 {
		e.changed()
		return nil, nil
	}
	hold := allowlist.Keep(ttl, e.minTTL, e.maxTTL, grace)
	bindings := e.cache.Update(now, name, keep, ports, hold, src)
	// Live under its wildcard as long as its addresses are in the cache.
	e.wildcards.Keep(name, now.Add(hold))
	// The set holds one entry per address and port, shared by every name
	// that maps there: write only what extends an entry, never what would
	// shorten another name's allowance, and nothing while the entry already
	// outlives this answer (its TTL is at most keep-grace).
	//
	// Check, write and record are one step (setMu): two answers for one
	// address admitted at once would otherwise both pass the check, the
	// shorter could reach the kernel last, and the record would keep the
	// longer, skipping the writes that should have followed.
	e.setMu.Lock()
	defer e.setMu.Unlock()
	//
	// An address and port behind the name gate is an entry of both sets,
	// the gate's kept apart: a gated name's answer must not shorten the
	// entry a name checked by address holds in the main set, nor the
	// other way round.
	var entries []netrules.Entry
	var wrote []installedKey
	var until []time.Time
	e.mu.Lock()
	for _, b := range bindings {
		for _, port := range b.Ports {
			gated := e.policy.NameGated(name, port)
			main, gate := installedKey{addr: b.Addr, port: port}, installedKey{addr: b.Addr, port: port, tls: true}
			covered := func(k installedKey) bool {
				in, ok := e.installed[k]
				return ok && !in.Before(b.Expires.Add(-grace/2))
			}
			if covered(main) && (!gated || covered(gate)) {
				continue
			}
			mainUntil := later(e.installed[main], b.Expires)
			en := netrules.Entry{Addr: b.Addr, Proto: port.Proto, Port: port.Num, Timeout: mainUntil.Sub(now)}
			wrote, until = append(wrote, main), append(until, mainUntil)
			if gated {
				gateUntil := later(e.installed[gate], b.Expires)
				en.TLS, en.TLSTimeout = true, gateUntil.Sub(now)
				wrote, until = append(wrote, gate), append(until, gateUntil)
			}
			entries = append(entries, en)
		}
	}
	e.mu.Unlock()
	if len(entries) > 0 {
		if err := e.net.Allow(e.name, entries); err != nil {
			return nil, err
		}
		e.mu.Lock()
		for i, k := range wrote {
			if until[i].After(e.installed[k]) {
				e.installed[k] = until[i]
			}
		}
		e.mu.Unlock()
	}
	e.changed()
	return keep, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// prune forgets set entries the kernel has let expire.
func (e *Book) prune(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, until := range e.installed {
		if until.Before(now) {
			delete(e.installed, k)
		}
	}
}

// Denied records a drop the kernel logged, with the name that last
// mapped to its destination.
func (e *Book) Denied(p nflog.Packet) {
	d := DeniedPacket{Time: p.Time, Dst: p.Dst, Port: p.DstPort, Protocol: p.ProtoName()}
	d.Name, _ = e.cache.NameFor(p.Dst)
	e.mu.Lock()
	e.denied = appendCapped(e.denied, d)
	e.mu.Unlock()
	e.auditSampled(e.now(), audit.Event{Kind: "denied_packet", Destination: d.Dst.String(), Port: d.Port, Protocol: d.Protocol, Name: d.Name})
	e.changed()
}

// Refused implements dnsproxy.Gate.
func (e *Book) Refused(name, qtype, reason string) {
	e.refused.Add(1)
	// Debug, not Info: the agent chooses how often this happens, and the
	// audit log and status already keep every refusal.
	e.log.Debug("dns query refused", "sandbox", e.name, "name", name, "type", qtype, "reason", reason)
	now, canonical := e.now(), allowlist.Canonical(name)
	e.mu.Lock()
	e.refusals = aggregate(e.refusals, Refusal{Time: now, Name: canonical, Type: qtype, Reason: reason, Count: 1})
	e.mu.Unlock()
	e.auditSampled(now, audit.Event{Kind: "refused_query", Name: canonical, QueryType: qtype, Reason: reason})
	e.changed()
}

// auditSampled writes an event the agent can cause at will (a refused
// query, a denied packet, a dropped answer) within the sandbox's budget; the
// events over it are counted, and the count goes with the next line.
func (e *Book) auditSampled(now time.Time, ev audit.Event) {
	e.sample(now, ev, &e.auditBudget, &e.unlogged, auditPerMinute)
}

// alarmsPerMinute bounds the broker's audit lines per sandbox.
const alarmsPerMinute = 20

// Alarm writes an event of the credential broker's (credential_refused,
// credential_leak_attempt) on its own budget, and reports whether it was
// written: the agent decides how often it happens.
func (e *Book) Alarm(ev audit.Event) bool {
	return e.sample(e.now(), ev, &e.alarms, &e.alarmsUnlogged, alarmsPerMinute)
}

func (e *Book) sample(now time.Time, ev audit.Event, b *budget, skipped *int, perMinute int) bool {
	e.mu.Lock()
	ok, unlogged := b.take(now), 0
	if ok {
		unlogged, *skipped = *skipped, 0
	} else {
		*skipped++
	}
	e.mu.Unlock()
	if !ok {
		return false
	}
	if unlogged > 0 {
		ev.Reason = fmt.Sprintf("%s (and %d events not logged before this one: over %d a minute)", ev.Reason, unlogged, perMinute)
	}
	e.audit(ev)
	return true
}

// aggregate counts r into the refusal of the same name, type and reason if
// one is kept (moving it to the end, as the latest), or appends it.
func aggregate(kept []Refusal, r Refusal) []Refusal {
	for i := range kept {
		if k := kept[i]; k.Name == r.Name && k.Type == r.Type && k.Reason == r.Reason {
			r.Count += k.Count
			kept = append(kept[:i], kept[i+1:]...)
			break
		}
	}
	return appendCapped(kept, r)
}

// budget allows perMinute events a minute, in a burst if need be.
type budget struct {
	perMinute int
	start     time.Time
	used      int
}

func (b *budget) take(now time.Time) bool {
	if now.Sub(b.start) >= time.Minute {
		b.start, b.used = now, 0
	}
	if b.used >= b.perMinute {
		return false
	}
	b.used++
	return true
}

func appendCapped[T any](s []T, v T) []T {
	s = append(s, v)
	if len(s) > refusalsKept {
		s = s[len(s)-refusalsKept:]
	}
	return s
}

func (e *Book) changed() {
	select {
	case e.dirty <- struct{}{}:
	default:
	}
}

// ResolveAll resolves every exact allowlisted name once (at start, before
// the task runs) and returns when each is installed or has failed.
func (e *Book) ResolveAll(ctx context.Context, p *dnsproxy.Proxy) map[string]time.Duration {
	next := map[string]time.Duration{}
	for _, n := range e.policy.ExactNames() {
		next[n] = e.resolve(ctx, p, n, allowlist.FromStartup)
	}
	return next
}

// resolve looks a name up and installs its addresses; it returns when to
// look again: before the clamped TTL runs out, or soon after a failure.
func (e *Book) resolve(ctx context.Context, p *dnsproxy.Proxy, name string, src allowlist.Source) time.Duration {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, ttl, err := p.Resolve(rctx, name)
	if err == nil {
		_, err = e.admit(name, addrs, ttl, src)
	}
	if err != nil {
		e.refreshErrors.Add(1)
		e.log.Warn("resolve allowlisted name", "sandbox", e.name, "name", name, "error", err)
		return 5 * time.Second
	}
	return max(time.Second, max(e.minTTL, min(ttl, e.maxTTL))*8/10)
}

// Run keeps names fresh, forgets expired bindings and publishes snapshots
// until ctx ends.
func (e *Book) Run(ctx context.Context, p *dnsproxy.Proxy, first map[string]time.Duration, dnsPort int) {
	var wg sync.WaitGroup
	for name, wait := range first {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTimer(wait)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					t.Reset(e.resolve(ctx, p, name, allowlist.FromRefresh))
				}
			}
		}()
	}
	gc := time.NewTicker(10 * time.Second)
	defer gc.Stop()
	e.publish(dnsPort)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-gc.C:
			e.cache.GC(e.now())
			e.wildcards.GC(e.now())
			e.prune(e.now())
			e.publish(dnsPort)
		case <-e.dirty:
			e.publish(dnsPort)
			// Coalesce: a flood's changes reach the snapshot at most
			// every publishInterval.
			select {
			case <-ctx.Done():
			case <-time.After(publishInterval):
			}
		}
	}
}

// publish writes the snapshot atomically for status readers.
func (e *Book) publish(dnsPort int) {
	now := e.now()
	e.mu.Lock()
	snap := Snapshot{Updated: now, DNSPort: dnsPort, Bindings: e.cache.Snapshot(now), Wildcards: e.wildcards.Use(now),
		Refused: append([]Refusal(nil), e.refusals...), Dropped: append([]DroppedAnswer(nil), e.drops...),
		Denied: append([]DeniedPacket(nil), e.denied...), TLSRefused: append([]TLSRefusal(nil), e.tlsRefusals...),
		TLSRefusedBy: maps.Clone(e.tlsRefusedBy)}
	e.mu.Unlock()
	snap.TLSPassed, snap.TLSRefusedCount, _ = e.tls.Counts()
	b, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return
	}
	tmp := e.snapPath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		e.log.Debug("write egress snapshot", "error", err)
		return
	}
	_ = os.Rename(tmp, e.snapPath)
}

// Read reads the snapshot a supervisor published.
func Read(path string) (*Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("egress snapshot %s: %w", path, err)
	}
	return &s, nil
}

// Counts are the book's totals, for metrics: answers that installed
// addresses, queries refused, and refresh lookups that failed.
func (e *Book) Counts() (answered, refused, refreshErrors uint64) {
	return e.answered.Load(), e.refused.Load(), e.refreshErrors.Load()
}
