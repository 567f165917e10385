package enforce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/netrules/allowlist"
	"github.com/clawguard/clawguard/runtime"
	"github.com/clawguard/clawguard/runtime/logfile"

	"github.com/clawguard/clawguard/enforce/egress"
)

// Status is one sandbox as `clawguard status` shows it. The JSON form is
// stable: fields are added, never renamed.
type Status struct {
	Name          string    `json:"name"`
	State         string    `json:"state"`
	Image         string    `json:"image"`
	Pid           uint32    `json:"pid,omitempty"`
	Profile       string    `json:"profile,omitempty"`
	User          string    `json:"user,omitempty"` // UID:GID the agent runs as
	OwnerUID      uint32    `json:"owner_uid"`      // who asked for it: 0 is root
	StartedAt     time.Time `json:"started_at,omitzero"`
	UptimeSeconds float64   `json:"uptime_seconds,omitempty"`
	Network       string    `json:"network"`
	MemoryBytes   int64     `json:"memory_limit_bytes,omitempty"`
	CPUs          float64   `json:"cpus,omitempty"`
	Pids          int64     `json:"pids_limit,omitempty"`
	Secrets       []string  `json:"secrets,omitempty"`
	LogPath       string    `json:"log_path,omitempty"`
	Problem       string    `json:"problem,omitempty"`

	IP             string                 `json:"ip,omitempty"`
	Published      []string               `json:"published,omitempty"`
	Allowlist      []AllowStatus          `json:"allowlist"`
	Packets        *netrules.Counters     `json:"packets,omitempty"`
	DeniedPackets  []egress.DeniedPacket  `json:"denied_packets"`
	RefusedQueries []egress.Refusal       `json:"refused_queries"`
	DroppedAnswers []egress.DroppedAnswer `json:"dropped_answers"`
	// NameGate is what the name gate decided, when the sandbox has TLS
	// ports.
	NameGate *NameGateStatus `json:"name_gate,omitempty"`
	// With rules requested: the live rules and set members.
	Rules      []string             `json:"rules,omitempty"`
	SetMembers []netrules.SetMember `json:"set_members,omitempty"`
}

// NameGateStatus counts the TLS connections the name gate passed and
// refused, with the last refusals. Passed counts the decisions to let a
// connection through; the dial to its destination may still fail, and is
// then in the log, not here.
type NameGateStatus struct {
	Ports   []uint16 `json:"ports"`
	Passed  uint64   `json:"passed"`
	Refused uint64   `json:"refused"`
	// RefusedBy counts the refused by kind (no_name, not_allowlisted,
	// not_resolved, expired, not_tls, ...).
	RefusedBy map[string]uint64   `json:"refused_by"`
	Refusals  []egress.TLSRefusal `json:"refusals"`
	// ByAddress are the entries' HOST:PORT that opted out of the gate
	// (tls: false): checked by address only.
	ByAddress []string `json:"by_address,omitempty"`
}

// AllowStatus is one allowlist entry and the addresses it opens right now.
type AllowStatus struct {
	Host      string          `json:"host,omitempty"`
	CIDR      string          `json:"cidr,omitempty"`
	Ports     []int           `json:"ports"`
	Protocols []string        `json:"protocols"` // tcp unless the entry says
	Addresses []AddressStatus `json:"addresses"`
	// Wildcard is set on a "*.suffix" entry: how many names it holds and
	// what bounds them.
	Wildcard *WildcardStatus `json:"wildcard,omitempty"`
}

// WildcardStatus is how full a wildcard entry is: the names live under it
// now (each one asked of the zone's nameservers), and its bounds.
type WildcardStatus struct {
	Names             int `json:"names"`
	MaxNames          int `json:"max_names"`
	NewNamesPerMinute int `json:"new_names_per_minute"`
}

// AddressStatus is one address an entry opens, for how long, and why.
type AddressStatus struct {
	Name             string     `json:"name"`
	Address          netip.Addr `json:"address"`
	ExpiresInSeconds int64      `json:"expires_in_seconds"`
	Source           string     `json:"source"`
}

