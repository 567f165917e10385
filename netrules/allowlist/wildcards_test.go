package allowlist

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// hold is how long a name let through counts before its answer, as the
// egress book passes it.
const hold = 10 * time.Second

// phase asks count distinct names prefix0.cdn.example.com, prefix1..., one
// every `every` from at (since the start); the ones let through are
// answered for answer (none: they count for hold only).
type phase struct {
	at, every   time.Duration
	count       int
	prefix      string
	answer      time.Duration
	wantThrough int
	wantReason  string // what every refusal of the phase says
}

func TestWildcardBounds(t *testing.T) {
	tests := []struct {
		name   string
		bound  NameBound
		phases []phase
	}{
		{"the cap holds under ten times max_names distinct names", NameBound{Max: 50, PerMinute: 10000}, []phase{
			{count: 500, prefix: "n", answer: time.Hour, wantThrough: 50, wantReason: "wildcard *.cdn.example.com holds 50 names (max_names)"},
		}},
		{"known names are still answered at the cap", NameBound{Max: 50, PerMinute: 10000}, []phase{
			{count: 50, prefix: "n", answer: time.Hour, wantThrough: 50},
			{count: 50, prefix: "x", answer: time.Hour, wantThrough: 0, wantReason: "(max_names)"},
			{at: time.Minute, count: 50, prefix: "n", answer: time.Hour, wantThrough: 50},
		}},
		{"the 121st new name within a minute is refused, and admitted once the minute has passed", NameBound{Max: 1000, PerMinute: 120}, []phase{
			{count: 120, prefix: "a", answer: time.Hour, wantThrough: 120},
			{at: 59 * time.Second, count: 1, prefix: "b", answer: time.Hour, wantReason: "wildcard *.cdn.example.com had 120 new names in the last minute (new_names_per_minute)"},
			{at: 59 * time.Second, count: 120, prefix: "a", answer: time.Hour, wantThrough: 120},
			{at: time.Minute, count: 120, prefix: "b", answer: time.Hour, wantThrough: 120},
			{at: time.Minute + time.Second, count: 1, prefix: "c", answer: time.Hour, wantReason: "(new_names_per_minute)"},
		}},
		{"the rate is a sliding minute: names spread over it leave no room at its end", NameBound{Max: 1000, PerMinute: 120}, []phase{
			{every: 490 * time.Millisecond, count: 121, prefix: "a", answer: time.Hour, wantThrough: 120, wantReason: "(new_names_per_minute)"},
			{at: 61 * time.Second, every: 490 * time.Millisecond, count: 3, prefix: "b", answer: time.Hour, wantThrough: 3},
		}},
		{"an expired name frees its room", NameBound{Max: 10, PerMinute: 10000}, []phase{
			{count: 10, prefix: "a", answer: 30 * time.Second, wantThrough: 10},
			{at: 29 * time.Second, count: 1, prefix: "b", answer: 30 * time.Second, wantReason: "(max_names)"},
			{at: 30 * time.Second, count: 10, prefix: "b", answer: 30 * time.Second, wantThrough: 10},
			{at: 30 * time.Second, count: 10, prefix: "a", answer: 30 * time.Second, wantReason: "(max_names)"},
		}},
		{"a name that got no answer holds its room only until the hold runs out", NameBound{Max: 10, PerMinute: 10000}, []phase{
			{count: 10, prefix: "a", wantThrough: 10},
			{at: hold - time.Second, count: 1, prefix: "b", wantReason: "(max_names)"},
			{at: hold, count: 10, prefix: "b", wantThrough: 10},
		}},
		{"no bound is unbounded", NameBound{}, []phase{
			{count: 5000, prefix: "a", answer: time.Hour, wantThrough: 5000},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWildcards(NewPolicy([]Rule{{Host: "*.cdn.example.com", Ports: tcp(443), Bound: tt.bound}}))
			t0 := time.Unix(100000, 0)
			for i, ph := range tt.phases {
				through := 0
				for n := range ph.count {
					now := t0.Add(ph.at + time.Duration(n)*ph.every)
					name := fmt.Sprintf("%s%d.cdn.example.com", ph.prefix, n)
					why := w.Forward(now, name, hold)
					if why != "" {
						if ph.wantReason == "" || !strings.Contains(why, ph.wantReason) {
							t.Fatalf("phase %d: %s refused with %q, want %q", i, name, why, ph.wantReason)
						}
						continue
					}
					through++
					if ph.answer > 0 {
						w.Keep(name, now.Add(ph.answer))
					}
				}
				if through != ph.wantThrough {
					t.Fatalf("phase %d: %d of %d names let through, want %d", i, through, ph.count, ph.wantThrough)
				}
			}
			// Memory: never more names than the cap, whatever was asked.
			for _, z := range w.zones {
				if tt.bound.Max > 0 && (len(z.live) > tt.bound.Max || len(z.ends) != len(z.live)) {
					t.Fatalf("%d live names, %d in the heap, cap %d", len(z.live), len(z.ends), tt.bound.Max)
				}
				if tt.bound.PerMinute > 0 && len(z.recent) > tt.bound.PerMinute {
					t.Fatalf("%d times kept for a rate of %d", len(z.recent), tt.bound.PerMinute)
				}
			}
		})
	}
}

