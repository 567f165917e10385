// Package enforce ties profiles, the seccomp profile, host networking and the
// container runtime together per sandbox, in the right order, and undoes
// everything when a step fails or the sandbox stops.
package enforce

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/netrules/broker"
	"github.com/clawguard/clawguard/netrules/dnsproxy"
	"github.com/clawguard/clawguard/netrules/namegate"
	"github.com/clawguard/clawguard/netrules/nflog"
	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime"
	"github.com/clawguard/clawguard/runtime/logfile"
	"github.com/clawguard/clawguard/runtime/volume"
	"github.com/clawguard/clawguard/seccomp"
	"github.com/clawguard/clawguard/verify"

	"github.com/clawguard/clawguard/enforce/audit"
	"github.com/clawguard/clawguard/enforce/egress"
)

// Containers is the part of the container runtime the supervisor uses.
type Containers interface {
	EnsureImage(ctx context.Context, ref string, archive *os.File, progress runtime.Progress) (string, error)
	Create(ctx context.Context, s runtime.Sandbox) error
	Start(ctx context.Context, name string, log runtime.Log) (<-chan containerd.ExitStatus, uint32, error)
	Wait(ctx context.Context, name string) (<-chan containerd.ExitStatus, error)
	Stop(ctx context.Context, name string, timeout time.Duration) error
	Pause(ctx context.Context, name string) error
	Delete(ctx context.Context, name string) error
	Inspect(ctx context.Context, name string) (runtime.Info, error)
	List(ctx context.Context) ([]runtime.Info, error)
	Exec(ctx context.Context, name string, args []string, o runtime.ExecOptions) (int, error)
	Limits(ctx context.Context, name string) (runtime.Limits, error)
	Spec(ctx context.Context, name string) (*specs.Spec, error)
	SweepSnapshots(ctx context.Context) ([]string, error)
}

// Config is what a Supervisor needs besides its collaborators.
type Config struct {
	StateDir string
	// DNSUpstreams are the servers allowlisted names are resolved with.
	DNSUpstreams []string
	Log          *slog.Logger
	// ProbePath is the static verify probe on the host, mounted read-only
	// into every sandbox; sandboxes start without it if it is missing.
	ProbePath string
	// ExtraSpecOpts are applied after every control. Only test builds set
	// them, to weaken a sandbox on purpose and prove verify notices.
	ExtraSpecOpts []oci.SpecOpts
	// Step is told about each step of a start as it ends (err is nil when it
	// succeeded), for progress output.
	Step func(step string, took time.Duration, err error)
	// Sockets, if set, keeps published ports' listening sockets across
	// restarts of this process (the daemon under systemd).
	Sockets SocketStore
	// UpstreamCAs verify the hosts the broker forwards bound requests to;
	// nil is the host's trust store. Only tests set it, to trust the fake
	// internet's API.
	UpstreamCAs *x509.CertPool
	// NoBroker stages bound secrets as they are, with no broker at the
	// gate: only test builds set it, to prove verify notices.
	NoBroker bool
}

// SocketStore keeps listening sockets outside this process, so that a
// published port stays bound while the daemon restarts: otherwise any local
// user could bind it in between and take the operator's connections meant
// for the agent's gateway.
type SocketStore interface {
	// Take returns the socket stored under name, if any, and forgets it.
	Take(name string) *os.File
	// Keep stores a copy of f's socket under name.
	Keep(name string, f *os.File) error
	// Drop removes name from the store.
	Drop(name string)
}

// Network is the part of host networking the supervisor uses.
type Network interface {
	Attach(sb netrules.Sandbox, static []netrules.NetEntry) (netrules.Attachment, error)
	Detach(sandbox string) error
	Allow(sandbox string, entries []netrules.Entry) error
	Gateway() netip.Addr
	// Subnet is where the sandboxes' addresses come from.
	Subnet() netip.Prefix
	// For status: what the kernel enforces now.
	Members(sandbox string) ([]netrules.SetMember, error)
	Counters(sandbox string) (netrules.Counters, error)
	Rules(sandbox string) ([]string, error)
	// InnerMissing is what of the sandbox's second layer, in its own
	// namespace, is not as wanted (for verify).
	InnerMissing(sb netrules.Sandbox) ([]string, error)
	// Sweep removes kernel objects of sandboxes not in keep.
	Sweep(keep []string) ([]string, error)
	// Reassert puts back whatever of the host's rules and these
	// sandboxes' rules someone else removed or moved, and says what.
	Reassert(sbs []netrules.Sandbox) ([]string, error)
	// WatchRules calls check when the host's rules may have changed, and
	// every poll, until ctx ends.
	WatchRules(ctx context.Context, poll time.Duration, check func())
}

