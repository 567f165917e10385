package enforce

import (
	"context"
	"fmt"
	"os"

	"github.com/clawguard/clawguard/profiles"

	"github.com/clawguard/clawguard/enforce/audit"
)

// Adopt takes over a running sandbox that this process did not start (after
// a supervisor or daemon restart). Its DNS gate listens again on the port
// the sandbox's redirect rule already points at, its rules and set are
// ensured (nothing changes if they are intact: no duplicate rule, ever), its
// names are resolved again, and the returned Started reports the task's exit.
func (s *Supervisor) Adopt(ctx context.Context, name string) (_ *Started, retErr error) {
	st, err := s.layout.read(name)
	if err != nil {
		return nil, fmt.Errorf("adopt %s: %w", name, err)
	}
	info, err := s.rt.Inspect(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("adopt %s: %w", name, err)
	}
	if info.State != "running" {
		return nil, fmt.Errorf("adopt %s: its task is %q, not running", name, info.State)
	}
	// The wait outlives ctx, which ends when the daemon does: a cancelled
	// wait reports an "exit" that would tear a running sandbox down.
	exitC, err := s.rt.Wait(context.WithoutCancel(ctx), name)
	if err != nil {
		return nil, fmt.Errorf("adopt %s: %w", name, err)
	}
	p := &profiles.Profile{Name: name, Egress: st.Egress}
	if p.Egress.LogDenied == nil {
		t := true
		p.Egress.LogDenied = &t
	}
	g, err := s.openGate(ctx, p, st.DNSPort)
	if err != nil {
		return nil, fmt.Errorf("adopt %s: %w (is another clawguard supervising it?)", name, err)
	}
	defer func() {
		if retErr != nil {
			g.stop()
		}
	}()
	static, err := g.eg.StaticEntries()
	if err != nil {
		return nil, err
	}
	// The rules it was started with, as the guard also rebuilds them.
	att, err := s.net.Attach(netSandboxOf(st, g.port), static)
	if err != nil {
		return nil, fmt.Errorf("adopt %s: %w", name, err)
	}
	if *p.Egress.LogDenied {
		s.reportDenied(g, name, att)
	}
	var creds *credentials
	onTripwire := ""
	if st.Spec != nil && len(st.Spec.Credentials) > 0 {
		onTripwire = st.Spec.OnTripwire
		// Without its broker a bound host is name-checked and spliced:
		// it gets the placeholder and refuses it. Nothing leaks; the
		// agent's calls fail until the sandbox is started again.
		if creds, err = s.adoptCredentials(st); err != nil {
			s.cfg.Log.Warn("adopted without its credentials: requests to its bound hosts will be refused there", "sandbox", name, "error", err)
			s.audit.Write(name, audit.Event{Kind: "credentials_unbound", Reason: err.Error()})
		}
	}
	if err := s.openNameGate(g, netSandboxOf(st, g.port), att.NetNSPath, creds, onTripwire); err != nil {
		return nil, fmt.Errorf("adopt %s: %w", name, err)
	}
	if err := g.publish(name, st.Publish, st.IP, s.cfg.Sockets, s.cfg.Log); err != nil {
		return nil, fmt.Errorf("adopt %s: %w", name, err)
	}
	first := g.eg.ResolveAll(ctx, g.proxy)
	g.background(func(ctx context.Context) { g.eg.Run(ctx, g.proxy, first, g.port) })
	st.Supervisor, st.DNSPort = os.Getpid(), g.port
	if err := s.layout.write(st); err != nil {
		return nil, err
	}
	s.audit.Write(name, audit.Event{Kind: "adopted", Reason: fmt.Sprintf("pid %d", info.Pid)})
	return &Started{Name: name, Pid: info.Pid, IP: st.IP, Exit: exitC, LogPath: st.LogPath, stop: g.stop, egress: g.eg}, nil
}
