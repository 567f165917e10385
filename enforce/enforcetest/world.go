// Package enforcetest holds the fakes enforce's unit tests, and those of the
// packages built on it, run a supervisor over.
package enforcetest

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/runtime"
)

// World stands in for containerd and the host network (enforce.Containers
// and enforce.Network) in unit tests: it records what exists, so a test can
// check that a failed start leaves nothing, and fails the step named in
// FailAt.
type World struct {
	FailAt     string
	Containers map[string]bool
	Tasks      map[string]bool
	NetNS      map[string]bool
	Calls      []string
	// WaitFn, if set, answers Wait (default: a task that never exits).
	WaitFn func(name string) (<-chan containerd.ExitStatus, error)
}

// NewWorld returns an empty world that fails the step named failAt.
func NewWorld(failAt string) *World {
	return &World{FailAt: failAt, Containers: map[string]bool{}, Tasks: map[string]bool{}, NetNS: map[string]bool{}}
}

// ErrInjected is the error of the step named in FailAt.
var ErrInjected = errors.New("injected failure")

func (f *World) step(name string) error {
	f.Calls = append(f.Calls, name)
	if f.FailAt == name {
		return ErrInjected
	}
	return nil
}

func (f *World) EnsureImage(context.Context, string, *os.File, runtime.Progress) (string, error) {
	return "present", f.step("image")
}

func (f *World) Create(_ context.Context, s runtime.Sandbox) error {
	if err := f.step("create"); err != nil {
		return err
	}
	f.Containers[s.Name] = true
	return nil
}

func (f *World) Start(_ context.Context, name string, _ runtime.Log) (<-chan containerd.ExitStatus, uint32, error) {
	if err := f.step("start"); err != nil {
		return nil, 0, err
	}
	f.Tasks[name] = true
	return make(chan containerd.ExitStatus), 42, nil
}

func (f *World) Wait(_ context.Context, name string) (<-chan containerd.ExitStatus, error) {
	if f.WaitFn != nil {
		return f.WaitFn(name)
	}
	return make(chan containerd.ExitStatus), nil
}

func (f *World) Stop(_ context.Context, name string, _ time.Duration) error {
	f.Calls = append(f.Calls, "stop")
	delete(f.Tasks, name)
	return nil
}

func (f *World) Pause(_ context.Context, name string) error {
	f.Calls = append(f.Calls, "pause")
	return nil
}

func (f *World) Delete(_ context.Context, name string) error {
	f.Calls = append(f.Calls, "delete")
	delete(f.Tasks, name)
	delete(f.Containers, name)
	return nil
}

func (f *World) Inspect(_ context.Context, name string) (runtime.Info, error) {
	if !f.Containers[name] {
		return runtime.Info{}, runtime.ErrNotFound
	}
	return runtime.Info{Name: name, State: "running"}, nil
}

func (f *World) List(context.Context) ([]runtime.Info, error) {
	var out []runtime.Info
	for n := range f.Containers {
		out = append(out, runtime.Info{Name: n, State: "running"})
	}
	return out, nil
}

func (f *World) Exec(context.Context, string, []string, runtime.ExecOptions) (int, error) {
	return 0, nil
}

func (f *World) Limits(context.Context, string) (runtime.Limits, error) {
	return runtime.Limits{}, nil
}
func (f *World) Spec(context.Context, string) (*specs.Spec, error) { return &specs.Spec{}, nil }

func (f *World) Attach(sb netrules.Sandbox, _ []netrules.NetEntry) (netrules.Attachment, error) {
	if err := f.step("network"); err != nil {
		return netrules.Attachment{}, err
	}
	f.NetNS[sb.Name] = true
	return netrules.Attachment{IP: netip.MustParseAddr("10.89.0.2"), Gateway: f.Gateway(), NetNSPath: "/var/run/netns/cg-" + sb.Name}, nil
}

func (f *World) Detach(sandbox string) error {
	f.Calls = append(f.Calls, "network-teardown")
	delete(f.NetNS, sandbox)
	return nil
}

func (f *World) Allow(string, []netrules.Entry) error { return nil }

func (f *World) Members(string) ([]netrules.SetMember, error)    { return nil, nil }
func (f *World) Counters(string) (netrules.Counters, error)      { return netrules.Counters{}, nil }
func (f *World) InnerMissing(netrules.Sandbox) ([]string, error) { return nil, nil }
func (f *World) Rules(string) ([]string, error)                  { return nil, nil }
func (f *World) Sweep([]string) ([]string, error)                { return nil, nil }

// Reassert restores nothing: the fake's rules never change behind its back.
func (f *World) Reassert([]netrules.Sandbox) ([]string, error) { return nil, nil }

// WatchRules polls until ctx ends.
func (f *World) WatchRules(ctx context.Context, poll time.Duration, check func()) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		check()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
func (f *World) SweepSnapshots(context.Context) ([]string, error) { return nil, nil }

// Subnet is where the fake's addresses come from.
func (f *World) Subnet() netip.Prefix { return netip.MustParsePrefix("10.89.0.0/24") }

// Gateway is loopback so the DNS gate can really listen in unit tests.
func (f *World) Gateway() netip.Addr { return netip.MustParseAddr("127.0.0.1") }
