package enforce

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawguard/clawguard/netrules/allowlist"
	"github.com/clawguard/clawguard/profiles"

	"github.com/clawguard/clawguard/enforce/egress"
	"github.com/clawguard/clawguard/enforce/enforcetest"
)

// testConfig points the DNS gate at a port where nothing listens: these
// tests never resolve anything.
func testConfig(stateDir string) Config {
	return Config{StateDir: stateDir, DNSUpstreams: []string{"127.0.0.1:9"}}
}

func TestStartRunsStepsInOrderWithTheTaskLast(t *testing.T) {
	w := enforcetest.NewWorld("")
	sup := New(testConfig(t.TempDir()), w, w)
	st := mustStart(t, sup, "a")
	if st.Pid != 42 {
		t.Fatalf("pid %d", st.Pid)
	}
	if want := []string{"image", "network", "create", "start"}; !slices.Equal(w.Calls, want) {
		t.Fatalf("steps %v, want %v", w.Calls, want)
	}
	state, err := sup.layout.read("a")
	if err != nil || state.Status != "running" || state.Pid != 42 {
		t.Fatalf("state %+v, %v", state, err)
	}
}

func TestFailedStartUndoesEveryStep(t *testing.T) {
	for _, failAt := range []string{"image", "network", "create", "start"} {
		t.Run("fail at "+failAt, func(t *testing.T) {
			w := enforcetest.NewWorld(failAt)
			stateDir := t.TempDir()
			sup := New(testConfig(stateDir), w, w)
			_, err := sup.Start(context.Background(), enforcetest.Profile(t, "a"), nil)
			if !errors.Is(err, enforcetest.ErrInjected) {
				t.Fatalf("err = %v", err)
			}
			if len(w.Containers) != 0 || len(w.Tasks) != 0 || len(w.NetNS) != 0 {
				t.Fatalf("left behind: containers %v tasks %v netns %v", w.Containers, w.Tasks, w.NetNS)
			}
			if _, err := os.Stat(filepath.Join(stateDir, "sandboxes", "a")); !os.IsNotExist(err) {
				t.Fatalf("state directory remains: %v", err)
			}
			if !slices.Contains(w.Calls, "delete") || !slices.Contains(w.Calls, "network-teardown") {
				t.Fatalf("rollback skipped a step: %v", w.Calls)
			}
		})
	}
}

func TestInvalidProfileTouchesNothing(t *testing.T) {
	w := enforcetest.NewWorld("")
	stateDir := t.TempDir()
	sup := New(testConfig(stateDir), w, w)
	p := enforcetest.Profile(t, "a")
	p.User = "0:0"
	_, err := sup.Start(context.Background(), p, nil)
	var pe *profiles.Error
	if !errors.As(err, &pe) || !pe.HasField("user") {
		t.Fatalf("err = %v", err)
	}
	if len(w.Calls) != 0 {
		t.Fatalf("steps ran for an invalid profile: %v", w.Calls)
	}
	if entries, _ := os.ReadDir(filepath.Join(stateDir, "sandboxes")); len(entries) != 0 {
		t.Fatalf("state created: %v", entries)
	}
}

func TestNameInUseDoesNotTouchTheExistingSandbox(t *testing.T) {
	w := enforcetest.NewWorld("")
	sup := New(testConfig(t.TempDir()), w, w)
	mustStart(t, sup, "a")
	w.Calls = nil
	_, err := sup.Start(context.Background(), enforcetest.Profile(t, "a"), nil)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("err = %v", err)
	}
	if len(w.Calls) != 0 || !w.Containers["a"] || !w.Tasks["a"] {
		t.Fatalf("existing sandbox disturbed: calls %v", w.Calls)
	}
}