// Exact entries were named one by one: they are never counted, even under
// a wildcard that is full. A name under two wildcards is counted under the
// more specific one only.
func TestOnlyWildcardNamesAreCountedAndEachUnderOneWildcard(t *testing.T) {
	w := NewWildcards(NewPolicy([]Rule{
		{Host: "api.example.com", Ports: tcp(443)},
		{Host: "www.cdn.example.com", Ports: tcp(443)},
		{Host: "*.example.com", Ports: tcp(443), Bound: NameBound{Max: 1, PerMinute: 100}},
		{Host: "*.cdn.example.com", Ports: tcp(443), Bound: NameBound{Max: 1, PerMinute: 100}},
	}))
	now := time.Unix(100000, 0)
	tests := []struct {
		name    string
		refused bool
	}{
		{"a.example.com", false},        // fills *.example.com
		{"b.example.com", true},         // over it
		{"API.example.com.", false},     // exact
		{"www.cdn.example.com", false},  // exact, under a wildcard too
		{"x.cdn.example.com", false},    // fills *.cdn.example.com, not *.example.com
		{"y.cdn.example.com", true},     // over *.cdn.example.com
		{"a.example.com.", false},       // known
		{"www.cdn.example.com.", false}, // still exact
		{"z.x.cdn.example.com", true},   // deeper, still *.cdn.example.com's
	}
	for _, tt := range tests {
		if why := w.Forward(now, tt.name, hold); (why != "") != tt.refused {
			t.Errorf("Forward(%q) = %q, want refused %v", tt.name, why, tt.refused)
		}
	}
	for _, u := range w.Use(now) {
		if u.Names != 1 {
			t.Errorf("%s holds %d names, want 1", u.Host, u.Names)
		}
	}
}

func TestAWildcardWrittenTwiceGetsTheTighterOfEachBound(t *testing.T) {
	w := NewWildcards(NewPolicy([]Rule{
		{Host: "*.example.com", Ports: tcp(443), Bound: NameBound{Max: 500, PerMinute: 10}},
		{Host: "*.Example.com.", Ports: tcp(80), Bound: NameBound{Max: 20, PerMinute: 60}},
	}))
	use := w.Use(time.Unix(0, 0))
	if len(use) != 1 || use[0] != (WildcardUse{Host: "*.example.com", MaxNames: 20, NewNamesPerMinute: 10}) {
		t.Fatalf("use %+v", use)
	}
}

// A name whose answer came after its hold ran out (a slow upstream) is in
// the cache, so it counts again from its answer on; an answer never
// shortens a name's time.
func TestKeepCountsALateAnswerAndNeverShortens(t *testing.T) {
	w := NewWildcards(NewPolicy([]Rule{{Host: "*.example.com", Ports: tcp(443), Bound: NameBound{Max: 1, PerMinute: 100}}}))
	t0 := time.Unix(100000, 0)
	if why := w.Forward(t0, "a.example.com", hold); why != "" {
		t.Fatal(why)
	}
	w.GC(t0.Add(hold))
	w.Keep("a.example.com", t0.Add(time.Hour))
	w.Keep("a.example.com", t0.Add(time.Minute))
	if why := w.Forward(t0.Add(30*time.Minute), "b.example.com", hold); !strings.Contains(why, "max_names") {
		t.Fatalf("b let through while a.example.com's answer is live: %q", why)
	}
	if why := w.Forward(t0.Add(time.Hour), "b.example.com", hold); why != "" {
		t.Fatalf("b refused after a.example.com expired: %q", why)
	}
}
