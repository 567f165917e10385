package enforce

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/netrules/allowlist"
	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime"
	"github.com/clawguard/clawguard/seccomp"
	"github.com/clawguard/clawguard/verify"

	"github.com/clawguard/clawguard/enforce/audit"
	"github.com/clawguard/clawguard/enforce/egress"
)

// VerifyOptions tune a verification.
type VerifyOptions struct {
	// BlockedProbes are HOST:PORT destinations outside the allowlist that
	// must not answer the sandbox. Without them the DNS upstreams are used.
	BlockedProbes []string
	// Timeout bounds each connection attempt; blocked attempts take this long.
	Timeout time.Duration
}

// Verification is the outcome of Verify.
type Verification struct {
	Sandbox string          `json:"sandbox"`
	Results []verify.Result `json:"results"`
	Passed  bool            `json:"passed"`
	Took    time.Duration   `json:"took_ns"`
}

// metadataAddr is the cloud instance-metadata service every major cloud
// serves on the link-local range.
const metadataAddr = "169.254.169.254:80"

// Verify proves, from inside the running sandbox and from the host, that
// every control of its profile is in force. It changes nothing in the
// sandbox; the probe it runs is the one mounted at start.
func (s *Supervisor) Verify(ctx context.Context, name string, o VerifyOptions) (*Verification, error) {
	began := time.Now()
	if o.Timeout <= 0 {
		o.Timeout = 1500 * time.Millisecond
	}
	st, err := s.layout.read(name)
	if err != nil {
		return nil, err
	}
	if st.Spec == nil {
		return nil, fmt.Errorf("verify %s: it was started by an older clawguard that did not record its profile; restart it", name)
	}
	if !st.Probe {
		return nil, fmt.Errorf("verify %s: it was started without the verify probe (%s); install it with `make install` and restart the sandbox", name, s.cfg.ProbePath)
	}
	info, err := s.rt.Inspect(ctx, name)
	if err != nil {
		return nil, err
	}
	if info.State != "running" {
		return nil, fmt.Errorf("verify %s: the sandbox is %s, not running", name, orUnknown(info.State))
	}
	p := st.Spec
	expect, err := expectFor(p, st)
	if err != nil {
		return nil, err
	}
	ln, err := openHostListener(st.Gateway)
	if err != nil {
		s.cfg.Log.Warn("no host listener for the host-ports check", "error", err)
	} else {
		defer ln.Close()
	}
	policy := egress.Policy(p)
	plan, silent, err := s.planFor(p, policy, st, o, ln)
	if err != nil {
		return nil, err
	}
	report, err := s.runProbe(ctx, name, plan, o.Timeout)
	if err != nil {
		return nil, err
	}
	host := s.hostFacts(ctx, name, st, policy, info.Pid, ln)
	host.Silent = silent
	host.OtherServed = s.otherServed(name, report.Names, o.Timeout)
	results := verify.Judge(expect, report, host)
	v := &Verification{Sandbox: name, Results: results, Passed: !verify.Failed(results), Took: time.Since(began)}
	s.audit.Write(name, audit.Event{Kind: "verified", Reason: fmt.Sprintf("%d checks, passed %v", len(results), v.Passed)})
	return v, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "not started"
	}
	return s
}

// expectFor turns the recorded profile into what the sandbox must show.
func expectFor(p *profiles.Profile, st *State) (verify.Expect, error) {
	uid, gid, err := p.IDs()
	if err != nil {
		return verify.Expect{}, err
	}
	sc, _, err := seccompProfile(p, st.Seccomp)
	if err != nil {
		return verify.Expect{}, err
	}
	e := verify.Expect{
		UID: uid, GID: gid, ReadOnlyRoot: *p.ReadOnlyRootfs, Secrets: st.Secrets,
		MemoryBytes: st.Memory, CPUs: st.CPUs, Pids: st.Pids, Publish: st.Publish,
		Syscall: func(call string) (string, bool) { return seccomp.Answer(sc, call) },
		Agent:   p.Agent,
	}
	for _, c := range p.Capabilities {
		e.Capabilities = append(e.Capabilities, profiles.NormalizeCapability(c))
	}
	for _, m := range p.Mounts {
		if m.Writable() {
			e.Writable = append(e.Writable, m.Target)
		}
	}
	for _, v := range p.Volumes {
		e.Writable = append(e.Writable, v.Target)
		e.Volumes = append(e.Volumes, verify.Volume{Path: v.Target, SizeBytes: v.Size.Bytes})
	}
	for _, t := range p.Tmpfs {
		e.Tmpfs = append(e.Tmpfs, verify.Tmpfs{Path: t.Path, SizeBytes: t.Size.Bytes})
	}
	for _, port := range tlsPorts(p.Egress) {
		e.TLSPorts = append(e.TLSPorts, int(port))
	}
	e.ByAddress = byAddress(p.Egress)
	for _, c := range p.Credentials {
		e.BoundHosts = append(e.BoundHosts, c.Presentation().Hosts...)
	}
	if p.Agent == profiles.AgentOpenClaw {
		allowed, err := profiles.AllowedCommands(p)
		if err != nil {
			return verify.Expect{}, err
		}
		e.AgentConfig = verify.AgentConfig{ConfigPath: profiles.OpenClawConfigPath, ApprovalsPath: profiles.OpenClawApprovalsPath, Allowed: allowed}
	}
	return e, nil
}

