package enforce

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime"
)

// fakeWorld records what exists, so a test can check that a failed start
// leaves nothing. It fails the step named in failAt.
type fakeWorld struct {
	failAt     string
	containers map[string]bool
	tasks      map[string]bool
	netns      map[string]bool
	calls      []string
	// wait, if set, answers Wait (default: a task that never exits).
	wait func(name string) (<-chan containerd.ExitStatus, error)
}

func newFakeWorld(failAt string) *fakeWorld {
	return &fakeWorld{failAt: failAt, containers: map[string]bool{}, tasks: map[string]bool{}, netns: map[string]bool{}}
}

var errInjected = errors.New("injected failure")

func (f *fakeWorld) step(name string) error {
	f.calls = append(f.calls, name)
	if f.failAt == name {
		return errInjected
	}
	return nil
}

func (f *fakeWorld) EnsureImage(context.Context, string, string, runtime.Progress) (string, error) {
	return "present", f.step("image")
}

func (f *fakeWorld) Create(_ context.Context, s runtime.Sandbox) error {
	if err := f.step("create"); err != nil {
		return err
	}
	f.containers[s.Name] = true
	return nil
}

func (f *fakeWorld) Start(_ context.Context, name, _ string) (<-chan containerd.ExitStatus, uint32, error) {
	if err := f.step("start"); err != nil {
		return nil, 0, err
	}
	f.tasks[name] = true
	return make(chan containerd.ExitStatus), 42, nil
}

func (f *fakeWorld) Wait(_ context.Context, name string) (<-chan containerd.ExitStatus, error) {
	if f.wait != nil {
		return f.wait(name)
	}
	return make(chan containerd.ExitStatus), nil
}

func (f *fakeWorld) Stop(_ context.Context, name string, _ time.Duration) error {
	f.calls = append(f.calls, "stop")
	delete(f.tasks, name)
	return nil
}

func (f *fakeWorld) Delete(_ context.Context, name string) error {
	f.calls = append(f.calls, "delete")
	delete(f.tasks, name)
	delete(f.containers, name)
	return nil
}

func (f *fakeWorld) Inspect(_ context.Context, name string) (runtime.Info, error) {
	if !f.containers[name] {
		return runtime.Info{}, runtime.ErrNotFound
	}
	return runtime.Info{Name: name, State: "running"}, nil
}

func (f *fakeWorld) List(context.Context) ([]runtime.Info, error) {
	var out []runtime.Info
	for n := range f.containers {
		out = append(out, runtime.Info{Name: n, State: "running"})
	}
	return out, nil
}

func (f *fakeWorld) Exec(context.Context, string, []string, runtime.ExecOptions) (int, error) {
	return 0, nil
}

func (f *fakeWorld) Limits(context.Context, string) (runtime.Limits, error) {
	return runtime.Limits{}, nil
}
func (f *fakeWorld) Spec(context.Context, string) (*specs.Spec, error) { return &specs.Spec{}, nil }

func (f *fakeWorld) Attach(sb netrules.Sandbox, _ []netrules.Entry) (netrules.Attachment, error) {
	if err := f.step("network"); err != nil {
		return netrules.Attachment{}, err
	}
	f.netns[sb.Name] = true
	return netrules.Attachment{IP: netip.MustParseAddr("10.89.0.2"), Gateway: f.Gateway(), NetNSPath: "/var/run/netns/cg-" + sb.Name}, nil
}

func (f *fakeWorld) Detach(sandbox string) error {
	f.calls = append(f.calls, "network-teardown")
	delete(f.netns, sandbox)
	return nil
}

func (f *fakeWorld) Allow(string, []netrules.Entry) error { return nil }

func (f *fakeWorld) Members(string) ([]netrules.SetMember, error)     { return nil, nil }
func (f *fakeWorld) Counters(string) (netrules.Counters, error)       { return netrules.Counters{}, nil }
func (f *fakeWorld) Rules(string) ([]string, error)                   { return nil, nil }
func (f *fakeWorld) Sweep([]string) ([]string, error)                 { return nil, nil }
func (f *fakeWorld) SweepSnapshots(context.Context) ([]string, error) { return nil, nil }

// Gateway is loopback so the DNS gate can really listen in unit tests.
func (f *fakeWorld) Gateway() netip.Addr { return netip.MustParseAddr("127.0.0.1") }

// testConfig points the DNS gate at a port where nothing listens: these
// tests never resolve anything.
func testConfig(stateDir string) Config {
	return Config{StateDir: stateDir, DNSUpstreams: []string{"127.0.0.1:9"}}
}

