package egress

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawguard/clawguard/enforce/audit"
	"github.com/clawguard/clawguard/enforce/enforcetest"
	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/netrules/allowlist"
	"github.com/clawguard/clawguard/profiles"
)

// recordingNet records set writes.
type recordingNet struct {
	mu     sync.Mutex
	writes [][]netrules.Entry
	fail   error
}

func (r *recordingNet) Allow(_ string, e []netrules.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.writes = append(r.writes, e)
	return nil
}

func testEgress(t *testing.T, n Sets, now *time.Time, extra ...profiles.AllowEntry) *Book {
	t.Helper()
	p := enforcetest.Profile(t, "e")
	p.Egress.Allow = append(p.Egress.Allow, enforcetest.Allow("api.example.com", 443), enforcetest.Allow("*.cdn.example.com", 443))
	p.Egress.Allow = append(p.Egress.Allow, extra...)
	p.Egress.DNS.MinTTL.Duration, p.Egress.DNS.MaxTTL.Duration = 30*time.Second, time.Hour
	e := New("e", p, n, t.TempDir()+"/egress.json", func(audit.Event) {}, slog.New(slog.DiscardHandler))
	e.now = func() time.Time { return *now }
	return e
}

func TestAdmitInstallsThenSkipsWritesWhileTheSetCoversTheAnswer(t *testing.T) {
	n := &recordingNet{}
	now := time.Unix(10000, 0)
	e := testEgress(t, n, &now)
	a := netip.MustParseAddr("198.51.100.10")
	got, err := e.Admit(context.Background(), "api.example.com.", []netip.Addr{a}, 60*time.Second)
	if err != nil || len(got) != 1 || len(n.writes) != 1 {
		t.Fatalf("first answer: %v %v, writes %d", got, err, len(n.writes))
	}
	// TCP only (the entry names no protocol), the allowlisted port, TTL
	// plus grace.
	if w := n.writes[0]; len(w) != 1 || w[0].Proto != netrules.ProtoTCP || w[0].Port != 443 || w[0].Timeout != 70*time.Second {
		t.Fatalf("entries %+v", w)
	}
	now = now.Add(2 * time.Second)
	if _, err := e.Admit(context.Background(), "api.example.com.", []netip.Addr{a}, 60*time.Second); err != nil || len(n.writes) != 1 {
		t.Fatalf("a repeat answer 2s later rewrote the set (%d writes)", len(n.writes))
	}
	now = now.Add(30 * time.Second)
	if _, err := e.Admit(context.Background(), "api.example.com.", []netip.Addr{a}, 60*time.Second); err != nil || len(n.writes) != 2 {
		t.Fatalf("an answer that outlives the installed entry did not extend it (%d writes)", len(n.writes))
	}
}

func TestAdmitDropsForbiddenAnswersAndRefusesNamesOutsideTheAllowlist(t *testing.T) {
	n := &recordingNet{}
	now := time.Unix(10000, 0)
	e := testEgress(t, n, &now)
	got, err := e.Admit(context.Background(), "x.cdn.example.com", []netip.Addr{
		netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("198.51.100.20"),
	}, time.Minute)
	if err != nil || len(got) != 1 || got[0].String() != "198.51.100.20" {
		t.Fatalf("admitted %v, %v", got, err)
	}
	if len(e.drops) != 2 {
		t.Fatalf("drops recorded: %+v", e.drops)
	}
	if e.Allowed("cdn.example.com") || !e.Allowed("a.b.cdn.example.com") || e.Allowed("evil.test") {
		t.Fatal("allowlist matching wrong")
	}
}

func TestAdmitReportsAFailedInstall(t *testing.T) {
	n := &recordingNet{fail: context.DeadlineExceeded}
	now := time.Unix(10000, 0)
	e := testEgress(t, n, &now)
	if _, err := e.Admit(context.Background(), "api.example.com", []netip.Addr{netip.MustParseAddr("198.51.100.10")}, time.Minute); err == nil {
		t.Fatal("a failed set write must fail the admission (the proxy answers SERVFAIL)")
	}
	// The next answer must try again, not trust a write that never happened.
	n.fail = nil
	if _, err := e.Admit(context.Background(), "api.example.com", []netip.Addr{netip.MustParseAddr("198.51.100.10")}, time.Minute); err != nil || len(n.writes) != 1 {
		t.Fatalf("retry: %v, writes %d", err, len(n.writes))
	}
}