// Status reports one sandbox (name != "") or all of them, merging what the
// state directory remembers with what containerd has, so that leftovers of
// either kind are shown rather than hidden.
func (s *Supervisor) Status(ctx context.Context, name string, now time.Time, withRules bool) ([]Status, error) {
	infos := map[string]runtime.Info{}
	list, err := s.rt.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, i := range list {
		infos[i.Name] = i
	}
	names, err := s.layout.names()
	if err != nil {
		return nil, fmt.Errorf("read state directory: %w", err)
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	for n := range infos {
		if !seen[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []Status
	for _, n := range names {
		if name != "" && n != name {
			continue
		}
		st := s.status(n, infos, now)
		s.egressStatus(&st, now, withRules)
		out = append(out, st)
	}
	if name != "" && len(out) == 0 {
		return nil, fmt.Errorf("status %s: %w", name, runtime.ErrNotFound)
	}
	return out, nil
}

func (s *Supervisor) status(name string, infos map[string]runtime.Info, now time.Time) Status {
	st := Status{Name: name, Network: "-", Allowlist: []AllowStatus{}, DeniedPackets: []egress.DeniedPacket{},
		RefusedQueries: []egress.Refusal{}, DroppedAnswers: []egress.DroppedAnswer{}}
	info, hasContainer := infos[name]
	state, err := s.layout.read(name)
	switch {
	case err == nil:
		st.Image, st.Profile, st.StartedAt = state.Image, state.Profile, state.StartedAt
		st.MemoryBytes, st.CPUs, st.Pids = state.Memory, state.CPUs, state.Pids
		st.Secrets, st.LogPath = state.Secrets, state.LogPath
		st.OwnerUID = state.Owner
		if state.Spec != nil {
			st.User = state.Spec.User
		}
		st.Published = state.Publish
		if state.IP.IsValid() {
			st.IP, st.Network = state.IP.String(), state.IP.String()+" via "+state.Gateway.String()
		}
		if ports, plain := tlsPorts(state.Egress), byAddress(state.Egress); len(ports) > 0 || len(plain) > 0 {
			st.NameGate = &NameGateStatus{Ports: ports, RefusedBy: map[string]uint64{}, Refusals: []egress.TLSRefusal{}, ByAddress: plain}
		}
		for _, a := range state.Egress.Allow {
			as := AllowStatus{Host: a.Host, CIDR: a.CIDR, Ports: a.Ports, Protocols: a.Protos(), Addresses: []AddressStatus{}}
			if a.Wildcard() {
				as.Wildcard = &WildcardStatus{}
				as.Wildcard.MaxNames, as.Wildcard.NewNamesPerMinute = a.NameBound()
			}
			st.Allowlist = append(st.Allowlist, as)
		}
	case errors.Is(err, os.ErrNotExist):
		if hasContainer {
			st.Problem = "container labelled as a clawguard sandbox but unknown to this state directory"
		}
	default:
		st.Problem = err.Error()
	}
	switch {
	case hasContainer:
		st.Image, st.Pid = info.Image, info.Pid
		st.State = info.State
		if st.State == "" {
			st.State = "created"
		}
	case state != nil && state.Status == "starting":
		st.State = "starting"
	default:
		st.State = "missing"
		st.Problem = "state remains but the container is gone: run `clawguard stop " + name + "` to clean up"
	}
	if st.State == "running" && !st.StartedAt.IsZero() {
		st.UptimeSeconds = now.Sub(st.StartedAt).Seconds()
	}
	return st
}

// egressStatus fills in what the kernel and the sandbox's DNS gate report.
// The set is the truth for what is allowed and until when; the supervisor's
// snapshot says which name and which source each address came from.
func (s *Supervisor) egressStatus(st *Status, now time.Time, withRules bool) {
	if st.IP == "" {
		return
	}
	members, err := s.net.Members(st.Name)
	if err != nil {
		st.Problem = joinProblem(st.Problem, "allowlist set unreadable: "+err.Error())
	}
	left := map[netip.Addr]int64{}
	for _, m := range members {
		if m.Seconds > left[m.Addr] {
			left[m.Addr] = m.Seconds
		}
	}
	if c, err := s.net.Counters(st.Name); err == nil {
		st.Packets = &c
	} else {
		st.Problem = joinProblem(st.Problem, "sandbox chain unreadable: "+err.Error())
	}
	snap, err := egress.Read(s.layout.egressFile(st.Name))
	if err == nil {
		st.RefusedQueries, st.DroppedAnswers, st.DeniedPackets = snap.Refused, snap.Dropped, snap.Denied
		if g := st.NameGate; g != nil {
			g.Passed, g.Refused = snap.TLSPassed, snap.TLSRefusedCount
			g.Refusals = append(g.Refusals, snap.TLSRefused...)
			maps.Copy(g.RefusedBy, snap.TLSRefusedBy)
		}
		for i := range st.Allowlist {
			a := &st.Allowlist[i]
			for _, u := range snap.Wildcards {
				if a.Wildcard != nil && u.Host == "*."+allowlist.Canonical(strings.TrimPrefix(a.Host, "*.")) {
					a.Wildcard.Names = u.Names
				}
			}
			for _, b := range snap.Bindings {
				secs, live := left[b.Addr]
				if !live || !matchesEntry(a.Host, b.Name) {
					continue
				}
				a.Addresses = append(a.Addresses, AddressStatus{Name: b.Name, Address: b.Addr, ExpiresInSeconds: secs, Source: string(b.Source)})
			}
		}
		if st.State == "running" && now.Sub(snap.Updated) > 2*time.Minute {
			st.Problem = joinProblem(st.Problem, "the supervisor has not reported for "+now.Sub(snap.Updated).Round(time.Second).String()+"; its DNS gate may be down (names do not resolve; rules stay in force)")
		}
	}
	if withRules {
		st.SetMembers = members
		st.Rules, _ = s.net.Rules(st.Name)
	}
}

func matchesEntry(host, name string) bool {
	if host == "" {
		return false
	}
	host = allowlist.Canonical(host)
	if suffix, ok := strings.CutPrefix(host, "*"); ok {
		return strings.HasSuffix(name, suffix) && len(name) > len(suffix)
	}
	return host == name
}

func joinProblem(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// FollowLog copies a sandbox's log to w: with older, the rotated older
// files first (oldest first), then the current one. With follow it keeps
// reading until ctx ends or stop is closed (the sandbox exited), then drains
// what is left, going on to the new file whenever the log is rotated.
func FollowLog(ctx context.Context, path string, w io.Writer, older, follow bool, stop <-chan struct{}) error {
	if older {
		if err := logfile.CopyOlder(path, w); err != nil {
			return err
		}
	}
	return logfile.Follow(ctx, path, w, follow, 100*time.Millisecond, stop)
}
