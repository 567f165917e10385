package allowlist

import (
	"container/heap"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// NameBound limits what one wildcard lets through: at most Max distinct
// names live under it at once, and at most PerMinute new ones in any
// minute. Every name asked under "*.example.com" reaches example.com's
// nameservers, so the bound is on that channel as much as on memory. A zero
// field is no bound: profiles always give both.
type NameBound struct {
	Max       int
	PerMinute int
}

// tighter is the stricter of two bounds, field by field.
func (b NameBound) tighter(o NameBound) NameBound {
	pick := func(x, y int) int {
		if x == 0 || (y != 0 && y < x) {
			return y
		}
		return x
	}
	return NameBound{Max: pick(b.Max, o.Max), PerMinute: pick(b.PerMinute, o.PerMinute)}
}

// Wildcards counts, per wildcard of a policy, the names it has let through
// and until when each stays live, and refuses a new name once the wildcard
// holds Max live names or has let PerMinute new ones through in the last
// minute. A name already live is never refused. Memory is at most Max names
// and PerMinute times per wildcard: refused names leave nothing behind.
type Wildcards struct {
	policy *Policy
	mu     sync.Mutex
	zones  map[string]*zone // by suffix: "example.com" for "*.example.com"
}

// zone is one wildcard's names.
type zone struct {
	bound NameBound
	live  map[string]*liveName
	ends  endHeap // the same names, the soonest to expire first
	// recent holds when the last PerMinute new names were let through, as
	// a ring whose oldest entry is at next once it is full.
	recent []time.Time
	next   int
}

type liveName struct {
	name  string
	until time.Time
	index int // in the zone's heap
}

// NewWildcards returns the counts, all empty, of policy's wildcards.
func NewWildcards(policy *Policy) *Wildcards {
	w := &Wildcards{policy: policy, zones: map[string]*zone{}}
	for suffix, b := range policy.bounds {
		w.zones[suffix] = &zone{bound: b, live: map[string]*liveName{}}
	}
	return w
}

// Forward decides at now whether a query for name may go upstream, and
// returns why not ("" when it may). A new name that is let through counts
// at once (towards the cap until now+hold, and towards the minute's new
// names): it has reached the zone's servers whatever the answer. Names
// under no wildcard are not counted.
func (w *Wildcards) Forward(now time.Time, name string, hold time.Duration) string {
	suffix, ok := w.policy.wildcardOf(name)
	if !ok {
		return ""
	}
	name = Canonical(name)
	w.mu.Lock()
	defer w.mu.Unlock()
	z := w.zones[suffix]
	z.expire(now)
	if z.live[name] != nil {
		return ""
	}
	// The reasons name the profile's fields: they are what to raise.
	if z.bound.Max > 0 && len(z.live) >= z.bound.Max {
		return fmt.Sprintf("wildcard *.%s holds %d names (max_names)", suffix, len(z.live))
	}
	if !z.takeNew(now) {
		return fmt.Sprintf("wildcard *.%s had %d new names in the last minute (new_names_per_minute)", suffix, z.bound.PerMinute)
	}
	z.keep(name, now.Add(hold))
	return ""
}

// Keep records that name stays live until until (its answer's TTL and
// grace); it never shortens. A name let through earlier whose hold ran
// out before its answer came is counted again: its answer is in the
// cache now.
func (w *Wildcards) Keep(name string, until time.Time) {
	suffix, ok := w.policy.wildcardOf(name)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.zones[suffix].keep(Canonical(name), until)
}

// GC forgets the names that expired before now.
func (w *Wildcards) GC(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, z := range w.zones {
		z.expire(now)
	}
}

// WildcardUse is how full one wildcard is.
type WildcardUse struct {
	Host              string `json:"host"` // "*.example.com"
	Names             int    `json:"names"`
	MaxNames          int    `json:"max_names,omitempty"`
	NewNamesPerMinute int    `json:"new_names_per_minute,omitempty"`
}

// Use reports each wildcard's live names at now, by host.
func (w *Wildcards) Use(now time.Time) []WildcardUse {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]WildcardUse, 0, len(w.zones))
	for suffix, z := range w.zones {
		z.expire(now)
		out = append(out, WildcardUse{Host: "*." + suffix, Names: len(z.live), MaxNames: z.bound.Max, NewNamesPerMinute: z.bound.PerMinute})
	}
	slices.SortFunc(out, func(a, b WildcardUse) int { return strings.Compare(a.Host, b.Host) })
	return out
}

// takeNew counts a new name at now if fewer than PerMinute were let
// through in the minute before: a sliding window, so no minute ever holds
// more, however the names are spread.
func (z *zone) takeNew(now time.Time) bool {
	n := z.bound.PerMinute
	switch {
	case n <= 0:
		return true
	case len(z.recent) < n:
		z.recent = append(z.recent, now)
		return true
	case now.Sub(z.recent[z.next]) < time.Minute:
		return false
	}
	z.recent[z.next] = now
	z.next = (z.next + 1) % n
	return true
}

func (z *zone) keep(name string, until time.Time) {
	if l := z.live[name]; l != nil {
		if until.After(l.until) {
			l.until = until
			heap.Fix(&z.ends, l.index)
		}
		return
	}
	l := &liveName{name: name, until: until}
	z.live[name] = l
	heap.Push(&z.ends, l)
}

// expire forgets the names whose time ran out at or before now: each costs
// one pop when it goes, however many queries arrive at the cap.
func (z *zone) expire(now time.Time) {
	for len(z.ends) > 0 && !z.ends[0].until.After(now) {
		l := heap.Pop(&z.ends).(*liveName)
		delete(z.live, l.name)
	}
}

// endHeap orders live names by expiry (container/heap).
type endHeap []*liveName

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h endHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *endHeap) Push(x any) {
	l := x.(*liveName)
	l.index = len(*h)
	*h = append(*h, l)
}
func (h *endHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return l
}
