// Package runtime is clawguard's only contact with containerd: images, the
// hardened OCI spec, and the container and task lifecycle. It knows nothing
// of profiles, iptables or DNS.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawguard/clawguard/runtime/logfile"
)

const (
	// Namespace is the containerd namespace every sandbox lives in.
	Namespace = "clawguard"
	// LabelSandbox marks containers as ours and names their sandbox.
	LabelSandbox = "clawguard.sandbox"
	runcShim     = "io.containerd.runc.v2"
)

// ErrNotFound is returned when a sandbox has no container.
var ErrNotFound = errors.New("no such sandbox")

// Runtime wraps a containerd client in clawguard's namespace.
type Runtime struct {
	client      *containerd.Client
	snapshotter string
	log         *slog.Logger
}

// Connect dials containerd at address. A daemon that does not answer within
// a few seconds is reported with what to do about it.
func Connect(ctx context.Context, address string, log *slog.Logger) (*Runtime, error) {
	if _, err := os.Stat(address); err != nil {
		return nil, fmt.Errorf("containerd socket %s: %w (is containerd running? start it with `systemctl start containerd`, or pass --containerd-address)", address, err)
	}
	client, err := containerd.New(address, containerd.WithDefaultNamespace(Namespace), containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", address, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := client.Version(cctx); err != nil {
		client.Close()
		return nil, fmt.Errorf("containerd at %s does not answer: %w", address, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runtime{client: client, snapshotter: "overlayfs", log: log}, nil
}

// Close releases the connection.
func (r *Runtime) Close() error { return r.client.Close() }

func (r *Runtime) ns(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, Namespace)
}

// Create makes the container for s from an image already ensured; it does not
// start anything. On error nothing is left behind.
func (r *Runtime) Create(ctx context.Context, s Sandbox) (retErr error) {
	ctx = r.ns(ctx)
	img, err := r.client.GetImage(ctx, s.Image)
	if err != nil {
		return fmt.Errorf("create %s: image %s: %w", s.Name, s.Image, err)
	}
	_, err = r.client.NewContainer(ctx, s.Name,
		containerd.WithImage(img),
		containerd.WithSnapshotter(r.snapshotter),
		containerd.WithNewSnapshot(s.Name, img),
		containerd.WithRuntime(runcShim, nil),
		containerd.WithContainerLabels(map[string]string{LabelSandbox: s.Name}),
		containerd.WithNewSpec(SpecOpts(img, s)...),
	)
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("create %s: a container of that name already exists (stop it with `clawguard stop %s`)", s.Name, s.Name)
		}
		// NewContainer may have created the snapshot before failing.
		_ = r.client.SnapshotService(r.snapshotter).Remove(ctx, s.Name)
		return fmt.Errorf("create container %s: %w", s.Name, err)
	}
	return nil
}

// Log is where a task's output is kept and how much of it.
type Log struct {
	// Path is the current file, absolute; older generations are Path.1
	// (newest) to Path.Keep.
	Path    string
	MaxSize int64 // bytes per file
	Keep    int   // older generations kept beside Path
	// Binary is the program the shim runs to write the log (it must
	// answer to LogWriterCommand, as clawguard does); empty means this
	// executable.
	Binary string
}

// LogWriterCommand is the hidden subcommand of clawguard that the shim runs
// to keep a task's output: `clawguard log-writer PATH --max-size N --keep K`.
const LogWriterCommand = "log-writer"

// LogWriterArgs are l as the query of a binary:// log URI. The shim turns
// each key and its value into two arguments, in no fixed order, so the
// subcommand is a key whose value is its one positional argument, and every
// other key is a flag taking a value; cobra finds the subcommand among
// flags wherever it comes.
func LogWriterArgs(l Log) map[string]string {
	return map[string]string{
		LogWriterCommand: l.Path,
		"--max-size":     strconv.FormatInt(l.MaxSize, 10),
		"--keep":         strconv.Itoa(l.Keep),
	}
}

// logWriterBinary is l.Binary, or else this executable. A binary replaced
// under a running daemon (an upgrade) reads as "PATH (deleted)"; the new one
// at PATH writes logs the same way.
func logWriterBinary(l Log) (string, error) {
	if l.Binary != "" {
		return l.Binary, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this executable to write logs: %w", err)
	}
	return strings.TrimSuffix(exe, " (deleted)"), nil
}