// Supervisor starts, stops and inspects sandboxes. The foreground `run` and
// the daemon use the same one.
type Supervisor struct {
	cfg   Config
	audit *audit.Log
	// gates are the DNS gates this process runs, by sandbox: Teardown stops
	// a sandbox's gate before it removes the directory the gate writes to.
	gatesMu sync.Mutex
	gates   map[string]func()
	rt      Containers
	net     Network
	layout  layout
	vols    volume.Store
	// firewallRestores counts the guard's repairs (GuardFirewall); the
	// last report's time and the repairs since are the guard's too.
	firewallRestores  atomic.Uint64
	guardMu           sync.Mutex
	lastRestoreAudit  time.Time
	restoresUnaudited int
}

// New returns a supervisor over the given collaborators.
func New(cfg Config, rt Containers, net Network) *Supervisor {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Step == nil {
		cfg.Step = func(string, time.Duration, error) {}
	}
	l := layout{root: cfg.StateDir}
	return &Supervisor{cfg: cfg, rt: rt, net: net, layout: l, vols: volume.New(l.volumes()), gates: map[string]func(){},
		audit: audit.New(cfg.StateDir, cfg.Log)}
}

// Policy is the mount-source policy for a host whose clawguard state lives
// in stateDir.
func Policy(stateDir string) profiles.SourcePolicy {
	return profiles.SourcePolicy{StateDir: stateDir, Homes: profiles.HostHomes()}
}

// Policy is the mount-source policy this supervisor applies.
func (s *Supervisor) Policy() profiles.SourcePolicy { return Policy(s.cfg.StateDir) }

// Validate checks a profile completely, touching nothing.
func (s *Supervisor) Validate(p *profiles.Profile) error {
	if err := profiles.Validate(p, s.Policy()); err != nil {
		return err
	}
	// The sandboxes' own subnet is this host's business: a cidr entry over
	// it would open the sandboxes to each other and the gateway's ports.
	// So are its own addresses: the host's INPUT rules keep the sandboxes
	// from its services, and while a firewall reload has them flushed, a
	// range that covers the host would be all that decides.
	var fields []profiles.FieldError
	own := hostAddrs(s.net.Gateway())
	for i, a := range p.Egress.Allow {
		pfx, err := netip.ParsePrefix(a.CIDR)
		if err != nil {
			continue
		}
		field := fmt.Sprintf("egress.allow[%d].cidr", i)
		if pfx.Overlaps(s.net.Subnet()) {
			fields = append(fields, profiles.FieldError{Field: field,
				Problem: fmt.Sprintf("%s overlaps the sandboxes' subnet %s", a.CIDR, s.net.Subnet()), Fix: "allow a range outside it"})
		}
		for _, addr := range own {
			if pfx.Contains(addr) {
				fields = append(fields, profiles.FieldError{Field: field,
					Problem: fmt.Sprintf("%s covers %s, an address of this host", a.CIDR, addr),
					Fix:     "allow the addresses you need around it (smaller ranges that leave it out)"})
				break
			}
		}
	}
	if len(fields) > 0 {
		return &profiles.Error{Source: p.Source, Fields: fields}
	}
	return nil
}

// Started describes a sandbox whose task is running. Its DNS gate and
// refresh loop run in this process until Close.
type Started struct {
	Name    string
	Pid     uint32
	IP      netip.Addr
	Exit    <-chan containerd.ExitStatus
	LogPath string
	Took    time.Duration
	stop    func()
	egress  *egress.Book // for metrics
}

// Close stops the sandbox's DNS gate in this process. The kernel rules stay:
// without the gate, no new name resolves and no address is added.
func (s *Started) Close() {
	if s != nil && s.stop != nil {
		s.stop()
	}
}

// Start validates p and brings its sandbox up: name claimed, image ready,
// network namespace, secrets staged, container created, task started, in
// that order. The task starts last, so every control is in place before any
// agent code runs. If any step fails, everything done so far is undone.
func (s *Supervisor) Start(ctx context.Context, p *profiles.Profile, progress runtime.Progress) (*Started, error) {
	pr, err := s.Prepare(p)
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	return s.StartPrepared(ctx, pr, progress)
}

