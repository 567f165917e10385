package runtime

import (
	"context"
	"fmt"
	"strconv"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Sandbox is everything runtime needs to create one hardened container. It is
// a plain description: enforce builds it from a profile, runtime knows
// nothing of profiles, networks or firewalls.
type Sandbox struct {
	Name         string
	Image        string // normalized reference
	Args         []string
	Env          []string
	UID, GID     uint32
	ReadOnlyRoot bool
	Capabilities []string // added back to an empty set; normally none
	Seccomp      *specs.LinuxSeccomp
	MemoryBytes  int64
	CPUs         float64
	Pids         int64
	Tmpfs        []Tmpfs
	Binds        []Bind
	Volumes      []Volume
	NetNSPath    string // an existing network namespace to join; empty: a fresh one
	LogPath      string // stdout and stderr of the task, absolute
	// Extra options are applied last. Nothing in clawguard sets them but
	// tests that weaken a sandbox on purpose.
	Extra []oci.SpecOpts
}

// Tmpfs is an in-memory mount; noexec, nosuid and nodev are always added.
type Tmpfs struct {
	Path      string
	SizeBytes int64
	Options   []string
}

// Bind is a host path mounted into the sandbox. Writable binds are always
// noexec; NoExec asks for it on a read-only one too (secrets, data).
type Bind struct {
	Source, Target string
	ReadOnly       bool
	NoExec         bool
}

// Volume is an ext4 filesystem on a block device (a loop device the
// caller attached), mounted by runc inside the sandbox's own mount
// namespace: writable, noexec, nosuid, nodev.
type Volume struct {
	Device, Target string
}

// Sizes of the tmpfs mounts that replace containerd's defaults: /run is only
// for runtime sockets and pid files, /dev/shm for POSIX shared memory.
const (
	runTmpfsBytes   = 16 << 20
	shmTmpfsBytes   = 64 << 20
	cfsPeriodMicros = 100000
)

// SpecOpts returns the composed options that turn containerd's default spec
// into the sandbox's: one option per control, applied in order, each safe to
// apply twice. The image config (entrypoint, env, cwd) comes first so that the
// controls after it win.
func SpecOpts(img oci.Image, s Sandbox) []oci.SpecOpts {
	opts := []oci.SpecOpts{
		oci.WithImageConfigArgs(img, s.Args),
		oci.WithEnv(s.Env),
		oci.WithHostname(s.Name),
		WithUser(s.UID, s.GID),
		WithOnlyCapabilities(s.Capabilities),
		oci.WithNoNewPrivileges,
		WithNoTerminal,
		WithReadonlyRootfs(s.ReadOnlyRoot),
		WithTmpfs("/run", runTmpfsBytes, "mode=755"),
		WithTmpfs("/dev/shm", shmTmpfsBytes, "mode=1777"),
		WithCgroupReadOnly,
	}
	for _, t := range s.Tmpfs {
		opts = append(opts, WithTmpfs(t.Path, t.SizeBytes, t.Options...))
	}
	for _, b := range s.Binds {
		opts = append(opts, WithBind(b))
	}
	for _, v := range s.Volumes {
		opts = append(opts, WithVolume(v))
	}
	opts = append(opts,
		WithResources(s.MemoryBytes, s.CPUs, s.Pids),
		WithNetworkNamespace(s.NetNSPath),
		// containerd adds a cgroup namespace only on cgroup v2 hosts; on v1
		// the sandbox would see the host's cgroup tree.
		oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.CgroupNamespace}),
		WithSeccomp(s.Seccomp),
	)
	return append(opts, s.Extra...)
}

// WithUser runs the process as uid:gid with no supplementary groups.
func WithUser(uid, gid uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if uid == 0 {
			return fmt.Errorf("refusing to run a sandbox as uid 0")
		}
		ensureProcess(s)
		s.Process.User = specs.User{UID: uid, GID: gid}
		return nil
	}
}

// WithOnlyCapabilities sets all five capability sets to exactly caps. With a
// non-root user a capability only survives execve if it is ambient, so the
// ambient set carries the (normally empty) list too.
func WithOnlyCapabilities(caps []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		set := func() []string { return append([]string{}, caps...) }
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding: set(), Effective: set(), Permitted: set(), Inheritable: set(), Ambient: set(),
		}
		return nil
	}
}