// Start creates the task, with stdout and stderr kept in l's size-capped
// files, and starts it. The returned channel delivers the exit status; it is
// armed before the task starts so no exit is missed.
//
// The shim runs the log writer (this binary's LogWriterCommand) as its own
// child, so the output keeps being written, within its cap, across restarts
// of the daemon, where a pipe into the daemon would break and block or kill
// the agent.
func (r *Runtime) Start(ctx context.Context, name string, l Log) (<-chan containerd.ExitStatus, uint32, error) {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", name, notFound(err))
	}
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o700); err != nil {
		return nil, 0, fmt.Errorf("start %s: log directory: %w", name, err)
	}
	// Opened here first, so that a log that cannot be written fails the
	// start with its reason; the shim discards what its logger says.
	w, err := logfile.Open(l.Path, l.MaxSize, l.Keep)
	if err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", name, err)
	}
	bin, err := logWriterBinary(l)
	if err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", name, err)
	}
	task, err := c.NewTask(ctx, cio.BinaryIO(bin, LogWriterArgs(l)))
	if err != nil {
		return nil, 0, fmt.Errorf("create task %s: %w", name, err)
	}
	// Wait outlives the caller's context: the exit must be seen even after a
	// start-up timeout has passed.
	exitC, err := task.Wait(context.WithoutCancel(ctx))
	if err != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		return nil, 0, fmt.Errorf("wait on task %s: %w", name, err)
	}
	if err := task.Start(ctx); err != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		return nil, 0, fmt.Errorf("start task %s: %w", name, err)
	}
	return exitC, task.Pid(), nil
}

// Wait returns a channel that delivers the exit status of a running sandbox.
func (r *Runtime) Wait(ctx context.Context, name string) (<-chan containerd.ExitStatus, error) {
	ctx = r.ns(ctx)
	task, err := r.task(ctx, name)
	if err != nil {
		return nil, err
	}
	return task.Wait(ctx)
}

// Stop sends SIGTERM, waits up to timeout, then SIGKILLs every process of the
// sandbox. A sandbox with no running task is already stopped.
func (r *Runtime) Stop(ctx context.Context, name string, timeout time.Duration) error {
	ctx = r.ns(ctx)
	task, err := r.task(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := task.Status(ctx)
	if err != nil {
		return fmt.Errorf("stop %s: status: %w", name, err)
	}
	if st.Status == containerd.Stopped {
		return nil
	}
	if st.Status == containerd.Paused {
		// A frozen sandbox takes no signal but the kill; thawed, it gets
		// its SIGTERM like any other.
		if err := task.Resume(ctx); err != nil {
			return fmt.Errorf("stop %s: thaw: %w", name, err)
		}
	}
	exitC, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("stop %s: wait: %w", name, err)
	}
	if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: SIGTERM: %w", name, err)
	}
	select {
	case <-exitC:
		return nil
	case <-time.After(timeout):
	case <-ctx.Done():
		return ctx.Err()
	}
	r.log.Info("sandbox ignored SIGTERM; killing", "sandbox", name, "timeout", timeout)
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: SIGKILL: %w", name, err)
	}
	select {
	case <-exitC:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("stop %s: still running 10s after SIGKILL", name)
	}
}

// Pause freezes every process of the sandbox (the cgroup freezer): they
// keep their memory and descriptors and run no instruction until Stop.
func (r *Runtime) Pause(ctx context.Context, name string) error {
	ctx = r.ns(ctx)
	task, err := r.task(ctx, name)
	if err != nil {
		return err
	}
	if err := task.Pause(ctx); err != nil {
		return fmt.Errorf("freeze %s: %w", name, err)
	}
	return nil
}

// Delete removes the task, the container and its snapshot. Anything already
// gone is skipped, so Delete is safe to repeat and to call after a failure.
func (r *Runtime) Delete(ctx context.Context, name string) error {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, name)
	if errdefs.IsNotFound(err) {
		return r.removeSnapshot(ctx, name)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if task, err := c.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task %s: %w", name, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete %s: load task: %w", name, err)
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", name, err)
	}
	return r.removeSnapshot(ctx, name)
}

func (r *Runtime) removeSnapshot(ctx context.Context, name string) error {
	err := r.client.SnapshotService(r.snapshotter).Remove(ctx, name)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove snapshot %s: %w", name, err)
	}
	return nil
}

// ExecOptions are the streams of an exec'd process. Stdin may be nil.
type ExecOptions struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Exec runs args inside a running sandbox with the sandbox's own user,
// capabilities, seccomp profile and namespaces, and returns its exit code.
func (r *Runtime) Exec(ctx context.Context, name string, args []string, o ExecOptions) (int, error) {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", name, notFound(err))
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: read spec: %w", name, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: the sandbox is not running: %w", name, notFound(err))
	}
	proc := *spec.Process
	proc.Args = args
	proc.Terminal = false
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	execID := fmt.Sprintf("exec-%d-%d", os.Getpid(), time.Now().UnixNano())
	p, err := task.Exec(ctx, execID, &proc, cio.NewCreator(cio.WithStreams(o.Stdin, o.Stdout, o.Stderr)))
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", name, err)
	}
	defer p.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill) //nolint:errcheck
	exitC, err := p.Wait(ctx)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: wait: %w", name, err)
	}
	if err := p.Start(ctx); err != nil {
		return -1, fmt.Errorf("exec %q in %s: %w", args[0], name, err)
	}
	if o.Stdin != nil {
		_ = p.CloseIO(ctx, containerd.WithStdinCloser)
	}
	select {
	case st := <-exitC:
		code, _, err := st.Result()
		if err != nil {
			return -1, fmt.Errorf("exec in %s: %w", name, err)
		}
		// Let the shim flush the last output before the fifos close.
		if pio := p.IO(); pio != nil {
			pio.Wait()
		}
		return int(code), nil
	case <-ctx.Done():
		_ = p.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		return -1, ctx.Err()
	}
}

