package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkStartup measures the time from launching `clawguard run` to the
// sandbox's task running with every control in place (the moment run prints
// "running"), beside a bare `ctr run -d` of the same image on the same
// containerd: no seccomp profile of ours, no secrets, no namespace set-up. It
// runs 10 rounds of each, interleaved, and writes its section for
// docs/benchmarks.md.
func BenchmarkStartup(b *testing.B) {
	h := env
	const rounds = 10
	img := h.images[probeImage]
	if _, err := exec.Command("ctr", "-a", h.address, "-n", "clawguard", "images", "import", img.archive).CombinedOutput(); err != nil {
		b.Fatalf("import: %v", err)
	}
	var cg, bare []time.Duration
	for i := 0; i < rounds; i++ {
		cg = append(cg, h.timeClawguardRun(b, fmt.Sprintf("bench-%d", i)))
		bare = append(bare, h.timeCtrRun(b, img.ref, fmt.Sprintf("bare-%d", i)))
	}
	cgMed, cgP95 := stats(cg)
	bareMed, bareP95 := stats(bare)
	b.ReportMetric(float64(cgMed.Milliseconds()), "clawguard-median-ms")
	b.ReportMetric(float64(bareMed.Milliseconds()), "ctr-median-ms")
	ratio := float64(cgMed) / float64(bareMed)
	table := fmt.Sprintf(`## Start-up: launch to task running

Measured on %s (%s, %d CPUs, %s).

Method: %d interleaved rounds. For clawguard, the wall time from starting `+"`clawguard run --profile ...`"+`
(a fresh process: flag parsing, containerd connection, full profile validation, image check, network
namespace, secret staging on tmpfs, container with the hardened spec and seccomp profile, task start) until it
prints that the sandbox is running. For the baseline, the wall time of `+"`ctr run -d`"+` of the same image (already
unpacked) on the same private containerd: containerd's default spec, no seccomp profile of ours, no secrets, no
namespace set-up. Each sandbox is stopped and removed between rounds, outside the timed part; since it is the
only sandbox, each stop also removes the bridge and base chains, so every clawguard round pays for creating
them again (about 10 ms of its network step) as a single-sandbox user does.

| | median | p95 |
|---|---|---|
| clawguard run | %s | %s |
| ctr run -d (bare) | %s | %s |
| ratio of medians | %.2f× | |
`, time.Now().UTC().Format("2006-01-02"), hostModel(), runtime.NumCPU(), kernel(), rounds,
		cgMed.Round(time.Millisecond), cgP95.Round(time.Millisecond), bareMed.Round(time.Millisecond), bareP95.Round(time.Millisecond), ratio)
	writeSection(b, "10-startup.md", table)
}

func (h *harness) timeClawguardRun(b *testing.B, name string) time.Duration {
	_, file := h.project(b, profile{Name: name})
	cmd := exec.Command(h.bin, append(h.globalFlags(), "run", "--profile", file)...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var took time.Duration
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if strings.Contains(out.String(), "running (pid") {
			took = time.Since(start)
			break
		}
	}
	if took == 0 {
		b.Fatalf("clawguard run did not start:\n%s", out.String())
	}
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	return took
}

func (h *harness) timeCtrRun(b *testing.B, ref, id string) time.Duration {
	start := time.Now()
	if out, err := exec.Command("ctr", "-a", h.address, "-n", "clawguard", "run", "-d", ref, id, "/usr/local/bin/cgprobe", "sleep").CombinedOutput(); err != nil {
		b.Fatalf("ctr run: %v\n%s", err, out)
	}
	took := time.Since(start)
	_ = exec.Command("ctr", "-a", h.address, "-n", "clawguard", "task", "kill", "-s", "KILL", id).Run()
	for i := 0; i < 100; i++ {
		if exec.Command("ctr", "-a", h.address, "-n", "clawguard", "task", "rm", id).Run() == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := exec.Command("ctr", "-a", h.address, "-n", "clawguard", "containers", "rm", id).CombinedOutput(); err != nil {
		b.Fatalf("ctr containers rm: %v\n%s", err, out)
	}
	return took
}

func stats(d []time.Duration) (median, p95 time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	median = s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	idx := (len(s)*95 + 99) / 100
	if idx > len(s) {
		idx = len(s)
	}
	return median, s[idx-1]
}

func hostModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, v, _ := strings.Cut(l, ":")
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown kernel"
	}
	return "Linux " + strings.TrimSpace(string(b))
}

// BenchmarkVerify measures `clawguard verify` on a running sandbox with an
// allowlisted name, a published port and a peer sandbox: 10 runs, each a
// fresh CLI process.
func BenchmarkVerify(b *testing.B) {
	h := env
	const rounds = 10
	h.start(b, profile{Name: "bench-verify", Args: []string{"/usr/local/bin/cgprobe", "listen", "8080"}, Extra: fmt.Sprintf(verifyEgress, nextPublishPort())})
	h.start(b, profile{Name: "bench-verify-peer"})
	args := append([]string{"verify", "bench-verify"}, blockedProbes...)
	var took []time.Duration
	for i := 0; i < rounds; i++ {
		start := time.Now()
		if out, stderr, code := h.cg(args...); code != 0 {
			b.Fatalf("verify: exit %d\n%s%s", code, out, stderr)
		}
		took = append(took, time.Since(start))
	}
	med, p95 := stats(took)
	b.ReportMetric(float64(med.Milliseconds()), "verify-median-ms")
	writeSection(b, "40-verify.md", fmt.Sprintf(`## clawguard verify

Method: %d runs of `+"`clawguard verify`"+` (a fresh process each: containerd connection, probe exec, host checks)
on a running sandbox with one allowlisted name, one published port, two blocked probes and a peer sandbox.
Blocked destinations must time out to count as blocked, so the probe's connection timeout (`+"`--probe-timeout`"+`,
1.5 s; all dials run in parallel) is the floor.

| | median | p95 |
|---|---|---|
| clawguard verify (every check but the OpenClaw ones) | %s | %s |
`, rounds, med.Round(10*time.Millisecond), p95.Round(10*time.Millisecond)))
}
