// Package daemon is clawguard's host service: it serves the API on a unix
// socket (who may call what), adopts and watches the sandboxes a supervisor
// runs, restarts the declared ones, and exports metrics. It runs nothing
// itself: every sandbox is the supervisor's (enforce).
package daemon

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/enforce/api"
	"github.com/clawguard/clawguard/netrules/dnsproxy"
	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime"
	"github.com/clawguard/clawguard/runtime/volume"
)

// Config is what the daemon needs beyond its supervisor.
type Config struct {
	Socket string
	// SocketGID, when not negative, may also use the socket (mode 0660).
	SocketGID int
	// StopSandboxesOnExit stops every sandbox when the daemon exits; by
	// default they keep running, enforced by their kernel rules.
	StopSandboxesOnExit bool
	// Sandboxes are profile files started with the daemon and restarted
	// when they exit.
	Sandboxes []string
	// MetricsAddr, if set, serves Prometheus metrics there (loopback only).
	MetricsAddr string
	// SandboxIDs, if set, lets members of the socket group start
	// sandboxes: each member's run as an id of this range that is the
	// member's alone, recorded in IDBook. Unset, members start nothing.
	SandboxIDs *IDRange
	IDBook     string
	// NoFirewallGuard leaves a host's firewall reload unrepaired: only
	// the end-to-end suite's control case sets it (weaken builds).
	NoFirewallGuard bool
}

// Restart policy of declared sandboxes: exponential backoff, and a sandbox
// that restarts flapLimit times within flapWindow is left stopped and
// reported, not hammered.
const (
	backoffFirst = time.Second
	backoffMax   = time.Minute
	flapLimit    = 5
	flapWindow   = 10 * time.Minute
)

// Daemon owns every sandbox on the host: it reconciles at start, adopts the
// running ones, serves the API, and tears a sandbox down when its task exits.
type Daemon struct {
	sup *enforce.Supervisor
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	running  map[string]*enforce.Started
	declared map[string]*declared // by sandbox name
	quit     chan struct{}
	closing  bool // set once shutdown begins; no new work after it
	wg       sync.WaitGroup
	metrics  *metrics
	// rewait is the first delay before waiting again on a task whose wait
	// failed (rewaitFirst; tests shorten it).
	rewait time.Duration
	// verifying bounds the verifications in progress: each execs the
	// probe in a sandbox and dials from the host, and any member of the
	// socket group may ask for one.
	verifying chan struct{}
	ids       *idBook // nil without SandboxIDs; guarded by mu
}

// maxVerifying is how many verifications may run at once.
const maxVerifying = 2

// declared is a sandbox the config asks for, and its restart history.
type declared struct {
	profile  string
	restarts []time.Time
	flapping bool
}

// New returns a daemon over sup.
func New(sup *enforce.Supervisor, cfg Config, log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{sup: sup, cfg: cfg, log: log, running: map[string]*enforce.Started{}, declared: map[string]*declared{}, quit: make(chan struct{}), rewait: rewaitFirst,
		verifying: make(chan struct{}, maxVerifying)}
	d.metrics = newMetrics(d)
	return d
}