func TestTeardownIsIdempotent(t *testing.T) {
	w := enforcetest.NewWorld("")
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
	w := enforcetest.NewWorld("")
	stateDir := t.TempDir()
	sup := New(testConfig(stateDir), w, w)
	w.Containers["stray"] = true // a container of ours with no state
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

// A wildcard entry shows its bounds, the defaults when the state predates
// them, and how many names the gate holds under it; other entries show none.
func TestStatusShowsEachWildcardsNamesAndBounds(t *testing.T) {
	w := enforcetest.NewWorld("")
	stateDir := t.TempDir()
	sup := New(testConfig(stateDir), w, w)
	w.Containers["a"] = true
	if err := os.MkdirAll(filepath.Join(stateDir, "sandboxes", "a"), 0o700); err != nil {
		t.Fatal(err)
	}
	five := 5
	wild := enforcetest.Allow("*.cdn.example.com", 443)
	wild.MaxNames = &five
	st := &State{Name: "a", Status: "running", IP: netip.MustParseAddr("10.89.0.2"), Egress: profiles.Egress{Allow: []profiles.AllowEntry{
		enforcetest.Allow("api.example.com", 443), wild, enforcetest.Allow("*.Other.example.com", 443),
	}}}
	if err := sup.layout.write(st); err != nil {
		t.Fatal(err)
	}
	snap, err := json.Marshal(egress.Snapshot{Updated: time.Now(), Wildcards: []allowlist.WildcardUse{
		{Host: "*.cdn.example.com", Names: 3, MaxNames: 5, NewNamesPerMinute: 120},
		{Host: "*.other.example.com", Names: 7, MaxNames: 1000, NewNamesPerMinute: 120},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sup.layout.egressFile("a"), snap, 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := sup.Status(context.Background(), "a", time.Now(), false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*WildcardStatus{}
	for _, a := range list[0].Allowlist {
		got[a.Host] = a.Wildcard
	}
	want := map[string]*WildcardStatus{
		"api.example.com":     nil,
		"*.cdn.example.com":   {Names: 3, MaxNames: 5, NewNamesPerMinute: profiles.DefaultNewNamesPerMinute},
		"*.Other.example.com": {Names: 7, MaxNames: profiles.DefaultMaxNames, NewNamesPerMinute: profiles.DefaultNewNamesPerMinute},
	}
	for host, w := range want {
		if g := got[host]; (g == nil) != (w == nil) || (g != nil && *g != *w) {
			t.Errorf("%s: wildcard %+v, want %+v", host, g, w)
		}
	}
}

func TestReconcileKeepsLiveSandboxesAndRemovesTheRest(t *testing.T) {
	w := enforcetest.NewWorld("")
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
	w.Containers["stray"] = true
	rep, err := sup.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Kept, []string{"live"}) {
		t.Fatalf("kept %v", rep.Kept)
	}
	if len(rep.Removed) != 2 || w.Containers["stray"] || !w.Containers["live"] {
		t.Fatalf("removed %v; containers %v", rep.Removed, w.Containers)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "sandboxes", "dead")); !os.IsNotExist(err) {
		t.Fatalf("dead sandbox's state remains: %v", err)
	}
}

// mustStart starts a sandbox on the fakes and closes its gate after the test.
func mustStart(t *testing.T, sup *Supervisor, name string) *Started {
	t.Helper()
	st, err := sup.Start(context.Background(), enforcetest.Profile(t, name), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// A cidr entry over the sandboxes' own subnet would open them to each
// other and to the gateway: refused before anything is made.
func TestACIDROverTheSandboxSubnetIsRefused(t *testing.T) {
	w := enforcetest.NewWorld("")
	s := New(Config{StateDir: t.TempDir(), DNSUpstreams: []string{"127.0.0.1:9"}}, w, w)
	p := enforcetest.Profile(t, "cidr")
	p.Egress.Allow = append(p.Egress.Allow, profiles.AllowEntry{CIDR: "10.89.0.0/16", Ports: []int{22}})
	err := s.Validate(p)
	var pe *profiles.Error
	if !errors.As(err, &pe) || len(pe.Fields) == 0 || !strings.Contains(pe.Fields[0].Problem, "subnet") {
		t.Fatalf("got %v", err)
	}
	p.Egress.Allow[len(p.Egress.Allow)-1].CIDR = "198.51.100.0/24" // control
	if err := s.Validate(p); err != nil {
		t.Fatalf("control: %v", err)
	}
}

// TestACIDROverAnAddressOfTheHostIsRefused: the host's INPUT rules keep
// sandboxes from its services; while a reload has them flushed, a range
// covering the host would be all that decides.
func TestACIDROverAnAddressOfTheHostIsRefused(t *testing.T) {
	w := enforcetest.NewWorld("")
	s := New(Config{StateDir: t.TempDir(), DNSUpstreams: []string{"127.0.0.1:9"}}, w, w)
	own := hostAddrs(w.Gateway())
	if len(own) == 0 {
		t.Fatal("this host has no IPv4 address but loopback: nothing to test against")
	}
	p := enforcetest.Profile(t, "cidr")
	p.Egress.Allow = append(p.Egress.Allow, profiles.AllowEntry{CIDR: netip.PrefixFrom(own[0], 32).String(), Ports: []int{22}})
	var pe *profiles.Error
	if err := s.Validate(p); !errors.As(err, &pe) || !strings.Contains(pe.Error(), "an address of this host") {
		t.Fatalf("a /32 of the host's %s: %v", own[0], err)
	}
}
