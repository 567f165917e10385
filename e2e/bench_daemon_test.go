package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procStats reads a process's resident memory (bytes) and CPU time.
func procStats(b testing.TB, pid int) (rss int64, cpu time.Duration) {
	status := readProcStatus(b, strconv.Itoa(pid))
	kb, _ := strconv.ParseInt(strings.Fields(status["VmRSS"])[0], 10, 64)
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return kb << 10, time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// BenchmarkDaemon measures the daemon: start latency of run --detach against
// a bare ctr run, its memory and idle CPU with 1, 10 and 50 sandboxes, status
// latency with 50, and the time a restart after a crash takes to reconcile
// and adopt 50 sandboxes.
func BenchmarkDaemon(b *testing.B) {
	h := env
	d := h.startDaemon(b)
	defer func() { _ = d.cmd.Process.Signal(syscall.SIGTERM); <-d.exited }()
	// A realistic profile: one allowlisted name, its TTL (300 s) kept.
	_, file := h.project(b, profile{Name: "bench-d", Extra: "egress:\n  allow:\n    - {host: api.example.test, ports: [443]}\n"})
	run := func(name string) time.Duration {
		start := time.Now()
		if _, stderr, code := h.cg("run", "--detach", "--profile", file, "--name", name); code != 0 {
			b.Fatalf("run %s: %s", name, stderr)
		}
		return time.Since(start)
	}
	stop := func(name string) {
		if _, stderr, code := h.cg("stop", "--timeout", "1s", name); code != 0 {
			b.Fatalf("stop %s: %s", name, stderr)
		}
	}
	// A daemon normally has sandboxes: keep one, so the bridge and base
	// chains exist as they would.
	run("bench-anchor")
	img := h.images[probeImage]
	if out, err := exec.Command("ctr", "-a", h.address, "-n", "clawguard", "images", "import", img.archive).CombinedOutput(); err != nil {
		b.Fatalf("import: %v %s", err, out)
	}
	var detach, bare []time.Duration
	for i := 0; i < 20; i++ {
		detach = append(detach, run("bench-round"))
		stop("bench-round")
		bare = append(bare, h.timeCtrRun(b, img.ref, fmt.Sprintf("bare-d%d", i)))
	}
	dMed, dP95 := stats(detach)
	bMed, bP95 := stats(bare)

	pid := d.cmd.Process.Pid
	type level struct {
		n       int
		rss     int64
		cpuPerc float64
	}
	var levels []level
	running := 1
	for _, n := range []int{1, 10, 50} {
		for ; running < n; running++ {
			run(fmt.Sprintf("bench-idle-%d", running))
		}
		time.Sleep(5 * time.Second) // let start-up work settle
		_, c0 := procStats(b, pid)
		time.Sleep(10 * time.Second)
		rss, c1 := procStats(b, pid)
		levels = append(levels, level{n, rss, 100 * float64(c1-c0) / float64(10*time.Second)})
	}
	var statusTimes []time.Duration
	for i := 0; i < 10; i++ {
		start := time.Now()
		if _, stderr, code := h.cg("status", "--json"); code != 0 {
			b.Fatalf("status: %s", stderr)
		}
		statusTimes = append(statusTimes, time.Since(start))
	}
	sMed, _ := stats(statusTimes)

	// Crash and restart with 50 sandboxes: from exec to the API answering,
	// which is after reconcile and the adoption of every sandbox.
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	restart := time.Now()
	d = h.startDaemon(b)
	adopt := time.Since(restart) // startDaemon returns when the API answers
	for i := 1; i < running; i++ {
		stop(fmt.Sprintf("bench-idle-%d", i))
	}
	stop("bench-anchor")

	rows := ""
	for _, l := range levels {
		rows += fmt.Sprintf("| %d | %.1f MB | %.2f%% |\n", l.n, float64(l.rss)/(1<<20), l.cpuPerc)
	}
	writeSection(b, "40-daemon.md", fmt.Sprintf(`## Daemon

Method: `+"`clawguard daemon`"+` on the suite's private containerd, with one sandbox kept running (as a daemon has);
every sandbox allowlists one name of the fake internet (TTL 300 s, so refreshed every 4 minutes).
Start: the wall time of `+"`clawguard run --detach`"+` (a CLI process: profile load, API call, validation, image check,
DNS gate, network attach, secrets, container, resolve, task start) against `+"`ctr run -d`"+` of the same image,
20 interleaved rounds. Memory is the daemon's VmRSS; idle CPU is its user+system time over 10 s, measured 5 s
after the last sandbox started. Status is `+"`clawguard status --json`"+` (a CLI process) with 50 sandboxes, median of 10.
Restart is the time from starting a new daemon after SIGKILL until its API answers, which is after reconcile
and the adoption of every sandbox (DNS gate, rules checked, names resolved again).

| | median | p95 | goal |
|---|---|---|---|
| run --detach → running | %s | %s | |
| ctr run -d (bare) | %s | %s | |
| ratio of medians | %.2f× | | ≤ 1.3× |

| sandboxes | daemon RSS | daemon idle CPU |
|---|---|---|
%s
Goals: RSS under 40 MB at 50 sandboxes, idle CPU under 1%%.

| with 50 sandboxes | measured |
|---|---|
| clawguard status --json (median of 10) | %s |
| restart after SIGKILL: reconcile and adopt all 50 | %s |
`, dMed.Round(time.Millisecond), dP95.Round(time.Millisecond), bMed.Round(time.Millisecond), bP95.Round(time.Millisecond),
		float64(dMed)/float64(bMed), rows, sMed.Round(time.Millisecond), adopt.Round(time.Millisecond)))
}