// Run reconciles, adopts, serves until ctx ends, then lets go of the
// sandboxes (or stops them). ready is called once the API answers.
func (d *Daemon) Run(ctx context.Context, ready func()) error {
	// The lock comes first: it keeps a second daemon from reconciling and
	// adopting sandboxes this one owns. The socket is bound next, and
	// answers only once adoption is done.
	unlock, err := d.sup.LockDaemon()
	if err != nil {
		return err
	}
	defer unlock()
	if d.cfg.SandboxIDs != nil {
		if d.ids, err = openIDBook(d.cfg.IDBook, *d.cfg.SandboxIDs); err != nil {
			return err
		}
	}
	ln, err := listenSocket(d.cfg.Socket, d.cfg.SocketGID)
	if err != nil {
		return err
	}
	if d.cfg.MetricsAddr != "" {
		mln, err := d.metrics.listen(d.cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			return err
		}
		mctx, stopMetrics := context.WithCancel(ctx)
		defer stopMetrics()
		go d.metrics.serve(mctx, mln)
	}
	warnIfGatePortsUnprivileged(d.log)
	rep, err := d.sup.Reconcile(ctx)
	if err != nil {
		d.log.Error("reconcile at start", "error", err)
	}
	for _, r := range rep.Removed {
		d.log.Info("reconcile removed", "object", r)
	}
	for _, name := range rep.Kept {
		st, err := d.sup.Adopt(ctx, name)
		if err != nil {
			d.log.Error("adopt sandbox", "sandbox", name, "error", err)
			continue
		}
		d.log.Info("adopted sandbox", "sandbox", name, "pid", st.Pid)
		d.watch(st)
	}
	if !d.cfg.NoFirewallGuard {
		guardCtx, stopGuard := context.WithCancel(ctx)
		guarded := make(chan struct{})
		go func() {
			defer close(guarded)
			d.sup.GuardFirewall(guardCtx, enforce.GuardPoll)
		}()
		defer func() { stopGuard(); <-guarded }()
	}
	for _, path := range d.cfg.Sandboxes {
		d.startDeclared(ctx, path)
	}
	srv := &http.Server{
		Handler: d.handler(),
		// A caller that dribbles its request or never reads the answer
		// cannot hold a connection: the body is small, so reading it
		// takes no time; writing allows for a run that imports a large
		// image.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      15 * time.Minute,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       withPeer,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready()
	}
	d.log.Info("daemon ready", "socket", d.cfg.Socket, "sandboxes", len(rep.Kept))
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// From here on no new work: a run still in flight when the server
	// gives up waiting finds the daemon closing (see watch).
	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	_ = os.Remove(d.cfg.Socket)
	if d.cfg.StopSandboxesOnExit {
		d.stopAll(context.WithoutCancel(ctx))
	}
	d.release()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// warnIfGatePortsUnprivileged says so when the host lets any user bind
// some of the DNS gates' ports: gates then use only the ports below that
// line, and none if there are none.
func warnIfGatePortsUnprivileged(log *slog.Logger) {
	if n, ok := dnsproxy.UnprivilegedPortStart(); ok && n <= dnsproxy.GatePortLast {
		log.Warn("net.ipv4.ip_unprivileged_port_start is below 1024: DNS gates use only the ports below it; set it to 1024",
			"ip_unprivileged_port_start", n, "gate_ports", fmt.Sprintf("%d-%d", dnsproxy.GatePortFirst, dnsproxy.GatePortLast))
	}
}

// watch tears a sandbox down when its task exits, unless the daemon is
// letting go of it.
func (d *Daemon) watch(st *enforce.Started) {
	d.mu.Lock()
	if d.closing {
		// Started as the daemon stops: let go of it as release does the
		// others (it runs on, enforced, for the next daemon to adopt),
		// and add nothing to a WaitGroup that may be in Wait.
		d.mu.Unlock()
		st.Close()
		return
	}
	d.running[st.Name] = st
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		code, ok := d.awaitExit(st)
		if !ok {
			return
		}
		// Only this instance of the sandbox is ours to tear down: if it
		// was stopped through the API (entry gone), or the name already
		// belongs to a new sandbox (entry replaced), do nothing.
		d.mu.Lock()
		mine := d.running[st.Name] == st
		if mine {
			delete(d.running, st.Name)
		}
		d.mu.Unlock()
		if !mine {
			return
		}
		d.log.Info("sandbox exited", "sandbox", st.Name, "code", code)
		if err := d.sup.Teardown(context.Background(), st.Name); err != nil {
			d.log.Error("tear down exited sandbox", "sandbox", st.Name, "error", err)
		}
		d.restartLater(st.Name)
	}()
}

// rewaitFirst and rewaitMax bound the backoff of waiting again on a task
// whose wait failed.
const (
	rewaitFirst = time.Second
	rewaitMax   = time.Minute
)

