package daemon

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/enforce/enforcetest"
	"github.com/clawguard/clawguard/runtime"
)

func TestDeclaredSandboxThatKeepsExitingIsGivenUpOn(t *testing.T) {
	w := enforcetest.NewWorld("")
	d := New(enforce.New(testConfig(t.TempDir()), w, w), Config{}, nil)
	now := time.Now()
	d.declared["flappy"] = &declared{profile: "/nonexistent.yaml"}
	for i := 0; i < flapLimit; i++ {
		d.declared["flappy"].restarts = append(d.declared["flappy"].restarts, now.Add(-time.Duration(i)*time.Minute))
	}
	d.restartLater("flappy")
	if !slices.Equal(d.flapping(), []string{"flappy"}) {
		t.Fatalf("flapping %v", d.flapping())
	}
	// Nothing was scheduled: quitting does not wait for a restart.
	close(d.quit)
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("a restart was scheduled for a flapping sandbox")
	}
}

func TestOldRestartsDoNotCountTowardsFlapping(t *testing.T) {
	w := enforcetest.NewWorld("")
	d := New(enforce.New(testConfig(t.TempDir()), w, w), Config{}, nil)
	d.declared["steady"] = &declared{profile: "/nonexistent.yaml"}
	for i := 0; i < flapLimit; i++ {
		d.declared["steady"].restarts = append(d.declared["steady"].restarts, time.Now().Add(-flapWindow-time.Minute))
	}
	d.restartLater("steady")
	if len(d.flapping()) != 0 || len(d.declared["steady"].restarts) != 1 {
		t.Fatalf("flapping %v, restarts %v", d.flapping(), d.declared["steady"].restarts)
	}
	close(d.quit)
	d.wg.Wait()
}

func TestMetricsRefuseNonLoopbackAddresses(t *testing.T) {
	m := newMetrics(New(enforce.New(testConfig(t.TempDir()), enforcetest.NewWorld(""), enforcetest.NewWorld("")), Config{}, nil))
	for _, addr := range []string{"0.0.0.0:9464", "192.0.2.2:9464", "9464", "localhost:9464"} {
		if ln, err := m.listen(addr); err == nil {
			ln.Close()
			t.Errorf("%s accepted", addr)
		}
	}
	ln, err := m.listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

func TestSandboxStartedWhileClosingIsLetGoNotWatched(t *testing.T) {
	w := enforcetest.NewWorld("")
	d := New(enforce.New(testConfig(t.TempDir()), w, w), Config{}, nil)
	d.closing = true
	d.watch(&enforce.Started{Name: "late", Exit: make(chan containerd.ExitStatus)})
	if len(d.running) != 0 {
		t.Fatalf("running %v: a sandbox started during shutdown must be let go, not watched", d.running)
	}
	// Nothing was added: Wait returns at once.
	close(d.quit)
	d.wg.Wait()
}

func TestRunIsRefusedOnceShutdownBegins(t *testing.T) {
	w := enforcetest.NewWorld("")
	d := New(enforce.New(testConfig(t.TempDir()), w, w), Config{SocketGID: -1}, nil)
	d.closing = true
	rec := httptest.NewRecorder()
	d.handler().ServeHTTP(rec, asRoot(httptest.NewRequest("POST", "/v1/sandboxes", strings.NewReader(`{"dir": "/"}`))))
	if rec.Code != http.StatusServiceUnavailable || len(w.Calls) != 0 {
		t.Fatalf("%d %s, calls %v", rec.Code, rec.Body, w.Calls)
	}
}

// exited returns a channel that reports one exit status.
func exited(code uint32, err error) <-chan containerd.ExitStatus {
	c := make(chan containerd.ExitStatus, 1)
	c <- *containerd.NewExitStatus(code, time.Now(), err)
	return c
}

func TestAFailedWaitIsNotAnExit(t *testing.T) {
	tests := []struct {
		name     string
		rewait   func(string) (<-chan containerd.ExitStatus, error)
		wantCode uint32
		wantOK   bool
	}{
		{"the task's real exit comes through a new wait", func(string) (<-chan containerd.ExitStatus, error) { return exited(3, nil), nil }, 3, true},
		{"a task gone while nobody watched has exited", func(string) (<-chan containerd.ExitStatus, error) { return nil, runtime.ErrNotFound }, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := enforcetest.NewWorld("")
			waits := 0
			w.WaitFn = func(name string) (<-chan containerd.ExitStatus, error) {
				waits++
				if waits == 1 {
					return nil, errors.New("connection refused") // containerd still down
				}
				return tt.rewait(name)
			}
			d := New(enforce.New(testConfig(t.TempDir()), w, w), Config{}, nil)
			d.rewait = time.Millisecond
			code, ok := d.awaitExit(&enforce.Started{Name: "agent", Exit: exited(0, errors.New("transport is closing"))})
			if code != tt.wantCode || ok != tt.wantOK || waits != 2 {
				t.Fatalf("code %d ok %v after %d waits; want %d %v after 2", code, ok, waits, tt.wantCode, tt.wantOK)
			}
		})
	}
}

func TestAFailedWaitStopsRetryingWhenTheDaemonQuits(t *testing.T) {
	w := enforcetest.NewWorld("")
	w.WaitFn = func(string) (<-chan containerd.ExitStatus, error) { return nil, errors.New("connection refused") }
	d := New(enforce.New(testConfig(t.TempDir()), w, w), Config{}, nil)
	d.rewait = time.Millisecond
	done := make(chan bool)
	go func() {
		_, ok := d.awaitExit(&enforce.Started{Name: "agent", Exit: exited(0, errors.New("transport is closing"))})
		done <- ok
	}()
	time.Sleep(20 * time.Millisecond)
	close(d.quit)
	select {
	case ok := <-done:
		if ok {
			t.Fatal("reported an exit")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still retrying after quit")
	}
}

// testConfig points the DNS gate at a port where nothing listens: these
// tests never resolve anything.
func testConfig(stateDir string) enforce.Config {
	return enforce.Config{StateDir: stateDir, DNSUpstreams: []string{"127.0.0.1:9"}}
}