// Prepared is a profile validated and every file it names opened: mount
// sources, the secrets directory and its files, the image archive. A start
// reads the profile's paths only through these descriptors, so whoever's
// credentials opened them (a socket-group member's, when the daemon
// prepares on its behalf) decide what can be reached, and a path swapped
// afterwards changes nothing.
type Prepared struct {
	p     *profiles.Profile
	sb    runtime.Sandbox
	src   *sources
	began time.Time
	// Owner is the uid that asked for the sandbox (0 for root), kept in
	// its state: the daemon lets an owner stop its own sandboxes.
	Owner uint32
}

// Prepare validates p and opens what it names with the calling thread's
// credentials. Close it when the start is done with it.
func (s *Supervisor) Prepare(p *profiles.Profile) (*Prepared, error) {
	began := time.Now()
	if err := s.Validate(p); err != nil {
		return nil, err
	}
	sb, src, err := s.sandboxSpec(p)
	if err != nil {
		src.Close()
		return nil, err
	}
	return &Prepared{p: p, sb: sb, src: src, began: began}, nil
}

// Profile is the prepared profile.
func (pr *Prepared) Profile() *profiles.Profile { return pr.p }

// Close releases the opened files.
func (pr *Prepared) Close() { pr.src.Close() }

// StartPrepared is Start for a profile already prepared.
func (s *Supervisor) StartPrepared(ctx context.Context, pr *Prepared, progress runtime.Progress) (_ *Started, retErr error) {
	p, sb, src, began := pr.p, pr.sb, pr.src, pr.began
	var secretNames []string
	if src.secrets != nil {
		secretNames = src.secrets.Names
	}
	unlock, err := s.layout.lock()
	if err != nil {
		return nil, err
	}
	if err := s.layout.claim(p.Name); err != nil {
		unlock()
		return nil, err
	}
	unlock()
	defer func() {
		if retErr == nil {
			return
		}
		s.cfg.Log.Debug("start failed; rolling back", "sandbox", p.Name, "error", retErr)
		if err := s.Teardown(context.WithoutCancel(ctx), p.Name); err != nil {
			retErr = fmt.Errorf("%w (and the rollback failed: %v)", retErr, err)
			return
		}
		retErr = fmt.Errorf("%w; everything created for %s was removed again", retErr, p.Name)
	}()

	st := &State{
		Name: p.Name, Image: sb.Image, Profile: p.Source, Status: "starting", CreatedAt: time.Now().UTC(),
		Supervisor: os.Getpid(), Owner: pr.Owner, Seccomp: src.seccomp, LogPath: sb.LogPath, Secrets: secretNames, StopTimeout: p.StopTimeout.String(),
		Memory: sb.MemoryBytes, CPUs: sb.CPUs, Pids: sb.Pids, Egress: p.Egress, Publish: p.Publish,
		Spec: p, Probe: slices.ContainsFunc(sb.Binds, func(b runtime.Bind) bool { return b.Target == verify.ProbePath }),
	}
	if src.creds != nil {
		st.Placeholders = src.creds.placeholders
	}
	if err := s.layout.write(st); err != nil {
		return nil, err
	}
	s.reapLogs(p.Name, filepath.Dir(sb.LogPath))
	if err := logfile.StartOver(sb.LogPath); err != nil {
		return nil, err
	}

	step := func(name string, fn func() error) error {
		t := time.Now()
		err := fn()
		s.cfg.Step(name, time.Since(t), err)
		return err
	}
	err = step("image", func() error {
		how, err := s.rt.EnsureImage(ctx, sb.Image, src.archive, progress)
		if err == nil {
			s.cfg.Log.Debug("image ready", "sandbox", p.Name, "image", sb.Image, "how", how)
		}
		return err
	})
	if err != nil {
		return nil, err
	}

	// The DNS gate listens before the rules that lead to it exist, so the
	// first query of the agent already finds it.
	g, err := s.openGate(ctx, p, 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			g.stop()
		}
	}()
	st.DNSPort = g.port
	eg, gw := g.eg, s.net.Gateway()

	var att netrules.Attachment
	if err := step("network", func() error {
		static, err := eg.StaticEntries()
		if err != nil {
			return err
		}
		att, err = s.net.Attach(netSandbox(p.Name, p, st.DNSPort), static)
		if err != nil {
			return err
		}
		sb.NetNSPath, st.NetNS, st.IP, st.Gateway = att.NetNSPath, att.NetNSPath, att.IP, att.Gateway
		return s.layout.write(st)
	}); err != nil {
		return nil, err
	}
	if *p.Egress.LogDenied {
		s.reportDenied(g, p.Name, att)
	}
	if err := s.openNameGate(g, netSandbox(p.Name, p, st.DNSPort), att.NetNSPath, src.creds, p.OnTripwire); err != nil {
		return nil, err
	}
	if err := g.publish(p.Name, p.Publish, att.IP, s.cfg.Sockets, s.cfg.Log); err != nil {
		return nil, err
	}
	resolv := s.layout.resolvConf(p.Name)
	if err := writeReadable(resolv, []byte("nameserver "+gw.String()+"\noptions ndots:1 timeout:2 attempts:2\n")); err != nil {
		return nil, fmt.Errorf("write resolv.conf: %w", err)
	}
	sb.Binds = append(sb.Binds, runtime.Bind{Source: resolv, Target: "/etc/resolv.conf", ReadOnly: true, NoExec: true})
	if len(src.mounts) > 0 {
		if err := step("mounts", func() error { return stageMounts(src.mounts, s.layout.mountsDir(p.Name)) }); err != nil {
			return nil, err
		}
	}
	if len(p.Volumes) > 0 {
		var devs []*os.File
		if err := step("volumes", func() (err error) {
			sb.Volumes, devs, err = s.attachVolumes(ctx, p, pr.Owner, sb.UID, sb.GID)
			return err
		}); err != nil {
			return nil, err
		}
		// Held until the task has mounted them, after which each clears
		// itself when the sandbox's mount is gone.
		defer closeAll(devs)
	}
	if src.secrets != nil && len(src.secrets.Names) > 0 {
		if err := step("secrets", func() error {
			if src.creds != nil {
				if err := src.creds.writeCA(s.layout.caFile(p.Name), s.layout.caBundleFile(p.Name), s.layout.caKeyFile(p.Name)); err != nil {
					return err
				}
				return stageSecrets(src.secrets, src.creds.placeholders, s.layout.secretsDir(p.Name), sb.UID, sb.GID)
			}
			return stageSecrets(src.secrets, nil, s.layout.secretsDir(p.Name), sb.UID, sb.GID)
		}); err != nil {
			return nil, err
		}
	}
	if err := step("container", func() error { return s.rt.Create(ctx, sb) }); err != nil {
		return nil, err
	}
	var first map[string]time.Duration
	_ = step("allowlist", func() error {
		first = eg.ResolveAll(ctx, g.proxy)
		return nil
	})
	var exitC <-chan containerd.ExitStatus
	if err := step("task", func() error {
		var err error
		exitC, st.Pid, err = s.rt.Start(ctx, p.Name, runtime.Log{Path: sb.LogPath, MaxSize: p.Logs.MaxSize.Bytes, Keep: *p.Logs.Keep})
		return err
	}); err != nil {
		return nil, err
	}
	g.background(func(ctx context.Context) { eg.Run(ctx, g.proxy, first, g.port) })
	st.Status, st.StartedAt = "running", time.Now().UTC()
	if err := s.layout.write(st); err != nil {
		return nil, err
	}
	took := time.Since(began)
	s.audit.Write(p.Name, audit.Event{Kind: "started", Reason: fmt.Sprintf("pid %d, address %s, image %s", st.Pid, st.IP, sb.Image)})
	s.cfg.Log.Info("sandbox started", "sandbox", p.Name, "pid", st.Pid, "took", took)
	return &Started{Name: p.Name, Pid: st.Pid, IP: st.IP, Exit: exitC, LogPath: sb.LogPath, Took: took, stop: g.stop, egress: g.eg}, nil
}