// awaitExit waits for the sandbox's task to exit and returns its code; ok
// is false if the daemon quit first. A wait that fails is not an exit
// (containerd restarted, say: the task runs on, enforced by its kernel
// rules, and tearing it down would kill it), so the wait is made again, with
// backoff, until it reports a real exit or the task is gone.
func (d *Daemon) awaitExit(st *enforce.Started) (code uint32, ok bool) {
	exit := st.Exit
	delay := d.rewait
	for {
		select {
		case es := <-exit:
			code, _, err := es.Result()
			if err == nil {
				return code, true
			}
			d.log.Warn("lost the wait on the sandbox's task; waiting again", "sandbox", st.Name, "error", err, "in", delay)
		case <-d.quit:
			return 0, false
		}
		for {
			select {
			case <-time.After(delay):
			case <-d.quit:
				return 0, false
			}
			delay = min(2*delay, rewaitMax)
			ch, err := d.sup.Wait(context.Background(), st.Name)
			if errors.Is(err, runtime.ErrNotFound) {
				return 0, true // gone while nobody watched: an exit all the same
			}
			if err == nil {
				exit = ch
				break
			}
			d.log.Warn("cannot wait on the sandbox's task yet; trying again", "sandbox", st.Name, "error", err, "in", delay)
		}
	}
}

// startDeclared starts a sandbox of the config unless it already runs
// (adopted). A failure is retried like an exit.
func (d *Daemon) startDeclared(ctx context.Context, path string) {
	p, err := profiles.Load(path)
	if err != nil {
		d.log.Error("declared sandbox: invalid profile; not started", "profile", path, "error", err)
		return
	}
	d.mu.Lock()
	if d.declared[p.Name] == nil {
		d.declared[p.Name] = &declared{profile: path}
	}
	_, running := d.running[p.Name]
	d.mu.Unlock()
	if running {
		return
	}
	st, err := d.sup.Start(context.WithoutCancel(ctx), p, nil)
	if err != nil {
		d.log.Error("declared sandbox did not start", "sandbox", p.Name, "error", err)
		d.restartLater(p.Name)
		return
	}
	d.metrics.startTime.Observe(st.Took.Seconds())
	d.log.Info("declared sandbox started", "sandbox", p.Name, "pid", st.Pid)
	d.watch(st)
}

// restartLater schedules a declared sandbox's restart with backoff, or
// gives up on a flapping one.
func (d *Daemon) restartLater(name string) {
	d.mu.Lock()
	decl := d.declared[name]
	if decl == nil || decl.flapping {
		d.mu.Unlock()
		return
	}
	now := time.Now()
	recent := decl.restarts[:0]
	for _, t := range decl.restarts {
		if now.Sub(t) < flapWindow {
			recent = append(recent, t)
		}
	}
	decl.restarts = recent
	if len(recent) >= flapLimit {
		decl.flapping = true
		d.mu.Unlock()
		d.log.Error("declared sandbox is flapping; not restarting it (fix it, then restart the daemon or run it by hand)",
			"sandbox", name, "restarts", len(recent), "window", flapWindow)
		d.sup.Audit(name, "flapping", fmt.Sprintf("%d restarts in %s", len(recent), flapWindow))
		return
	}
	delay := min(backoffMax, backoffFirst<<len(recent))
	decl.restarts = append(decl.restarts, now)
	path := decl.profile
	d.mu.Unlock()
	d.log.Info("restarting declared sandbox", "sandbox", name, "in", delay)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		select {
		case <-time.After(delay):
			d.startDeclared(context.Background(), path)
		case <-d.quit:
		}
	}()
}

// Flapping lists declared sandboxes that were given up on.
func (d *Daemon) flapping() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for n, decl := range d.declared {
		if decl.flapping {
			out = append(out, n)
		}
	}
	return out
}

// release stops the DNS gates in this process; the sandboxes and their
// kernel rules stay, closed to anything new, until a daemon adopts them.
func (d *Daemon) release() {
	close(d.quit)
	d.wg.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, st := range d.running {
		st.Close()
	}
}

func (d *Daemon) stopAll(ctx context.Context) {
	d.mu.Lock()
	names := make([]string, 0, len(d.running))
	for n := range d.running {
		names = append(names, n)
	}
	d.mu.Unlock()
	for _, n := range names {
		if err := d.sup.Stop(ctx, n, 0); err != nil {
			d.log.Error("stop sandbox on exit", "sandbox", n, "error", err)
		}
	}
}

