package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawguard/clawguard/netrules/nettest"
)

type health struct {
	Sandboxes  int `json:"sandboxes"`
	Goroutines int `json:"goroutines"`
	OpenFiles  int `json:"open_files"`
}

// healthy reports whether the daemon's API answers.
func (h *harness) healthy() bool {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.socket())
	}}}
	resp, err := client.Get("http://clawguard/v1/health")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (h *harness) health(t testing.TB) health {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.socket())
	}}}
	resp, err := client.Get("http://clawguard/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var hl health
	if err := json.NewDecoder(resp.Body).Decode(&hl); err != nil {
		t.Fatal(err)
	}
	return hl
}

// TestDaemonChurnLeaksNothing: 100 run/stop cycles, then 20 concurrent runs
// and stops, through the daemon: no error, addresses reused, and afterwards
// the kernel, containerd and the daemon (descriptors, goroutines) are as
// before.
func TestDaemonChurnLeaksNothing(t *testing.T) {
	h := env
	h.startDaemon(t)
	_, file := h.project(t, profile{Name: "churn", Extra: egressProfile})
	cycle := func(name string) (string, error) {
		if _, stderr, code := h.cg("run", "--detach", "--profile", file, "--name", name); code != 0 {
			return "", fmt.Errorf("run %s: %s", name, stderr)
		}
		st := h.sandboxIP(t, name)
		if _, stderr, code := h.cg("stop", "--timeout", "1s", name); code != 0 {
			return "", fmt.Errorf("stop %s: %s", name, stderr)
		}
		return st, nil
	}
	// One warm-up cycle, so lazily created state is not counted as a leak.
	if _, err := cycle("churn-warm"); err != nil {
		t.Fatal(err)
	}
	before := nettest.KernelState(t)
	base := h.health(t)
	if base.OpenFiles == 0 || base.Goroutines == 0 {
		t.Fatalf("health reports nothing (%+v): the leak check would prove nothing", base)
	}

	start := time.Now()
	for i := 0; i < 100; i++ {
		ip, err := cycle("churn")
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if ip != "10.89.251.2" {
			t.Fatalf("cycle %d: address %s, want the first address reused", i, ip)
		}
	}
	t.Logf("100 run/stop cycles in %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	ips := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("churn-c%d", i)
			if _, stderr, code := h.cg("run", "--detach", "--profile", file, "--name", name); code != 0 {
				errs <- fmt.Errorf("run %s: %s", name, stderr)
				return
			}
			ips <- h.sandboxIP(t, name)
		}()
	}
	wg.Wait()
	close(errs)
	close(ips)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for ip := range ips {
		if seen[ip] {
			t.Errorf("address %s given to two sandboxes", ip)
		}
		seen[ip] = true
	}
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("churn-c%d", i)
			if _, stderr, code := h.cg("stop", "--timeout", "1s", name); code != 0 {
				t.Errorf("stop %s: %s", name, stderr)
			}
		}()
	}
	wg.Wait()
	t.Logf("20 concurrent runs and stops in %s", time.Since(start).Round(time.Millisecond))

	// Gates and readers end asynchronously after a stop: give them a moment.
	var after health
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		after = h.health(t)
		if after.Sandboxes == 0 && after.Goroutines <= base.Goroutines+2 && after.OpenFiles <= base.OpenFiles+2 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("daemon before %+v, after %+v", base, after)
	if after.Sandboxes != 0 || after.Goroutines > base.Goroutines+2 || after.OpenFiles > base.OpenFiles+2 {
		t.Fatalf("daemon leaked: before %+v, after %+v", base, after)
	}
	if k := nettest.KernelState(t); k != before {
		t.Fatalf("kernel state after churn differs:\n%s", nettest.Diff(before, k))
	}
	if inv := h.inventory(t); len(inv.Containers)+len(inv.Snapshots)+len(inv.NetNS)+len(inv.State) != 0 {
		t.Fatalf("left behind: %+v", inv)
	}
}

// TestIptablesLockHolderDelaysButDoesNotBreakAStart: another program holds
// the xtables lock while a sandbox starts; the start waits and completes
// with every rule in place.
func TestIptablesLockHolderDelaysButDoesNotBreakAStart(t *testing.T) {
	h := env
	f, err := os.OpenFile("/run/xtables.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(1500 * time.Millisecond)
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		close(released)
	}()
	sb := h.start(t, profile{Name: "lock-contention", Extra: egressProfile})
	<-released
	var r probeResolved
	h.netProbe(t, sb.name, &r, "resolve", "api.example.test")
	if len(r.Addrs) != 1 {
		t.Fatalf("resolve: %+v", r)
	}
	h.assertEnforced(t, sb.name)
}