func TestAnAnswerForOneNameNeverShortensAnotherNamesAllowance(t *testing.T) {
	n := &recordingNet{}
	now := time.Unix(10000, 0)
	e := testEgress(t, n, &now)
	a := netip.MustParseAddr("198.51.100.10")
	// api.example.com allows a for an hour; x.cdn.example.com maps to the same
	// address and port with a 1 s TTL.
	if _, err := e.Admit(context.Background(), "api.example.com", []netip.Addr{a}, time.Hour); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	if _, err := e.Admit(context.Background(), "x.cdn.example.com", []netip.Addr{a}, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, w := range n.writes[1:] {
		for _, en := range w {
			if en.Addr == a && en.Port == 443 && en.Timeout < time.Hour-time.Minute {
				t.Fatalf("the short answer rewrote %s:443 with %s", a, en.Timeout)
			}
		}
	}
}

// An entry opens the protocols it names, TCP when it names none: an
// answer for a TCP entry must not open QUIC on the same port.
func TestEntriesOpenOnlyTheirProtocols(t *testing.T) {
	for _, tt := range []struct {
		name      string
		protocols []string
		want      []uint8
	}{
		{"no protocols is TCP", nil, []uint8{netrules.ProtoTCP}},
		{"udp only", []string{"udp"}, []uint8{netrules.ProtoUDP}},
		{"both", []string{"tcp", "udp"}, []uint8{netrules.ProtoTCP, netrules.ProtoUDP}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := &recordingNet{}
			p := enforcetest.Profile(t, "e")
			a := enforcetest.Allow("api.example.com", 443)
			a.Protocols = tt.protocols
			c := profiles.AllowEntry{CIDR: "198.51.100.0/31", Ports: []int{5432}, Protocols: tt.protocols}
			p.Egress.Allow = []profiles.AllowEntry{a, c}
			e := New("e", p, n, t.TempDir()+"/egress.json", func(audit.Event) {}, slog.New(slog.DiscardHandler))
			if _, err := e.Admit(context.Background(), "api.example.com", []netip.Addr{netip.MustParseAddr("198.51.100.10")}, time.Minute); err != nil {
				t.Fatal(err)
			}
			static, err := e.StaticEntries()
			if err != nil {
				t.Fatal(err)
			}
			var answer, cidr []uint8
			for _, en := range n.writes[0] {
				answer = append(answer, en.Proto)
			}
			for _, en := range static {
				cidr = append(cidr, en.Proto)
			}
			for what, got := range map[string][]uint8{"answer": answer, "cidr": cidr} {
				slices.Sort(got)
				if got = slices.Compact(got); !slices.Equal(got, tt.want) {
					t.Errorf("%s: protocols %v, want %v", what, got, tt.want)
				}
			}
			// A range is one member per port, not one per address.
			if len(static) != len(tt.want) {
				t.Errorf("cidr: %d members, want %d (one per protocol)", len(static), len(tt.want))
			}
		})
	}
}

// kernelSet keeps, as the kernel does, the timeout of the last write of each
// entry (writes replace), and yields inside each write so concurrent
// admissions interleave.
type kernelSet struct {
	mu      sync.Mutex
	timeout map[installedKey]time.Duration
}

func (k *kernelSet) Allow(_ string, es []netrules.Entry) error {
	time.Sleep(50 * time.Microsecond)
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, e := range es {
		port := allowlist.Port{Proto: e.Proto, Num: e.Port}
		k.timeout[installedKey{e.Addr, port, false}] = e.Timeout
		if e.TLS {
			k.timeout[installedKey{e.Addr, port, true}] = cmp.Or(e.TLSTimeout, e.Timeout)
		}
	}
	return nil
}