// gate is one sandbox's DNS gate and the work around it (refresh loop,
// denied-packet reader), running in this process until stop.
type gate struct {
	eg    *egress.Book
	proxy *dnsproxy.Proxy
	port  int
	ctx   context.Context
	wg    sync.WaitGroup
	stop  func()
}

// openGate starts the sandbox's DNS gate on a free port of the gateway and
// registers it, so Teardown in this process can stop it first.
func (s *Supervisor) openGate(ctx context.Context, p *profiles.Profile, port int) (*gate, error) {
	eg := egress.New(p.Name, p, s.net, s.layout.egressFile(p.Name), func(e audit.Event) { s.audit.Write(p.Name, e) }, s.cfg.Log)
	proxy, err := dnsproxy.New(dnsproxy.Config{Upstreams: s.cfg.DNSUpstreams, MaxTTL: p.Egress.DNS.MaxTTL.Duration, Log: s.cfg.Log.With("sandbox", p.Name)}, eg)
	if err != nil {
		return nil, err
	}
	pc, ln, err := dnsproxy.Listen(s.net.Gateway(), port)
	if err != nil {
		return nil, err
	}
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g := &gate{eg: eg, proxy: proxy, port: pc.LocalAddr().(*net.UDPAddr).Port, ctx: gctx}
	g.stop = sync.OnceFunc(func() {
		cancel()
		g.wg.Wait()
		s.gatesMu.Lock()
		delete(s.gates, p.Name)
		s.gatesMu.Unlock()
	})
	s.gatesMu.Lock()
	s.gates[p.Name] = g.stop
	s.gatesMu.Unlock()
	g.background(func(ctx context.Context) {
		if err := proxy.Serve(ctx, pc, ln); err != nil {
			s.cfg.Log.Error("dns gate stopped", "sandbox", p.Name, "error", err)
		}
	})
	return g, nil
}