// listenSocket makes the API socket, owned by root with mode 0600 (0660 and
// the group when one is allowed), replacing a stale one.
func listenSocket(path string, gid int) (net.Listener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("socket directory: %w", err)
		}
		// Made under the service's UMask=0077 it would be 0700, and the
		// socket group could not reach the socket.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, fmt.Errorf("socket directory: %w", err)
		}
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another clawguard daemon answers on %s", path)
	}
	_ = os.Remove(path)
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, 0, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket group: %w", err)
		}
		if err := os.Chmod(path, 0o660); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

type peerKey struct{}

// withPeer records the caller's credentials, read from the socket itself.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var groups []uint32
	_ = raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		groups, _ = peerGroups(int(fd))
	})
	if cred == nil {
		return ctx
	}
	ctx = context.WithValue(ctx, peerGroupsKey{}, groups)
	return context.WithValue(ctx, peerKey{}, cred)
}

type peerGroupsKey struct{}

// peerGroups are the supplementary groups the caller had when it connected
// (SO_PEERGROUPS), read from the socket like its uid: /proc/PID/status
// would be read later, and by then the pid may be someone else's.
func peerGroups(fd int) ([]uint32, error) {
	// x/sys has no getsockopt for an array of gid_t (GetsockoptString
	// would cut at the first zero byte), so the call is made directly,
	// with room for the kernel's NGROUPS_MAX.
	buf := make([]byte, 4*65536)
	n := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return nil, errno
	}
	out := make([]uint32, 0, n/4)
	for i := 0; i+4 <= int(n); i += 4 {
		out = append(out, binary.NativeEndian.Uint32(buf[i:]))
	}
	return out, nil
}

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	// The socket group reads and verifies. With sandbox_ids configured a
	// member also starts sandboxes, as its own id of that range and with
	// every path of the request opened as the member (handleRun), and
	// stops the ones it started; reconcile, which removes anyone's
	// leftovers, stays root's.
	mux.HandleFunc("GET /v1/sandboxes", d.handleStatus)
	mux.HandleFunc("POST /v1/sandboxes", d.handleRun)
	mux.HandleFunc("DELETE /v1/sandboxes/{name}", named(d.handleStop))
	mux.HandleFunc("POST /v1/sandboxes/{name}/verify", named(d.handleVerify))
	mux.HandleFunc("GET /v1/volumes", d.handleVolumes)
	mux.HandleFunc("DELETE /v1/volumes/{name}", named(d.handleRemoveVolumes))
	mux.HandleFunc("POST /v1/reconcile", rootOnly(d.handleReconcile))
	mux.HandleFunc("GET /v1/health", d.handleHealth)
	return d.guard(mux)
}

// guard refuses browser-style requests (a page must not drive the daemon
// through a forwarded socket) and callers that are not root or the
// allowed group, before any handler runs.
func (d *Daemon) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
			writeErr(w, http.StatusForbidden, errors.New("browser requests are refused"))
			return
		}
		cred, ok := r.Context().Value(peerKey{}).(*unix.Ucred)
		groups, _ := r.Context().Value(peerGroupsKey{}).([]uint32)
		if !ok || !d.allowed(cred, groups) {
			writeErr(w, http.StatusForbidden, errors.New("only root (or the configured socket group) may use the clawguard API"))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, api.MaxRequestBody)
		next.ServeHTTP(w, r)
	})
}

// ErrRootOnly is the answer to a member of the socket group that asks for
// what only root may do.
var ErrRootOnly = errors.New("only root may reconcile; members of the socket group may read status, verify, and (with sandbox_ids configured) start and stop their own sandboxes (see the README, \"The socket group\")")

// rootOnly refuses callers other than root (guard has already let the
// socket group in).
func rootOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if cred, ok := r.Context().Value(peerKey{}).(*unix.Ucred); !ok || cred.Uid != 0 {
			writeErr(w, http.StatusForbidden, ErrRootOnly)
			return
		}
		h(w, r)
	}
}

// named validates the {name} of a route before its handler sees it: a name
// becomes a path under the state directory, so "%2F.." must never get there.
func named(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := profiles.ValidName(name); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		h(w, r, name)
	}
}