// foreignKey is what the credentials check presents to each bound host:
// a credential the sandbox was not given, which the broker must refuse
// before it reaches the host.
const foreignKey = "clawguard-verify-not-a-key"

// foreignProbes are the credentials check's requests: one per bound host,
// on its first port behind the name gate, with the foreign key in its
// binding's header.
func foreignProbes(p *profiles.Profile) []verify.ForeignProbe {
	var out []verify.ForeignProbe
	for _, c := range p.Credentials {
		pres := c.Presentation()
		for _, h := range pres.Hosts {
			url := "https://" + h + "/"
			for _, a := range p.Egress.Allow {
				if ports := a.TLSPorts(); strings.EqualFold(strings.TrimSuffix(a.Host, "."), h) && len(ports) > 0 && ports[0] != 443 {
					url = fmt.Sprintf("https://%s:%d/", h, ports[0])
				}
			}
			out = append(out, verify.ForeignProbe{URL: url, Header: pres.Header, Value: pres.Scheme + foreignKey})
		}
	}
	return out
}

// otherName is what the name-gate check names where it must be refused: a
// name under .invalid, which no server can have been configured for.
const otherName = "clawguard-verify.invalid"

// nameProbes are the name gate's probes: each exact name on a TLS port, on
// the first of them. A wildcard names no host to try.
func nameProbes(e profiles.Egress) []verify.NameProbe {
	var out []verify.NameProbe
	for _, a := range e.Allow {
		if ports := a.TLSPorts(); len(ports) > 0 && a.Host != "" && !a.Wildcard() {
			out = append(out, verify.NameProbe{Name: a.Host, Port: ports[0], Other: otherName})
		}
	}
	return out
}

// otherServed is the control of the name-gate check: whether each probed
// destination, asked by the host itself, serves the other name too. A
// destination that refuses it anyway makes the gate's refusal prove
// nothing.
//
// The addresses come from the probe, inside the sandbox, so the host dials
// only those the sandbox's own set holds on that port, for the names the
// plan asked about: a forged report must not aim the host at its own
// services or the metadata address.
func (s *Supervisor) otherServed(sandbox string, names []verify.NameResult, timeout time.Duration) map[string]string {
	members, _ := s.net.Members(sandbox)
	inSet := func(addr string, port int) bool {
		return slices.ContainsFunc(members, func(m netrules.SetMember) bool {
			return m.Addr.String() == addr && int(m.Port) == port && m.Proto == "tcp"
		})
	}
	out := map[string]string{}
	for _, n := range names {
		if n.Addr == "" || len(out) >= 64 || !inSet(n.Addr, n.Port) {
			continue
		}
		at := net.JoinHostPort(n.Addr, strconv.Itoa(n.Port))
		out[at] = hostTLS(at, n.Other, 2*timeout)
	}
	return out
}

// hostTLS makes a TLS handshake from the host naming serverName: "" when
// it completed. The certificate is not checked: the control asks only
// whether the destination serves the name at all.
func hostTLS(addr, serverName string, timeout time.Duration) string {
	raw, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err.Error()
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(timeout))
	c := tls.Client(raw, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}) //nolint:gosec // see above
	if err := c.Handshake(); err != nil {
		return err.Error()
	}
	return ""
}

// hostListener accepts and drops connections on every host address, so the
// sandbox has a real open port to (fail to) reach.
type hostListener struct {
	net.Listener
	port int
}