// openNameGate starts the sandbox's name gate in its own network namespace,
// if any of its ports are TLS ports, before anything of the agent runs:
// the namespace's rules send those ports there, and with nothing listening
// a connection is refused, never passed unchecked. With credentials, the
// gate hands their hosts' connections to the sandbox's broker.
func (s *Supervisor) openNameGate(g *gate, sb netrules.Sandbox, nsPath string, creds *credentials, onTripwire string) error {
	if len(sb.TLSPorts) == 0 {
		return nil
	}
	dial := netrules.NameGateDialer(nsPath)
	var b namegate.Broker
	if creds != nil {
		g.eg.SetTripwire(creds.tripwords(), func(where, detail string) { s.tripwire(g.eg, sb.Name, onTripwire, where, detail) })
		br, err := broker.New(broker.Config{
			Bindings: creds.bindings, CA: creds.ca, Dial: dial, RootCAs: s.cfg.UpstreamCAs, Log: s.cfg.Log.With("sandbox", sb.Name),
			Refused: func(r broker.Refusal) {
				if r.Kind == broker.LeakAttempt {
					s.tripwire(g.eg, sb.Name, onTripwire, "a request to "+r.Host, r.Detail)
					return
				}
				g.eg.Alarm(audit.Event{Kind: "credential_refused", Name: r.Host, Reason: r.Kind + ": " + r.Detail})
			},
		})
		if err != nil {
			return err
		}
		b = br
	}
	ln, err := netrules.ListenNameGate(nsPath)
	if err != nil {
		return err
	}
	ng, err := namegate.New(namegate.Config{
		OriginalDst: namegate.OriginalDst, Dial: dial, Broker: b,
		MaxConns: sb.MaxConns, Log: s.cfg.Log.With("sandbox", sb.Name),
	}, g.eg.TLSNames())
	if err != nil {
		ln.Close()
		return err
	}
	g.background(func(ctx context.Context) {
		if err := ng.Serve(ctx, ln); err != nil {
			s.cfg.Log.Error("name gate stopped", "sandbox", sb.Name, "error", err)
		}
	})
	return nil
}

// tripwire reports a placeholder seen where it does not belong and does
// what the profile asks: nothing more, freeze the sandbox, or stop it. The
// agent that sends its placeholder away is trying to leak the key it
// thinks it holds.
//
// The agent decides how often it tries: the audit lines are sampled (on a
// budget of their own) and so is the log; the action is taken every time.
func (s *Supervisor) tripwire(eg *egress.Book, name, action, where, detail string) {
	if eg.Alarm(audit.Event{Kind: "credential_leak_attempt", Reason: where + ": " + detail}) {
		s.cfg.Log.Warn("credential leak attempt", "sandbox", name, "where", where, "detail", detail, "on_tripwire", action)
	}
	ctx := context.Background()
	switch action {
	case profiles.TripwireFreeze:
		if err := s.rt.Pause(ctx, name); err != nil {
			s.cfg.Log.Error("tripwire: freeze", "sandbox", name, "error", err)
			return
		}
		s.audit.Write(name, audit.Event{Kind: "frozen", Reason: "on_tripwire: freeze; `clawguard stop " + name + "` ends it"})
	case profiles.TripwireStop:
		go func() {
			if err := s.rt.Stop(ctx, name, 2*time.Second); err != nil {
				s.cfg.Log.Error("tripwire: stop", "sandbox", name, "error", err)
			}
		}()
	}
}