// allowed: root, or a member (primary or supplementary) of the socket group,
// both as the socket recorded them when the caller connected.
func (d *Daemon) allowed(c *unix.Ucred, groups []uint32) bool {
	if c.Uid == 0 {
		return true
	}
	if d.cfg.SocketGID < 0 {
		return false
	}
	return int(c.Gid) == d.cfg.SocketGID || slices.Contains(groups, uint32(d.cfg.SocketGID))
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name != "" {
		if err := profiles.ValidName(name); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
	}
	list, err := d.sup.Status(r.Context(), name, time.Now(), r.URL.Query().Get("rules") == "1")
	if err != nil {
		writeErr(w, statusOf(err), err)
		return
	}
	if list == nil {
		list = []enforce.Status{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (d *Daemon) handleRun(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	closing := d.closing
	d.mu.Unlock()
	if closing {
		writeErr(w, http.StatusServiceUnavailable, errors.New("the daemon is shutting down; run again once it is back"))
		return
	}
	c, ok := callerOf(r)
	if !ok {
		writeErr(w, http.StatusForbidden, errors.New("the caller's credentials are unknown"))
		return
	}
	req, err := api.DecodeRunRequest(r.Body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	pr, err := d.prepare(c, req)
	if errors.Is(err, errNoSandboxIDs) || errors.Is(err, errNotAccount) || errors.Is(err, errForbidden) {
		writeErr(w, http.StatusForbidden, err)
		return
	}
	if err != nil {
		writeErr(w, statusOf(err), err)
		return
	}
	defer pr.Close()
	pr.Owner = c.uid
	p := pr.Profile()
	// The sandbox outlives this request.
	st, err := d.sup.StartPrepared(context.WithoutCancel(r.Context()), pr, nil)
	if err != nil {
		// The caller sees the error; the service's log keeps it too.
		d.log.Warn("sandbox did not start", "sandbox", p.Name, "owner", c.uid, "error", err)
		writeErr(w, statusOf(err), err)
		return
	}
	d.metrics.startTime.Observe(st.Took.Seconds())
	d.watch(st)
	writeJSON(w, http.StatusCreated, api.RunResponse{Name: st.Name, Pid: st.Pid, IP: st.IP.String(), User: p.User, TookMs: float64(st.Took.Microseconds()) / 1000})
}

// Why a member's run is refused (403), before anything is opened.
var (
	errNoSandboxIDs = errors.New("only root may start sandboxes here: the daemon's config sets no sandbox_ids, the id range members' sandboxes would run as (see the README, \"The socket group\")")
	errNotAccount   = errors.New("only accounts of this host may start sandboxes")
	errForbidden    = errors.New("refused")
)

// prepare loads, validates and opens what a run request names. For root
// that is the daemon's own business. For a member of the socket group every
// path (the profile, its directory, mount sources, secrets, the seccomp
// file) is opened on a thread that has the member's file-system identity,
// so the kernel refuses what the member could not open itself; the sandbox
// runs as the member's own id of sandbox_ids; and what would act on the
// host beyond the member's reach (an image archive, whose images every
// sandbox of the host would see; a privileged host port) is refused.
func (d *Daemon) prepare(c caller, req api.RunRequest) (*enforce.Prepared, error) {
	var id uint32
	if !c.root() {
		// An id for good, so only to an account of this host: a uid a
		// member maps in a user namespace of its own (one per
		// connection, if it likes) would use the range up.
		if _, err := user.LookupId(strconv.FormatUint(uint64(c.uid), 10)); err != nil {
			return nil, fmt.Errorf("%w: uid %d is no account of this host (%v)", errNotAccount, c.uid, err)
		}
		d.mu.Lock()
		var err error
		if d.ids == nil {
			err = errNoSandboxIDs
		} else {
			id, err = d.ids.assign(c.uid)
		}
		d.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	var pr *enforce.Prepared
	prepare := func() error {
		p, err := loadRequested(req)
		if err != nil {
			return err
		}
		if !c.root() {
			d.mu.Lock()
			_, declared := d.declared[p.Name]
			d.mu.Unlock()
			if declared {
				// Its restarts, verify and stop would then act on the
				// member's sandbox.
				return fmt.Errorf("%w: %s is the name of a sandbox the daemon's config declares; pick another with --name", errForbidden, p.Name)
			}
			if err := memberRules(p, id, unprivilegedPortStart()); err != nil {
				return err
			}
		}
		pr, err = d.sup.Prepare(p)
		return err
	}
	if c.root() {
		return pr, prepare()
	}
	return pr, asCaller(c, prepare)
}

func loadRequested(req api.RunRequest) (*profiles.Profile, error) {
	var p *profiles.Profile
	var err error
	switch {
	case req.Profile != "" && !filepath.IsAbs(req.Profile):
		err = fmt.Errorf("profile path %q must be absolute", req.Profile)
	case req.Profile != "":
		p, err = profiles.Load(req.Profile)
	case !filepath.IsAbs(req.Dir):
		err = fmt.Errorf("dir %q must be absolute", req.Dir)
	default:
		p, err = profiles.LoadBuiltin(profiles.DefaultName, req.Dir)
	}
	if err != nil {
		return nil, err
	}
	if err := p.Override(req.Name, req.Image); err != nil {
		return nil, err
	}
	return p, nil
}

// memberRules fits a member's profile to what a member may ask of a root
// daemon, and sets its user to the member's sandbox id. Everything else the
// profile may say is confined to the sandbox, or is a path opened as the
// member.
func memberRules(p *profiles.Profile, id uint32, unprivileged int) error {
	own := fmt.Sprintf("%d:%d", id, id)
	var fields []profiles.FieldError
	if p.User != profiles.DefaultUser && p.User != own {
		fields = append(fields, profiles.FieldError{Field: "user",
			Problem: fmt.Sprintf("%q: a socket-group member's sandboxes run as its own id from sandbox_ids, %s", p.User, own),
			Fix:     "remove user: (or set it to \"" + own + "\")"})
	}
	if p.ImageArchive != "" {
		fields = append(fields, profiles.FieldError{Field: "image_archive",
			Problem: "a member may not import image archives: an archive names its own images, and every sandbox on this host would then get them under those names",
			Fix:     "ask root to import it (sudo clawguard run with this profile once), or use an image from a registry"})
	}
	// The logs are on root's disk, the one every sandbox and the daemon
	// share: a member gets the default share and no more.
	if p.Logs.MaxSize.Bytes > profiles.DefaultLogMaxSize || p.Logs.Keep != nil && *p.Logs.Keep > profiles.DefaultLogKeep {
		fields = append(fields, profiles.FieldError{Field: "logs",
			Problem: fmt.Sprintf("a member's sandbox keeps at most the default log (max_size %dM, keep %d): its files are on the disk the daemon and every other sandbox write to",
				profiles.DefaultLogMaxSize>>20, profiles.DefaultLogKeep),
			Fix: "remove logs: or lower it to the default"})
	}
	for i, spec := range p.Publish {
		if pub, err := profiles.ParsePublish(spec); err == nil && pub.HostPort < unprivileged {
			fields = append(fields, profiles.FieldError{Field: fmt.Sprintf("publish[%d]", i),
				Problem: fmt.Sprintf("host port %d is privileged (below %d): the daemon would bind it for you as root", pub.HostPort, unprivileged),
				Fix:     fmt.Sprintf("publish on a host port of %d or above", unprivileged)})
		}
	}
	if len(fields) > 0 {
		return &profiles.Error{Source: p.Source, Fields: fields}
	}
	p.User = own
	return nil
}

// unprivilegedPortStart is the first port any user may bind.
func unprivilegedPortStart() int {
	if n, ok := dnsproxy.UnprivilegedPortStart(); ok {
		return n
	}
	return 1024
}

// handleVolumes lists the volumes: all of them for root, a member's own
// for a member.
func (d *Daemon) handleVolumes(w http.ResponseWriter, r *http.Request) {
	c, ok := callerOf(r)
	if !ok {
		writeErr(w, http.StatusForbidden, errors.New("no caller credentials"))
		return
	}
	list, err := d.sup.Volumes(c.uid)
	if err != nil {
		writeErr(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// handleRemoveVolumes removes a stopped sandbox's volumes (?volume=NAME,
// repeated; all of them without). A member removes only its own.
func (d *Daemon) handleRemoveVolumes(w http.ResponseWriter, r *http.Request, name string) {
	c, ok := callerOf(r)
	if !ok {
		writeErr(w, http.StatusForbidden, errors.New("no caller credentials"))
		return
	}
	vols := r.URL.Query()["volume"]
	for _, v := range vols {
		if err := profiles.ValidName(v); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
	}
	removed, err := d.sup.RemoveVolumes(r.Context(), name, vols, c.uid)
	if err != nil {
		writeErr(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, removed)
}

func (d *Daemon) handleStop(w http.ResponseWriter, r *http.Request, name string) {
	if c, ok := callerOf(r); !ok || !c.root() {
		owner, err := d.sup.Owner(name)
		if err != nil {
			writeErr(w, statusOf(err), err)
			return
		}
		if !ok || owner != c.uid {
			writeErr(w, http.StatusForbidden, fmt.Errorf("only root may stop a sandbox another user started (%s was started by uid %d)", name, owner))
			return
		}
	}
	var timeout time.Duration
	if t := r.URL.Query().Get("timeout"); t != "" {
		var err error
		if timeout, err = time.ParseDuration(t); err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("timeout %q: %w", t, err))
			return
		}
	}
	// Taken from the watcher before the stop: the exit it is about to see is
	// this stop's, and the teardown is done here.
	d.mu.Lock()
	st := d.running[name]
	delete(d.running, name)
	d.mu.Unlock()
	if err := d.sup.Stop(r.Context(), name, timeout); err != nil {
		if st != nil && !errors.Is(err, runtime.ErrNotFound) {
			d.mu.Lock()
			if _, taken := d.running[name]; !taken {
				d.running[name] = st // still running: keep watching it
			}
			d.mu.Unlock()
		}
		writeErr(w, statusOf(err), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleVerify verifies any sandbox of this host, whoever supervises it, so
// that members of the socket group can verify without root.
func (d *Daemon) handleVerify(w http.ResponseWriter, r *http.Request, name string) {
	req, err := api.DecodeVerifyRequest(r.Body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	// Blocked probes are dialled from the host as root: from a member of
	// the socket group they would make the daemon a connect oracle past
	// any uid-based rule. Members verify with the defaults.
	if cred, ok := r.Context().Value(peerKey{}).(*unix.Ucred); len(req.BlockedProbes) > 0 && (!ok || cred.Uid != 0) {
		writeErr(w, http.StatusForbidden, errors.New("only root may name blocked probes (the host dials them); verify without --blocked-probe"))
		return
	}
	select {
	case d.verifying <- struct{}{}:
		defer func() { <-d.verifying }()
	default:
		w.Header().Set("Retry-After", "2")
		writeErr(w, http.StatusTooManyRequests, fmt.Errorf("%d verifications are already running; try again in a moment", maxVerifying))
		return
	}
	v, err := d.sup.Verify(r.Context(), name, enforce.VerifyOptions{
		BlockedProbes: req.BlockedProbes, Timeout: time.Duration(req.TimeoutMs) * time.Millisecond,
	})
	if err != nil {
		writeErr(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (d *Daemon) handleReconcile(w http.ResponseWriter, r *http.Request) {
	rep, err := d.sup.Reconcile(r.Context())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (d *Daemon) handleHealth(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	n := len(d.running)
	d.mu.Unlock()
	fds, _ := os.ReadDir("/proc/self/fd")
	writeJSON(w, http.StatusOK, api.Health{Sandboxes: n, Goroutines: goruntime.NumGoroutine(), OpenFiles: len(fds), Flapping: d.flapping()})
}

func statusOf(err error) int {
	var pe *profiles.Error
	switch {
	case errors.As(err, &pe):
		return http.StatusUnprocessableEntity
	case errors.Is(err, runtime.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, enforce.ErrExists), errors.Is(err, volume.ErrInUse):
		return http.StatusConflict
	case errors.Is(err, volume.ErrNotOwner):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func writeErr(w http.ResponseWriter, code int, err error) {
	e := api.APIError{Error: err.Error()}
	var pe *profiles.Error
	if errors.As(err, &pe) {
		e.Profile = pe.Fields
	}
	writeJSON(w, code, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
