package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawguard/clawguard/enforce"
)

// floodBytes is what the flooding agent writes to stdout: 25 times the cap
// under test.
const floodBytes = 50 << 20

// floodArgs print floodBytes, then a last line, then idle until stopped.
func floodArgs(last string) []string {
	return []string{"sh", "-c", "yes 'the agent prints in a loop, and on, and on' | head -c " + strconv.Itoa(floodBytes) +
		"; echo " + last + "; trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"}
}

// logFiles is every file of a sandbox's log (current, rotated, previous
// run's) and their total size.
func logFiles(h *harness, name string) (map[string]os.FileInfo, int64) {
	// The pattern is well formed: Glob cannot fail.
	matches, _ := filepath.Glob(enforce.LogPathIn(h.stateDir, name) + "*")
	files := map[string]os.FileInfo{}
	var total int64
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			continue // rotated away between the glob and the stat
		}
		files[filepath.Base(m)] = fi
		total += fi.Size()
	}
	return files, total
}

// waitForLog polls `clawguard logs NAME` until it shows want.
func waitForLog(t *testing.T, h *harness, name, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var out, stderr string
	for time.Now().Before(deadline) {
		var code int
		out, stderr, code = h.cg("logs", name)
		if code == 0 && strings.Contains(out, want) {
			return out
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("`clawguard logs %s` does not show %q within %s (stderr %q; %d bytes of output, ending %q)",
		name, want, timeout, stderr, len(out), tail(out, 5))
	return ""
}

// TestAFloodingAgentCannotFillTheDisk: an agent that writes 50 MB to stdout
// with `logs: {max_size: 1M, keep: 1}` leaves at most 2 MB of log on the
// host at any moment, keeps running, and `clawguard logs` still shows its
// newest output; a sandbox beside it is untouched. The control: the same
// agent with a cap above the flood leaves all of it on disk, so it is the
// cap, not a short flood, that bounds the log.
func TestAFloodingAgentCannotFillTheDisk(t *testing.T) {
	h := env

	t.Run("control: a cap above the flood keeps all of it", func(t *testing.T) {
		const name = "log-flood-control"
		sb := h.start(t, profile{Name: name, Args: floodArgs("CONTROL-DONE"), Extra: "logs: {max_size: 64M, keep: 0}\n"})
		waitForLog(t, h, name, "CONTROL-DONE", 3*time.Minute)
		if _, total := logFiles(h, name); total < floodBytes {
			t.Fatalf("control: only %d bytes of log for a %d-byte flood: the agent did not flood, so the capped run would prove nothing", total, floodBytes)
		}
		// Stopped before the capped run, so the two floods do not compete.
		h.stopSandbox(t, sb)
	})

	const (
		name      = "log-flood"
		neighbour = "log-neighbour"
		capBytes  = 2 << 20 // (keep+1) * max_size
	)
	nb := h.start(t, profile{Name: neighbour, Args: []string{"sh", "-c", "echo neighbour-is-fine; trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"}})
	waitForLog(t, h, neighbour, "neighbour-is-fine", 30*time.Second)

	sb := h.start(t, profile{Name: name, Args: floodArgs("FLOOD-DONE"), Extra: "logs: {max_size: 1M, keep: 1}\n"})

	// Watch the disk while the agent floods.
	var (
		mu       sync.Mutex
		peak     int64
		peakSeen map[string]os.FileInfo
	)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			files, total := logFiles(h, name)
			mu.Lock()
			if total > peak {
				peak, peakSeen = total, files
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	out := waitForLog(t, h, name, "FLOOD-DONE", 3*time.Minute)
	close(stop)
	<-watched

	mu.Lock()
	defer mu.Unlock()
	if peak > capBytes {
		names := []string{}
		for n, fi := range peakSeen {
			names = append(names, n+"="+strconv.Itoa(int(fi.Size())))
		}
		t.Fatalf("%d bytes of log on disk at the peak, cap %d: %v", peak, capBytes, names)
	}
	files, total := logFiles(h, name)
	if total > capBytes {
		t.Fatalf("%d bytes of log on disk after the flood, cap %d", total, capBytes)
	}
	for n, fi := range files {
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", n, fi.Mode().Perm())
		}
	}
	if _, ok := files[name+".log.1"]; !ok {
		t.Errorf("no rotated file beside the log: %v", files)
	}
	if len(out) > capBytes {
		t.Errorf("`clawguard logs` printed %d bytes, more than is kept", len(out))
	}
	if !strings.Contains(out, "the agent prints in a loop") {
		t.Errorf("`clawguard logs` lacks the flood's own lines: %q", tail(out, 5))
	}

	// The agent still runs, and so does its neighbour, with its log.
	for _, n := range []string{name, neighbour} {
		if st := h.status(t, n); st == nil || st.State != "running" {
			t.Fatalf("%s is not running after the flood: %+v", n, st)
		}
		if _, stderr, code := h.exec(t, n, "true"); code != 0 {
			t.Fatalf("exec in %s after the flood: exit %d: %s", n, code, stderr)
		}
	}
	if out, _, _ := h.cg("logs", neighbour); !strings.Contains(out, "neighbour-is-fine") {
		t.Errorf("the neighbour's log lost its output: %q", out)
	}
	h.stopSandbox(t, sb)
	h.stopSandbox(t, nb)
	// The shim stopped the log writer with the task; the cap held to the end.
	if _, total := logFiles(h, name); total > capBytes {
		t.Fatalf("%d bytes of log on disk after the stop, cap %d", total, capBytes)
	}
}