// WithNoTerminal keeps the agent off any TTY: no TIOCSTI target, no job control.
func WithNoTerminal(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	ensureProcess(s)
	s.Process.Terminal = false
	return nil
}

// WithReadonlyRootfs sets the root filesystem read-only (or, explicitly, not).
func WithReadonlyRootfs(ro bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Root == nil {
			s.Root = &specs.Root{}
		}
		s.Root.Readonly = ro
		return nil
	}
}

// WithTmpfs mounts a sized tmpfs at dest, replacing any mount already there
// (containerd's default /run and /dev/shm among them). Writable space never
// holds executables, setuid files or devices.
func WithTmpfs(dest string, sizeBytes int64, extra ...string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if sizeBytes <= 0 {
			return fmt.Errorf("tmpfs %s: size must be positive", dest)
		}
		opts := []string{"noexec", "nosuid", "nodev", "size=" + strconv.FormatInt(sizeBytes, 10)}
		hasMode := false
		for _, o := range extra {
			switch o {
			case "noexec", "nosuid", "nodev":
				continue
			}
			if len(o) > 5 && o[:5] == "mode=" {
				hasMode = true
			}
			opts = append(opts, o)
		}
		if !hasMode {
			opts = append(opts, "mode=1777")
		}
		replaceMount(s, specs.Mount{Destination: dest, Type: "tmpfs", Source: "tmpfs", Options: opts})
		return nil
	}
}

// WithBind bind-mounts a host path. Every bind is nosuid and nodev, writable
// ones are also noexec: nothing the agent writes can be executed directly.
func WithBind(b Bind) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		opts := []string{"rbind", "rprivate", "nosuid", "nodev"}
		switch {
		case !b.ReadOnly:
			opts = append(opts, "rw", "noexec")
		case b.NoExec:
			opts = append(opts, "ro", "noexec")
		default:
			opts = append(opts, "ro")
		}
		replaceMount(s, specs.Mount{Destination: b.Target, Type: "bind", Source: b.Source, Options: opts})
		return nil
	}
}

// WithVolume mounts a volume's device. Never on the host: the mount
// exists only in the sandbox's namespace and ends with it.
func WithVolume(v Volume) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		replaceMount(s, specs.Mount{Destination: v.Target, Type: "ext4", Source: v.Device, Options: []string{"rw", "nosuid", "nodev", "noexec"}})
		return nil
	}
}

// WithCgroupReadOnly shows the sandbox its own cgroup, read-only, so runtimes
// such as Node can size themselves to the memory limit.
func WithCgroupReadOnly(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	replaceMount(s, specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
		Options: []string{"ro", "nosuid", "noexec", "nodev", "relatime"}})
	return nil
}

// WithResources sets the memory (swap included, so there is none), CPU quota
// and pids limits.
func WithResources(memoryBytes int64, cpus float64, pids int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if memoryBytes <= 0 || cpus <= 0 || pids <= 0 {
			return fmt.Errorf("resources: memory, cpus and pids must all be positive (got %d, %g, %d)", memoryBytes, cpus, pids)
		}
		ensureResources(s)
		limit, swap := memoryBytes, memoryBytes
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
		quota, period := int64(cpus*cfsPeriodMicros), uint64(cfsPeriodMicros)
		if s.Linux.Resources.CPU == nil {
			s.Linux.Resources.CPU = &specs.LinuxCPU{}
		}
		s.Linux.Resources.CPU.Quota, s.Linux.Resources.CPU.Period = &quota, &period
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pids}
		return nil
	}
}

// WithNetworkNamespace joins an existing network namespace (path) or, with an
// empty path, keeps the fresh one containerd's default spec asks for.
func WithNetworkNamespace(path string) oci.SpecOpts {
	return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
}

// WithSeccomp installs the seccomp profile. A nil profile is an error: there
// is no unconfined sandbox.
func WithSeccomp(p *specs.LinuxSeccomp) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if p == nil {
			return fmt.Errorf("no seccomp profile: refusing to create an unconfined sandbox")
		}
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		s.Linux.Seccomp = p
		return nil
	}
}

func replaceMount(s *oci.Spec, m specs.Mount) {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == m.Destination {
			s.Mounts[i] = m
			return
		}
	}
	s.Mounts = append(s.Mounts, m)
}

func ensureProcess(s *oci.Spec) {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
}

func ensureResources(s *oci.Spec) {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
}