// reportDenied reads the sandbox's NFLOG group for the gate, in both
// layers: the second, in the sandbox's own namespace, drops first, and the
// host's sees what that one let through. Dropped packets are reported, not
// enforced, from here: without a reader the rules still drop, only the
// report is lost.
func (s *Supervisor) reportDenied(g *gate, name string, att netrules.Attachment) {
	listen := func(where string, open func() (*nflog.Reader, error)) {
		r, err := open()
		if err != nil {
			s.cfg.Log.Warn("denied packets will not be reported", "sandbox", name, "layer", where, "error", err)
			return
		}
		g.background(func(ctx context.Context) {
			if err := r.Run(ctx, g.eg.Denied); err != nil {
				s.cfg.Log.Warn("denied-packet log stopped", "sandbox", name, "layer", where, "error", err)
			}
		})
	}
	listen("host", func() (*nflog.Reader, error) { return nflog.Listen(att.LogGroup) })
	listen("sandbox namespace", func() (r *nflog.Reader, err error) {
		err = netrules.InNetNSAt(att.NetNSPath, func() error {
			r, err = nflog.Listen(att.LogGroup)
			return err
		})
		return r, err
	})
}

// background runs fn until the gate stops; stop waits for it.
func (g *gate) background(fn func(ctx context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn(g.ctx)
	}()
}

// sandboxSpec translates a validated profile into the runtime's description.
func (s *Supervisor) sandboxSpec(p *profiles.Profile) (_ runtime.Sandbox, src *sources, _ error) {
	src = &sources{}
	ref, err := runtime.NormalizeRef(p.Image)
	if err != nil {
		return runtime.Sandbox{}, src, err
	}
	uid, gid, err := p.IDs()
	if err != nil {
		return runtime.Sandbox{}, src, err
	}
	sc, scData, err := seccompProfile(p, nil)
	if err != nil {
		return runtime.Sandbox{}, src, err
	}
	src.seccomp = scData
	sb := runtime.Sandbox{
		Name: p.Name, Image: ref, Args: p.Args, UID: uid, GID: gid,
		ReadOnlyRoot: *p.ReadOnlyRootfs, Seccomp: sc,
		MemoryBytes: p.Resources.Memory.Bytes, CPUs: *p.Resources.CPUs, Pids: *p.Resources.Pids,
		LogPath: s.layout.logFile(p.Name), Extra: s.cfg.ExtraSpecOpts,
	}
	for _, c := range p.Capabilities {
		sb.Capabilities = append(sb.Capabilities, profiles.NormalizeCapability(c))
	}
	env := p.Env
	if _, set := env["NODE_OPTIONS"]; p.Agent == profiles.AgentOpenClaw && !set {
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		env["NODE_OPTIONS"] = fmt.Sprintf("--max-old-space-size=%d", profiles.NodeHeapMiB(p.Resources.Memory.Bytes))
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sb.Env = append(sb.Env, k+"="+env[k])
	}
	for _, t := range p.Tmpfs {
		sb.Tmpfs = append(sb.Tmpfs, runtime.Tmpfs{Path: t.Path, SizeBytes: t.Size.Bytes, Options: t.Options})
	}
	pol := s.Policy()
	for _, m := range p.Mounts {
		// Bound from the descriptor that was judged, never from the path
		// again: stageMounts binds it into the state directory, and runc
		// binds from there.
		f, err := profiles.OpenSource(p.Dir, m.Source, pol, unix.O_PATH)
		if err != nil {
			return runtime.Sandbox{}, src, fmt.Errorf("mount %s: %w", m.Target, err)
		}
		src.mounts = append(src.mounts, f)
		// O_PATH asks only for the way there. What the sandbox is given
		// must also be readable (and writable, if it says so) by whoever
		// prepares: a socket-group member may not hand its sandbox a
		// directory it is kept out of by mode or ACL.
		if err := mayUse(f, m.Writable()); err != nil {
			return runtime.Sandbox{}, src, fmt.Errorf("mount %s: %w", m.Target, err)
		}
		sb.Binds = append(sb.Binds, runtime.Bind{Source: filepath.Join(s.layout.mountsDir(p.Name), strconv.Itoa(len(src.mounts)-1)), Target: m.Target, ReadOnly: !m.Writable()})
	}
	if p.Secrets.Dir != "" {
		// Kept open: the copy reads the very files judged here.
		d, err := profiles.OpenSecrets(p.Dir, p.Secrets.Dir, pol)
		if err != nil {
			return runtime.Sandbox{}, src, fmt.Errorf("secrets: %w", err)
		}
		src.secrets = d
		for _, n := range d.Names {
			sb.Binds = append(sb.Binds, runtime.Bind{
				Source: filepath.Join(s.layout.secretsDir(p.Name), n), Target: "/run/secrets/" + n, ReadOnly: true, NoExec: true,
			})
		}
		if !s.cfg.NoBroker {
			if src.creds, err = prepareCredentials(p, d, time.Now()); err != nil {
				return runtime.Sandbox{}, src, err
			}
		}
	}
	if src.creds != nil {
		// The sandbox's authority, trusted inside it: Node adds the one
		// certificate to its own store; OpenSSL and Python take a bundle
		// that replaces theirs, so it holds the host's store too. These
		// win over the profile's own values, without which the bound
		// hosts would not verify.
		sb.Binds = append(sb.Binds,
			runtime.Bind{Source: s.layout.caFile(p.Name), Target: sandboxCA, ReadOnly: true, NoExec: true},
			runtime.Bind{Source: s.layout.caBundleFile(p.Name), Target: sandboxCABundle, ReadOnly: true, NoExec: true})
		ours := []string{"NODE_EXTRA_CA_CERTS=" + sandboxCA, "REQUESTS_CA_BUNDLE=" + sandboxCABundle, "SSL_CERT_FILE=" + sandboxCABundle}
		sb.Env = slices.DeleteFunc(sb.Env, func(kv string) bool {
			return slices.ContainsFunc(ours, func(o string) bool { k, _, _ := strings.Cut(o, "="); return strings.HasPrefix(kv, k+"=") })
		})
		sb.Env = append(sb.Env, ours...)
	}
	if fi, err := os.Stat(s.cfg.ProbePath); s.cfg.ProbePath != "" && err == nil && fi.Mode().IsRegular() {
		sb.Binds = append(sb.Binds, runtime.Bind{Source: s.cfg.ProbePath, Target: verify.ProbePath, ReadOnly: true})
	} else if s.cfg.ProbePath != "" {
		s.cfg.Log.Warn("the verify probe is missing; this sandbox cannot be verified", "probe", s.cfg.ProbePath)
	}
	if p.ImageArchive != "" {
		f, err := profiles.OpenRegular(p.Path(p.ImageArchive))
		if err != nil {
			return runtime.Sandbox{}, src, fmt.Errorf("image_archive: %w", err)
		}
		src.archive = f
	}
	return sb, src, nil
}