// Two names answer with one address at once, one for a minute and one for
// an hour. Whatever the order, the kernel's entry never ends before what
// the book recorded: otherwise later answers would be skipped as covered
// while the kernel lets the entry go early, and an allowed name would be
// denied.
func TestConcurrentAnswersNeverLeaveTheKernelShorterThanTheRecord(t *testing.T) {
	for round := range 20 {
		k := &kernelSet{timeout: map[installedKey]time.Duration{}}
		now := time.Unix(10000, 0)
		e := testEgress(t, k, &now)
		a := netip.MustParseAddr("198.51.100.10")
		var wg sync.WaitGroup
		for i := range 40 {
			name, ttl := "api.example.com", time.Minute
			if i%2 == 1 {
				name, ttl = "x.cdn.example.com", time.Hour
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.Admit(context.Background(), name, []netip.Addr{a}, ttl); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		// 443 is behind the name gate by default: an entry of both sets.
		for _, gated := range []bool{false, true} {
			key := installedKey{a, allowlist.Port{Proto: allowlist.TCP, Num: 443}, gated}
			e.mu.Lock()
			recorded := e.installed[key].Sub(now)
			e.mu.Unlock()
			if recorded <= 0 {
				t.Fatalf("round %d: the book recorded no entry for %v", round, key)
			}
			if got := k.timeout[key]; got < recorded {
				t.Fatalf("round %d: the kernel holds %v for %s, the book recorded %s", round, key, got, recorded)
			}
		}
	}
}

// The record of set entries does not grow for ever: entries the kernel has
// let expire are forgotten, and the live ones kept.
func TestExpiredEntriesArePruned(t *testing.T) {
	now := time.Unix(10000, 0)
	e := testEgress(t, &recordingNet{}, &now)
	for i, ttl := range []time.Duration{time.Minute, time.Hour} {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
		if _, err := e.Admit(context.Background(), "api.example.com", []netip.Addr{a}, ttl); err != nil {
			t.Fatal(err)
		}
	}
	e.prune(now.Add(10 * time.Minute))
	e.mu.Lock()
	defer e.mu.Unlock()
	// The hour-long address, an entry of the main set and of the gate's.
	if len(e.installed) != 2 {
		t.Fatalf("after the minute-long entry expired: %v", e.installed)
	}
}

// A flood of refused names leaves the audit log a bounded, sampled record
// (the lines over the budget are counted in the next line), and the status
// one entry per name with its count.
func TestRefusalFloodsAreAggregatedAndSampled(t *testing.T) {
	now := time.Unix(10000, 0)
	var lines []audit.Event
	e := New("e", enforcetest.Profile(t, "e"), &recordingNet{}, t.TempDir()+"/egress.json",
		func(ev audit.Event) { lines = append(lines, ev) }, slog.New(slog.DiscardHandler))
	e.now = func() time.Time { return now }
	for i := range 10000 {
		name := fmt.Sprintf("x%d.evil.example", i%5000)
		if i >= 9000 {
			name = "again.evil.example"
		}
		e.Refused(name, "A", "not allowlisted")
	}
	if len(lines) != auditPerMinute {
		t.Fatalf("%d audit lines in a minute, want the budget of %d", len(lines), auditPerMinute)
	}
	now = now.Add(time.Minute)
	e.Refused("late.evil.example", "A", "not allowlisted")
	if last := lines[len(lines)-1]; !strings.Contains(last.Reason, fmt.Sprintf("and %d events not logged", 10000-auditPerMinute)) {
		t.Errorf("the next line does not count the unlogged ones: %q", last.Reason)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.refusals) > refusalsKept {
		t.Errorf("%d refusals kept", len(e.refusals))
	}
	again := e.refusals[len(e.refusals)-2]
	if again.Name != "again.evil.example" || again.Count != 1000 {
		t.Errorf("the repeated name: %+v, want one entry counted 1000 times", again)
	}
}

// A wildcard entry is bounded by the profile's max_names and
// new_names_per_minute, the defaults when it gives none; a refusal names
// the wildcard and the limit. Exact names never count, even when the
// wildcard is full.
func TestNewNamesUnderAWildcardAreBoundedByTheProfile(t *testing.T) {
	five := 5
	tests := []struct {
		name     string
		maxNames *int
		asked    int
		through  int
		reason   string
	}{
		{"the default rate refuses the 121st new name in a minute", nil, 130, profiles.DefaultNewNamesPerMinute,
			"wildcard *.cdn.example.com had 120 new names in the last minute (new_names_per_minute)"},
		{"the profile's max_names refuses the sixth live name", &five, 130, 5,
			"wildcard *.cdn.example.com holds 5 names (max_names)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(10000, 0)
			p := enforcetest.Profile(t, "e")
			w := enforcetest.Allow("*.cdn.example.com", 443)
			w.MaxNames = tt.maxNames
			p.Egress.Allow = append(p.Egress.Allow, enforcetest.Allow("api.example.com", 443), w)
			e := New("e", p, &recordingNet{}, t.TempDir()+"/egress.json", func(audit.Event) {}, slog.New(slog.DiscardHandler))
			e.now = func() time.Time { return now }
			through := 0
			for i := range tt.asked {
				name := fmt.Sprintf("n%d.cdn.example.com.", i)
				why, ok := e.Forward(name)
				if !ok {
					if why != tt.reason {
						t.Fatalf("%s refused with %q, want %q", name, why, tt.reason)
					}
					continue
				}
				through++
				if _, err := e.Admit(context.Background(), name, []netip.Addr{netip.MustParseAddr("198.51.100.20")}, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			if through != tt.through {
				t.Fatalf("%d of %d new names let through, want %d", through, tt.asked, tt.through)
			}
			for _, name := range []string{"n0.cdn.example.com", "api.example.com"} {
				if why, ok := e.Forward(name); !ok {
					t.Errorf("%s (known or exact) refused at the bound: %q", name, why)
				}
			}
		})
	}
}

// 100,000 distinct names under a wildcard, asked as a flood over ten
// minutes and answered with long TTLs, leave the book as large as the
// wildcard's bound allows: at most max_names live names in the cache and
// in the count, the refusals aggregated to what status keeps, the audit
// log sampled. Refused names leave nothing behind.
func TestAFloodOfWildcardNamesLeavesTheBookBounded(t *testing.T) {
	now := time.Unix(10000, 0)
	lines := 0
	e := testEgress(t, &recordingNet{}, &now)
	e.audit = func(audit.Event) { lines++ }
	const names, span = 100000, 10 * time.Minute
	step := span / names
	reasons := map[string]int{}
	lastGC := now
	for i := range names {
		now = now.Add(step)
		name := fmt.Sprintf("x%d.cdn.example.com.", i)
		if why, ok := e.Forward(name); !ok {
			// As the proxy does.
			e.Refused(name, "A", why)
			reasons[why[strings.LastIndex(why, "("):]]++
			continue
		}
		addr := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if _, err := e.Admit(context.Background(), name, []netip.Addr{addr}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if now.Sub(lastGC) >= 10*time.Second { // as Run does
			e.cache.GC(now)
			e.wildcards.GC(now)
			e.prune(now)
			lastGC = now
		}
	}
	if reasons["(max_names)"] == 0 || reasons["(new_names_per_minute)"] == 0 {
		t.Fatalf("refusals by limit %v: the flood should meet both", reasons)
	}
	admitted := int(e.answered.Load())
	if minutes := int(span / time.Minute); admitted > (minutes+1)*profiles.DefaultNewNamesPerMinute || admitted < profiles.DefaultMaxNames {
		t.Errorf("%d names admitted in %d minutes", admitted, minutes)
	}
	cached := map[string]bool{}
	for _, b := range e.cache.Snapshot(now) {
		cached[b.Name] = true
	}
	use := e.wildcards.Use(now)
	if len(cached) > profiles.DefaultMaxNames || len(use) != 1 || use[0].Names > profiles.DefaultMaxNames {
		t.Errorf("%d names cached, wildcard use %+v; cap %d", len(cached), use, profiles.DefaultMaxNames)
	}
	e.mu.Lock()
	refusals, installed := len(e.refusals), len(e.installed)
	e.mu.Unlock()
	if refusals > refusalsKept || installed > 2*256 {
		t.Errorf("%d refusals kept (cap %d), %d set entries recorded for 256 addresses (in both sets)", refusals, refusalsKept, installed)
	}
	if maxLines := (int(span/time.Minute) + 1) * auditPerMinute; lines > maxLines {
		t.Errorf("%d audit lines, budget %d", lines, maxLines)
	}
}

// The snapshot says how full each wildcard is, for status.
func TestTheSnapshotShowsEachWildcardsUse(t *testing.T) {
	now := time.Unix(10000, 0)
	e := testEgress(t, &recordingNet{}, &now)
	for _, name := range []string{"a.cdn.example.com", "b.cdn.example.com", "api.example.com"} {
		if _, ok := e.Forward(name); !ok {
			t.Fatal(name)
		}
	}
	e.publish(53)
	snap, err := Read(e.snapPath)
	if err != nil {
		t.Fatal(err)
	}
	want := allowlist.WildcardUse{Host: "*.cdn.example.com", Names: 2, MaxNames: profiles.DefaultMaxNames, NewNamesPerMinute: profiles.DefaultNewNamesPerMinute}
	if len(snap.Wildcards) != 1 || snap.Wildcards[0] != want {
		t.Fatalf("wildcards %+v, want %+v", snap.Wildcards, want)
	}
}

// An address two names share, one behind the name gate on 443 and one that
// opted out: each answer writes the entry as its own name asks, and the
// gated one is written even while the plain one covers the address, so
// the address is checked by name as long as the gated name maps there.
func TestASharedAddressIsBehindTheNameGateWhileAnyNameThereAsks(t *testing.T) {
	no := false
	plain := enforcetest.Allow("plain.example.com", 443)
	plain.TLS = &no
	n := &recordingNet{}
	now := time.Unix(10000, 0)
	e := testEgress(t, n, &now, plain)
	a := netip.MustParseAddr("198.51.100.10")
	for _, name := range []string{"plain.example.com", "api.example.com", "plain.example.com"} {
		if _, err := e.Admit(context.Background(), name, []netip.Addr{a}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, w := range n.writes {
		for _, en := range w {
			got = append(got, fmt.Sprintf("%s:%d tls=%v", en.Addr, en.Port, en.TLS))
		}
	}
	want := []string{"198.51.100.10:443 tls=false", "198.51.100.10:443 tls=true"}
	if !slices.Equal(got, want) {
		t.Errorf("writes %v, want %v", got, want)
	}
}

// A name checked by address holds an address for an hour; a name behind
// the gate answers with it for a minute. The gate's entry is the minute's,
// and the main set's stays the hour's: neither answer shortens the other's.
func TestANameBehindTheGateNeverShortensAnotherNamesEntry(t *testing.T) {
	no := false
	plain := enforcetest.Allow("plain.example.com", 443)
	plain.TLS = &no
	k := &kernelSet{timeout: map[installedKey]time.Duration{}}
	now := time.Unix(10000, 0)
	e := testEgress(t, k, &now, plain)
	a := netip.MustParseAddr("198.51.100.10")
	port := allowlist.Port{Proto: allowlist.TCP, Num: 443}
	for _, answer := range []struct {
		name string
		ttl  time.Duration
	}{{"plain.example.com", time.Hour}, {"api.example.com", time.Minute}} {
		if _, err := e.Admit(context.Background(), answer.name, []netip.Addr{a}, answer.ttl); err != nil {
			t.Fatal(err)
		}
	}
	if got := k.timeout[installedKey{a, port, false}]; got < time.Hour {
		t.Errorf("the main set holds the address for %s, shortened from the hour the name checked by address was given", got)
	}
	if got := k.timeout[installedKey{a, port, true}]; got <= 0 || got > 2*time.Minute {
		t.Errorf("the gate's set holds the address for %s, want the gated name's minute and grace", got)
	}
}

// A flood of refused queries spends the audit budget; the broker's alarms
// have their own, so a leak attempt after it is still written, and a flood
// of alarms is bounded in turn.
func TestAnAlarmIsWrittenWhateverFloodCameBefore(t *testing.T) {
	now := time.Unix(10000, 0)
	e := testEgress(t, &recordingNet{}, &now)
	var kinds []string
	e.audit = func(ev audit.Event) { kinds = append(kinds, ev.Kind) }
	for range 10 * auditPerMinute {
		e.Refused("x.evil.example", "A", "not allowlisted")
	}
	if !e.Alarm(audit.Event{Kind: "credential_leak_attempt"}) || kinds[len(kinds)-1] != "credential_leak_attempt" {
		t.Fatalf("the alarm after a flood was not written: %d lines, the last %q", len(kinds), kinds[len(kinds)-1])
	}
	written := 0
	for range 10 * alarmsPerMinute {
		if e.Alarm(audit.Event{Kind: "credential_refused"}) {
			written++
		}
	}
	if written >= alarmsPerMinute*2 {
		t.Errorf("%d alarms written in a minute, over the budget of %d", written, alarmsPerMinute)
	}
}