// Info is what containerd knows of a sandbox.
type Info struct {
	Name    string
	Image   string
	State   string // running, stopped, created, paused, unknown, or "" with no task
	Pid     uint32
	Created time.Time
	Labels  map[string]string
}

// Inspect reports the container and task state of one sandbox.
func (r *Runtime) Inspect(ctx context.Context, name string) (Info, error) {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return Info{}, fmt.Errorf("inspect %s: %w", name, notFound(err))
	}
	return r.info(ctx, c)
}

// List reports every container carrying the sandbox label.
func (r *Runtime) List(ctx context.Context) ([]Info, error) {
	ctx = r.ns(ctx)
	cs, err := r.client.Containers(ctx, fmt.Sprintf("labels.%q", LabelSandbox))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]Info, 0, len(cs))
	for _, c := range cs {
		i, err := r.info(ctx, c)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}

func (r *Runtime) info(ctx context.Context, c containerd.Container) (Info, error) {
	ci, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return Info{}, fmt.Errorf("inspect %s: %w", c.ID(), err)
	}
	info := Info{Name: c.ID(), Image: ci.Image, Created: ci.CreatedAt, Labels: ci.Labels}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return info, nil
	}
	if err != nil {
		return Info{}, fmt.Errorf("inspect %s: task: %w", c.ID(), err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("inspect %s: task status: %w", c.ID(), err)
	}
	info.State, info.Pid = string(st.Status), task.Pid()
	return info, nil
}

// Spec returns the OCI spec a sandbox was created with.
func (r *Runtime) Spec(ctx context.Context, name string) (*specs.Spec, error) {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("spec of %s: %w", name, notFound(err))
	}
	return c.Spec(ctx)
}

// Limits are the cgroup limits in force, as the kernel reports them through
// containerd (cgroup v1 or v2 alike).
type Limits struct {
	MemoryBytes uint64
	Pids        uint64
	PidsCurrent uint64
}

// Limits reads the memory and pids limits of a running sandbox.
func (r *Runtime) Limits(ctx context.Context, name string) (Limits, error) {
	ctx = r.ns(ctx)
	task, err := r.task(ctx, name)
	if err != nil {
		return Limits{}, err
	}
	m, err := task.Metrics(ctx)
	if err != nil {
		return Limits{}, fmt.Errorf("metrics of %s: %w", name, err)
	}
	v, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return Limits{}, fmt.Errorf("decode metrics of %s: %w", name, err)
	}
	switch s := v.(type) {
	case *cgroup1stats.Metrics:
		var l Limits
		if s.Memory != nil && s.Memory.Usage != nil {
			l.MemoryBytes = s.Memory.Usage.Limit
		}
		if s.Pids != nil {
			l.Pids, l.PidsCurrent = s.Pids.Limit, s.Pids.Current
		}
		return l, nil
	case *cgroup2stats.Metrics:
		var l Limits
		if s.Memory != nil {
			l.MemoryBytes = s.Memory.UsageLimit
		}
		if s.Pids != nil {
			l.Pids, l.PidsCurrent = s.Pids.Limit, s.Pids.Current
		}
		return l, nil
	}
	return Limits{}, fmt.Errorf("metrics of %s: unexpected type %T", name, v)
}

func (r *Runtime) task(ctx context.Context, name string) (containerd.Task, error) {
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, notFound(err))
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: task: %w", name, notFound(err))
	}
	return task, nil
}

func notFound(err error) error {
	if errdefs.IsNotFound(err) {
		return ErrNotFound
	}
	return err
}

// SweepSnapshots removes active snapshots in our namespace that no container
// uses (a create that died half-way), and returns their keys. Committed
// snapshots are image layers and stay.
func (r *Runtime) SweepSnapshots(ctx context.Context) ([]string, error) {
	ctx = r.ns(ctx)
	cs, err := r.client.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	used := map[string]bool{}
	for _, c := range cs {
		if info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata); err == nil {
			used[info.SnapshotKey] = true
		}
	}
	sn := r.client.SnapshotService(r.snapshotter)
	var orphans []string
	err = sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		if i.Kind == snapshots.KindActive && !used[i.Name] {
			orphans = append(orphans, i.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var removed []string
	for _, k := range orphans {
		if err := sn.Remove(ctx, k); err != nil && !errdefs.IsNotFound(err) {
			return removed, fmt.Errorf("remove snapshot %s: %w", k, err)
		}
		removed = append(removed, k)
	}
	return removed, nil
}
