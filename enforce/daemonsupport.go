package enforce

import (
	"github.com/clawguard/clawguard/enforce/audit"
)

// What the daemon (enforce/daemon) needs of a supervisor beyond starting,
// stopping and inspecting sandboxes: its lock, its audit log and the
// numbers its metrics report.

// LockDaemon takes the state directory's daemon lock for as long as the
// daemon runs (see layout.daemonLock); ErrDaemonRunning if another holds it.
func (s *Supervisor) LockDaemon() (release func(), err error) { return s.layout.daemonLock() }

// Audit appends an event about a sandbox to the audit log.
func (s *Supervisor) Audit(name, kind, reason string) {
	s.audit.Write(name, audit.Event{Kind: kind, Reason: reason})
}

// Numbers are a running sandbox's counters, for metrics.
type Numbers struct {
	Accepted, Denied                    uint64
	SetSize                             int
	DNSAnswered, DNSRefused, RefreshErr uint64
	// TLSPassed and TLSRefusedBy count the name gate's connections, the
	// refused by kind (namegate.Reason).
	TLSPassed    uint64
	TLSRefusedBy map[string]uint64
	// HaveRules and HaveEgress say which of the above could be read.
	HaveRules, HaveSet, HaveEgress bool
}

// Numbers reads the counters of st's rules, set and DNS gate.
func (s *Supervisor) Numbers(st *Started) Numbers {
	var n Numbers
	if c, err := s.net.Counters(st.Name); err == nil {
		n.Accepted, n.Denied, n.HaveRules = c.Accepted, c.Denied, true
	}
	if members, err := s.net.Members(st.Name); err == nil {
		n.SetSize, n.HaveSet = len(members), true
	}
	if e := st.egress; e != nil {
		n.DNSAnswered, n.DNSRefused, n.RefreshErr = e.Counts()
		n.TLSPassed, _, n.TLSRefusedBy = e.TLSNames().Counts()
		n.HaveEgress = true
	}
	return n
}
