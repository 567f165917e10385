package enforce

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clawguard/clawguard/enforce/audit"
	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/profiles"
)

// auditGap is the least time between two reports of the guard's repairs.
const auditGap = 10 * time.Second

// GuardPoll bounds how long a change to the host's rules can go unnoticed
// where the kernel does not announce it (legacy iptables); iptables-nft
// announces each one, and the guard answers within milliseconds.
const GuardPoll = time.Second

// GuardFirewall keeps clawguard's rules in force against the host's own
// tools until ctx ends: whenever the host's rules change (and every poll),
// it puts back the hooks at the top of FORWARD, INPUT, PREROUTING and
// POSTROUTING, the base rules, and every sandbox's rules, and records what
// it restored in the audit log. A firewall reload that flushes FORWARD
// (ufw, firewalld, netfilter-persistent) or a rule inserted above ours
// would otherwise leave every sandbox unfiltered until the next start.
func (s *Supervisor) GuardFirewall(ctx context.Context, poll time.Duration) {
	s.net.WatchRules(ctx, poll, s.reassert)
}

// netSandbox is what a sandbox's network rules are built from: the same at
// start, at adoption and at every repair of the guard, or the guard would
// rewrite them each time.
func netSandbox(name string, p *profiles.Profile, dnsPort int) netrules.Sandbox {
	sb := netrules.Sandbox{Name: name, DNSPort: dnsPort}
	if p != nil {
		sb.LogDenied = p.Egress.LogDenied != nil && *p.Egress.LogDenied
		if p.Resources.Connections != nil {
			sb.MaxConns = int(*p.Resources.Connections)
		}
		if p.Resources.NewConnectionsPerSecond != nil {
			sb.NewConns = int(*p.Resources.NewConnectionsPerSecond)
		}
		sb.Published = publishedPorts(p.Publish)
		sb.TLSPorts = tlsPorts(p.Egress)
	}
	return sb
}

// tlsPorts are the ports any entry puts behind the name gate, for every
// entry: the sandbox's set is one, so a port is checked by name for all of
// its destinations once one entry asks.
func tlsPorts(e profiles.Egress) []uint16 {
	var out []uint16
	for _, a := range e.Allow {
		for _, p := range a.TLSPorts() {
			out = append(out, uint16(p))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// byAddress are the entries' HOST:PORT that opted out of the name gate.
func byAddress(e profiles.Egress) []string {
	var out []string
	for _, a := range e.Allow {
		for _, p := range a.ByAddress() {
			out = append(out, net.JoinHostPort(a.Host, strconv.Itoa(p)))
		}
	}
	return out
}

// publishedPorts are the sandbox's ports of validated publish specs.
func publishedPorts(specs []string) []uint16 {
	var out []uint16
	for _, s := range specs {
		if p, err := profiles.ParsePublish(s); err == nil {
			out = append(out, uint16(p.ContainerPort))
		}
	}
	return out
}

// netSandboxOf is netSandbox for a sandbox known by its state, as adoption
// and the guard know it; a state from before specs were kept logs denials,
// as every profile does by default.
func netSandboxOf(st *State, dnsPort int) netrules.Sandbox {
	sb := netSandbox(st.Name, st.Spec, dnsPort)
	if st.Spec == nil {
		sb.LogDenied = st.Egress.LogDenied == nil || *st.Egress.LogDenied
	}
	sb.IP = st.IP
	sb.Published = publishedPorts(st.Publish)
	return sb
}

func (s *Supervisor) reassert() {
	names, err := s.layout.names()
	if err != nil {
		s.cfg.Log.Warn("firewall guard: read the state directory", "error", err)
		return
	}
	var sbs []netrules.Sandbox
	for _, n := range names {
		st, err := s.layout.read(n)
		if err != nil || !st.IP.IsValid() || st.DNSPort == 0 {
			continue // not attached yet, or being removed
		}
		sbs = append(sbs, netSandboxOf(st, st.DNSPort))
	}
	restored, err := s.net.Reassert(sbs)
	if err != nil {
		// What was put back before the error is reported below all the
		// same.
		s.cfg.Log.Warn("firewall guard: check the host's rules", "error", err)
	}
	if len(restored) == 0 {
		return
	}
	s.firewallRestores.Add(1)
	// A tool that keeps rewriting the firewall must not rewrite the audit
	// log too: one line per sandbox at most every auditGap, counting the
	// repairs in between.
	now := time.Now()
	s.guardMu.Lock()
	quiet := now.Sub(s.lastRestoreAudit) < auditGap
	skipped := s.restoresUnaudited
	if quiet {
		s.restoresUnaudited++
	} else {
		s.lastRestoreAudit, s.restoresUnaudited = now, 0
	}
	s.guardMu.Unlock()
	if quiet {
		return
	}
	s.cfg.Log.Warn("the host's firewall lost clawguard's rules (a reload, or a rule above ours); restored", "rules", len(restored), "repairs_since_last_report", skipped)
	reason := fmt.Sprintf("%d rules put back: %s", len(restored), strings.Join(restored, "; "))
	if skipped > 0 {
		reason += fmt.Sprintf(" (and %d repairs since the last report)", skipped)
	}
	for _, n := range names {
		s.audit.Write(n, audit.Event{Kind: "firewall-restored", Reason: reason})
	}
}

// FirewallRestores counts the times the guard found clawguard's rules
// changed by someone else and put them back.
func (s *Supervisor) FirewallRestores() uint64 { return s.firewallRestores.Load() }
