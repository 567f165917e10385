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