func testProfile(t *testing.T, name string) *profiles.Profile {
	t.Helper()
	p, err := profiles.Parse([]byte("name: "+name+"\nimage: docker.io/library/busybox:latest\n"), "test.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStartRunsStepsInOrderWithTheTaskLast(t *testing.T) {
	w := newFakeWorld("")
	sup := New(testConfig(t.TempDir()), w, w)
	st := mustStart(t, sup, "a")
	if st.Pid != 42 {
		t.Fatalf("pid %d", st.Pid)
	}
	if want := []string{"image", "network", "create", "start"}; !slices.Equal(w.calls, want) {
		t.Fatalf("steps %v, want %v", w.calls, want)
	}
	state, err := sup.layout.read("a")
	if err != nil || state.Status != "running" || state.Pid != 42 {
		t.Fatalf("state %+v, %v", state, err)
	}
}

func TestFailedStartUndoesEveryStep(t *testing.T) {
	for _, failAt := range []string{"image", "network", "create", "start"} {
		t.Run("fail at "+failAt, func(t *testing.T) {
			w := newFakeWorld(failAt)
			stateDir := t.TempDir()
			sup := New(testConfig(stateDir), w, w)
			_, err := sup.Start(context.Background(), testProfile(t, "a"), nil)
			if !errors.Is(err, errInjected) {
				t.Fatalf("err = %v", err)
			}
			if len(w.containers) != 0 || len(w.tasks) != 0 || len(w.netns) != 0 {
				t.Fatalf("left behind: containers %v tasks %v netns %v", w.containers, w.tasks, w.netns)
			}
			if _, err := os.Stat(filepath.Join(stateDir, "sandboxes", "a")); !os.IsNotExist(err) {
				t.Fatalf("state directory remains: %v", err)
			}
			if !slices.Contains(w.calls, "delete") || !slices.Contains(w.calls, "network-teardown") {
				t.Fatalf("rollback skipped a step: %v", w.calls)
			}
		})
	}
}

func TestInvalidProfileTouchesNothing(t *testing.T) {
	w := newFakeWorld("")
	stateDir := t.TempDir()
	sup := New(testConfig(stateDir), w, w)
	p := testProfile(t, "a")
	p.User = "0:0"
	_, err := sup.Start(context.Background(), p, nil)
	var pe *profiles.Error
	if !errors.As(err, &pe) || !pe.HasField("user") {
		t.Fatalf("err = %v", err)
	}
	if len(w.calls) != 0 {
		t.Fatalf("steps ran for an invalid profile: %v", w.calls)
	}
	if entries, _ := os.ReadDir(filepath.Join(stateDir, "sandboxes")); len(entries) != 0 {
		t.Fatalf("state created: %v", entries)
	}
}

func TestNameInUseDoesNotTouchTheExistingSandbox(t *testing.T) {
	w := newFakeWorld("")
	sup := New(testConfig(t.TempDir()), w, w)
	mustStart(t, sup, "a")
	w.calls = nil
	_, err := sup.Start(context.Background(), testProfile(t, "a"), nil)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("err = %v", err)
	}
	if len(w.calls) != 0 || !w.containers["a"] || !w.tasks["a"] {
		t.Fatalf("existing sandbox disturbed: calls %v", w.calls)
	}
}

func TestTeardownIsIdempotent(t *testing.T) {
	w := newFakeWorld("")
	sup := New(testConfig(t.TempDir()), w, w)
	mustStart(t, sup, "a")
	for i := 0; i < 2; i++ {
		if err := sup.Teardown(context.Background(), "a"); err != nil {
			t.Fatalf("teardown %d: %v", i, err)
		}
	}
	if sup.Exists(context.Background(), "a") {
		t.Fatal("sandbox still exists")
	}
}

func TestStatusShowsLeftoversOfEitherKind(t *testing.T) {
	w := newFakeWorld("")
	stateDir := t.TempDir()
	sup := New(testConfig(stateDir), w, w)
	w.containers["stray"] = true // a container of ours with no state
	if err := os.MkdirAll(filepath.Join(stateDir, "sandboxes", "ghost"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sup.layout.write(&State{Name: "ghost", Status: "running"}); err != nil {
		t.Fatal(err)
	}
	list, err := sup.Status(context.Background(), "", time.Now(), false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Status{}
	for _, s := range list {
		got[s.Name] = s
	}
	if got["ghost"].State != "missing" || !strings.Contains(got["ghost"].Problem, "clawguard stop ghost") {
		t.Errorf("ghost: %+v", got["ghost"])
	}
	if got["stray"].Problem == "" {
		t.Errorf("stray: %+v", got["stray"])
	}
}

func profilesAllow(host string, port int) profiles.AllowEntry {
	return profiles.AllowEntry{Host: host, Ports: []int{port}}
}

func TestReconcileKeepsLiveSandboxesAndRemovesTheRest(t *testing.T) {
	w := newFakeWorld("")
	stateDir := t.TempDir()
	sup := New(testConfig(stateDir), w, w)
	mustStart(t, sup, "live")
	// A sandbox whose supervisor and task are gone: state only.
	if err := os.MkdirAll(filepath.Join(stateDir, "sandboxes", "dead"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sup.layout.write(&State{Name: "dead", Status: "running", Supervisor: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	// A container labelled as ours that no state knows.
	w.containers["stray"] = true
	rep, err := sup.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Kept, []string{"live"}) {
		t.Fatalf("kept %v", rep.Kept)
	}
	if len(rep.Removed) != 2 || w.containers["stray"] || !w.containers["live"] {
		t.Fatalf("removed %v; containers %v", rep.Removed, w.containers)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "sandboxes", "dead")); !os.IsNotExist(err) {
		t.Fatalf("dead sandbox's state remains: %v", err)
	}
}

// mustStart starts a sandbox on the fakes and closes its gate after the test.
func mustStart(t *testing.T, sup *Supervisor, name string) *Started {
	t.Helper()
	st, err := sup.Start(context.Background(), testProfile(t, name), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}
