package enforce

import (
	"slices"
	"testing"
	"time"
)

func TestDeclaredSandboxThatKeepsExitingIsGivenUpOn(t *testing.T) {
	w := newFakeWorld("")
	d := NewDaemon(New(testConfig(t.TempDir()), w, w), DaemonConfig{}, nil)
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
	w := newFakeWorld("")
	d := NewDaemon(New(testConfig(t.TempDir()), w, w), DaemonConfig{}, nil)
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
	m := newMetrics(NewDaemon(New(testConfig(t.TempDir()), newFakeWorld(""), newFakeWorld("")), DaemonConfig{}, nil))
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