// mayUse checks, with the calling thread's credentials, that f may be
// read (and entered, for a directory) and, if writable, written.
func mayUse(f *os.File, writable bool) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	mode, what := uint32(unix.R_OK), "read"
	if fi.IsDir() {
		mode |= unix.X_OK
	}
	if writable {
		mode, what = mode|unix.W_OK, "read and write"
	}
	if err := unix.Faccessat2(int(f.Fd()), "", mode, unix.AT_EMPTY_PATH|unix.AT_EACCESS); err != nil {
		return fmt.Errorf("%s: you may not %s it: %w", f.Name(), what, err)
	}
	return nil
}

// seccompProfile reads and parses p's seccomp profile, and returns the
// text it was parsed from (nil for a built-in one): the sandbox's state
// keeps it, so verify never reads the profile's file again.
func seccompProfile(p *profiles.Profile, recorded []byte) (*specs.LinuxSeccomp, []byte, error) {
	data, builtin := profiles.BuiltinSeccomp(p.Seccomp)
	if !builtin {
		data = recorded
	}
	if data == nil {
		var err error
		if data, err = profiles.ReadRegular(p.Path(p.Seccomp), profiles.MaxFileSize); err != nil {
			return nil, nil, fmt.Errorf("seccomp profile: %w", err)
		}
	}
	sc, err := seccomp.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("seccomp profile %s: %w", p.Seccomp, err)
	}
	if builtin {
		data = nil
	}
	return sc, data, nil
}

// Stop asks the sandbox to end (SIGTERM, then SIGKILL after its stop timeout)
// and removes everything it had. timeout <= 0 uses the profile's.
func (s *Supervisor) Stop(ctx context.Context, name string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 10 * time.Second
		if st, err := s.layout.read(name); err == nil {
			if d, err := time.ParseDuration(st.StopTimeout); err == nil {
				timeout = d
			}
		}
	}
	if !s.Exists(ctx, name) {
		return fmt.Errorf("stop %s: %w", name, runtime.ErrNotFound)
	}
	if err := s.rt.Stop(ctx, name, timeout); err != nil {
		return err
	}
	return s.Teardown(ctx, name)
}