func openHostListener(gw netip.Addr) (*hostListener, error) {
	ln, err := net.Listen("tcp4", ":0")
	if err != nil {
		return nil, fmt.Errorf("open a host listener: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	h := &hostListener{Listener: ln, port: ln.Addr().(*net.TCPAddr).Port}
	// The control: the host itself reaches the port on the gateway address.
	c, err := net.DialTimeout("tcp", net.JoinHostPort(gw.String(), strconv.Itoa(h.port)), time.Second)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("the host cannot reach its own listener on %s: %w", gw, err)
	}
	c.Close()
	return h, nil
}

// planFor decides what the probe tries. silent maps each destination that
// must be blocked but does not answer the host either to the host's error:
// its silence in the sandbox proves nothing.
func (s *Supervisor) planFor(p *profiles.Profile, policy *allowlist.Policy, st *State, o VerifyOptions, ln *hostListener) (verify.Plan, map[string]string, error) {
	plan := verify.Plan{TimeoutMillis: int(o.Timeout / time.Millisecond), Names: nameProbes(p.Egress), Foreign: foreignProbes(p)}
	for _, m := range p.Mounts {
		if m.Writable() {
			plan.Writable = append(plan.Writable, m.Target)
		}
	}
	for _, v := range p.Volumes {
		plan.Writable = append(plan.Writable, v.Target)
	}
	var upstreams []string
	for _, u := range s.cfg.DNSUpstreams {
		ap, err := netip.ParseAddrPort(u) // the CLI normalised them to IP:PORT
		if err != nil {
			continue
		}
		if ap.Addr().IsLoopback() || policy.ExplicitlyAllowed(ap.Addr()) {
			continue
		}
		upstreams = append(upstreams, ap.String())
	}
	plan.DirectDNS = upstreams

	blocked := o.BlockedProbes
	if len(blocked) == 0 {
		blocked = append(blocked, upstreams...)
	}
	silent := map[string]string{}
	for _, b := range blocked {
		ap, err := netip.ParseAddrPort(b)
		if err != nil {
			return plan, nil, fmt.Errorf("--blocked-probe %q: want IP:PORT (%v)", b, err)
		}
		if policy.ExplicitlyAllowed(ap.Addr()) {
			return plan, nil, fmt.Errorf("--blocked-probe %s: the profile's allowlist allows that address; pick one outside it", b)
		}
		check := "egress-blocked"
		if _, private := allowlist.Blocked(ap.Addr()); private {
			check = "private-ranges"
		}
		plan.Dials = append(plan.Dials, verify.Dial{Check: check, Network: "tcp", Addr: ap.String()})
		if err := hostDial(ap.String(), o.Timeout); err != "" {
			silent[ap.String()] = err
		}
	}
	plan.Dials = append(plan.Dials, verify.Dial{Check: "metadata", Network: "tcp", Addr: metadataAddr})
	if ln != nil {
		addrs := []netip.Addr{st.Gateway}
		addrs = append(addrs, hostAddrs(st.Gateway)...)
		for _, a := range addrs {
			plan.Dials = append(plan.Dials, verify.Dial{Check: "host-ports", Network: "tcp", Addr: net.JoinHostPort(a.String(), strconv.Itoa(ln.port))})
		}
	}
	others, err := s.otherSandboxes(st.Name)
	if err != nil {
		return plan, nil, err
	}
	for _, a := range others {
		// Any port will do: a reset proves the packet arrived.
		plan.Dials = append(plan.Dials, verify.Dial{Check: "other-sandboxes", Network: "tcp", Addr: net.JoinHostPort(a.String(), "1")})
	}
	for _, a := range p.Egress.Allow {
		// The probe reaches with TCP: a UDP-only entry has nothing to
		// connect to.
		if a.Host == "" || strings.HasPrefix(a.Host, "*.") || !slices.Contains(a.Protos(), "tcp") {
			continue
		}
		plan.Reach = append(plan.Reach, verify.Reach{Name: a.Host, Ports: a.Ports})
	}
	plan.DeniedName = "clawguard-verify-denied.invalid"
	if _, ok := policy.Ports(plan.DeniedName); ok {
		plan.DeniedName = "clawguard-verify-denied.example.net"
	}
	if p.Agent == profiles.AgentOpenClaw {
		plan.Files = []string{profiles.OpenClawConfigPath, profiles.OpenClawApprovalsPath}
	}
	return plan, silent, nil
}

func hostDial(addr string, timeout time.Duration) string {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err == nil {
		c.Close()
		return ""
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno == syscall.ECONNREFUSED {
		return ""
	}
	return err.Error()
}

// hostAddrs are the host's own IPv4 addresses other than loopback and the
// gateway.
func hostAddrs(gw netip.Addr) []netip.Addr {
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range ifs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ad := pfx.Addr()
		if ad.Is4() && !ad.IsLoopback() && ad != gw && !ad.IsLinkLocalUnicast() {
			out = append(out, ad)
		}
	}
	return out
}

// otherSandboxes are the addresses of every other running sandbox.
func (s *Supervisor) otherSandboxes(name string) ([]netip.Addr, error) {
	names, err := s.layout.names()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, n := range names {
		o, err := s.layout.read(n)
		if err == nil && n != name && o.Status == "running" && o.IP.IsValid() {
			out = append(out, o.IP)
		}
	}
	return out, nil
}

// runProbe runs the mounted probe as the sandbox's own process.
func (s *Supervisor) runProbe(ctx context.Context, name string, plan verify.Plan, timeout time.Duration) (verify.Report, error) {
	b, err := json.Marshal(plan)
	if err != nil {
		return verify.Report{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second+10*timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	code, err := s.rt.Exec(ctx, name, []string{verify.ProbePath, "verify", string(b)}, runtime.ExecOptions{Stdout: &out, Stderr: &errOut})
	if err != nil {
		return verify.Report{}, fmt.Errorf("run the verify probe in %s: %w", name, err)
	}
	if code != 0 {
		return verify.Report{}, fmt.Errorf("the verify probe in %s exited %d: %s", name, code, strings.TrimSpace(errOut.String()))
	}
	var r verify.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return verify.Report{}, fmt.Errorf("read the verify probe's report: %w", err)
	}
	return r, nil
}