// Exists reports whether anything of the sandbox remains: state or container.
func (s *Supervisor) Exists(ctx context.Context, name string) bool {
	if _, err := os.Stat(s.layout.dir(name)); err == nil {
		return true
	}
	_, err := s.rt.Inspect(ctx, name)
	return err == nil
}

// Teardown removes every object of a sandbox, whatever state it is in:
// task, container, snapshot, secrets tmpfs, network namespace and state. Each
// step tolerates its object being gone already, so Teardown may run twice,
// concurrently from two processes, or after a half-finished start. The log
// file stays for `clawguard logs`.
func (s *Supervisor) Teardown(ctx context.Context, name string) error {
	s.gatesMu.Lock()
	stopGate := s.gates[name]
	s.gatesMu.Unlock()
	if stopGate != nil {
		stopGate()
	}
	unlock, err := s.layout.lock()
	if err != nil {
		return err
	}
	defer unlock()
	var errs []error
	if err := s.rt.Delete(ctx, name); err != nil {
		errs = append(errs, err)
	}
	if err := unstageSecrets(s.layout.secretsDir(name)); err != nil {
		errs = append(errs, err)
	}
	if err := unstageMounts(s.layout.mountsDir(name)); err != nil {
		errs = append(errs, err)
	}
	if err := s.net.Detach(name); err != nil {
		errs = append(errs, err)
	}
	if s.cfg.Sockets != nil {
		if st, err := s.layout.read(name); err == nil {
			for _, spec := range st.Publish {
				if p, err := profiles.ParsePublish(spec); err == nil {
					s.cfg.Sockets.Drop(publishSocketName(name, p))
				}
			}
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(s.layout.dir(name)); err != nil {
			errs = append(errs, fmt.Errorf("remove state of %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tear down %s: %w", name, err)
	}
	s.cfg.Log.Info("sandbox removed", "sandbox", name)
	s.audit.Write(name, audit.Event{Kind: "stopped"})
	return nil
}

// Wait returns the exit channel of a running sandbox.
func (s *Supervisor) Wait(ctx context.Context, name string) (<-chan containerd.ExitStatus, error) {
	return s.rt.Wait(ctx, name)
}

// Exec runs a command inside a running sandbox.
func (s *Supervisor) Exec(ctx context.Context, name string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return s.rt.Exec(ctx, name, args, runtime.ExecOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

// LogPath is where a sandbox's output is kept.
func (s *Supervisor) LogPath(name string) string { return s.layout.logFile(name) }

// writeReadable writes a file the sandbox user must read, mode 0644 whatever
// the umask: the service runs with UMask=0077, under which a plain write
// leaves the agent a resolv.conf it cannot read (found under systemd).
func writeReadable(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	return os.Chmod(path, 0o644)
}

// sources are the mount sources, the secrets directory and the image
// archive as judged, kept open until the start has bound, copied and
// imported from them.
type sources struct {
	mounts  []*os.File
	secrets *profiles.SecretsDir
	creds   *credentials // the bound secrets, read from secrets
	archive *os.File
	seccomp []byte // a seccomp file's text, as parsed
}

func (s *sources) Close() {
	for _, f := range s.mounts {
		f.Close()
	}
	if s.secrets != nil {
		s.secrets.Close()
	}
	if s.archive != nil {
		s.archive.Close()
	}
}

// LogBudget is what the logs of sandboxes that no longer run may take
// together: each running one is bounded by its own cap, but names are free
// to make up, and every stopped sandbox leaves its last log behind.
const LogBudget = 1 << 30

// reapLogs removes the logs of stopped sandboxes, least recently written
// first, while they take more than LogBudget. Failing that is reported, not
// fatal: the new sandbox's own log is bounded either way.
func (s *Supervisor) reapLogs(starting, dir string) {
	names, err := s.layout.names()
	if err != nil {
		s.cfg.Log.Warn("old logs not reaped", "error", err)
		return
	}
	known := map[string]bool{starting: true}
	for _, n := range names {
		known[n] = true
	}
	reaped, err := logfile.Reap(dir, LogBudget, func(name string) bool { return known[name] })
	if len(reaped) > 0 {
		s.cfg.Log.Info("removed the logs of stopped sandboxes to stay within the log budget", "sandboxes", reaped, "budget_bytes", LogBudget)
	}
	if err != nil {
		s.cfg.Log.Warn("old logs not reaped", "error", err)
	}
}
