package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawguard/clawguard/netrules/nettest"
)

// daemon is a `clawguard daemon` process this test started.
type daemonProc struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
}

// terminate sends SIGTERM and waits for the daemon to exit.
func (d *daemonProc) terminate(t testing.TB) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not exit on SIGTERM:\n%s", d.out.String())
	}
}

func (h *harness) startDaemon(t testing.TB) *daemonProc { return h.startDaemonWith(t, emptyConfig(t)) }

// emptyConfig is a daemon config file with nothing set.
func emptyConfig(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *harness) startDaemonWith(t testing.TB, config string, env ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{out: &lockedBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(h.bin, append(h.globalFlags(), "daemon", "--config", config)...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if len(env) > 0 {
		d.cmd.Env = append(os.Environ(), env...)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			t.Fatalf("daemon exited:\n%s", d.out.String())
		default:
		}
		// The socket accepts connections before the API serves (it is bound
		// first, as the single-instance guard): wait for an answer.
		if h.healthy() {
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("daemon not answering after 30s:\n%s", d.out.String())
	return nil
}

// asNobody is the CLI run as uid and gid 65534 (nogroup). The binary is
// copied where nobody may run it, and the suite's directory opened to
// traversal, so that only the daemon socket's own mode decides.
func (h *harness) asNobody(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	binDir := publicTempDir(t, "cgbin-")
	if err := run("install", "-m", "0755", h.bin, binDir+"/clawguard"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(h.dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(h.dir, 0o700) })
	cmd := exec.Command(binDir+"/clawguard", append(h.globalFlags(), args...)...)
	cmd.Dir = binDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// publicTempDir is a directory every user can read and enter (t.TempDir is
// 0700 under a 0700 parent), removed when the test ends.
func publicTempDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (h *harness) resolvesInSandbox(t testing.TB, name string) bool {
	var r probeResolved
	h.netProbe(t, name, &r, "resolve", "api.example.test")
	return len(r.Addrs) == 1 && r.Addrs[0] == apiAddr
}

// TestDaemonAdoptsDetachedSandboxesAfterACrash: two sandboxes started with
// run --detach; the daemon is SIGKILLed (denied stays denied, nothing
// resolves) and started again: both adopted, the kernel state identical (no
// duplicate rule), DNS answering again.
func TestDaemonAdoptsDetachedSandboxesAfterACrash(t *testing.T) {
	h := env
	d := h.startDaemon(t)
	var names []string
	for _, n := range []string{"daemon-a", "daemon-b"} {
		_, file := h.project(t, profile{Name: n, Extra: egressProfile})
		start := time.Now()
		if _, stderr, code := h.cg("run", "--detach", "--profile", file); code != 0 {
			t.Fatalf("run --detach %s: exit %d: %s\ndaemon:\n%s", n, code, stderr, d.out.String())
		}
		t.Logf("run --detach %s returned in %s", n, time.Since(start).Round(time.Millisecond))
		names = append(names, n)
		t.Cleanup(func() { h.cg("stop", "--timeout", "1s", n) })
	}
	for _, n := range names {
		if st := h.status(t, n); st == nil || st.State != "running" {
			t.Fatalf("%s: %+v", n, st)
		}
		if !h.resolvesInSandbox(t, n) {
			t.Fatalf("%s: the daemon's DNS gate does not answer", n)
		}
	}
	before := nettest.KernelState(t)

	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	mustAnswerFromHost(t, deniedAddr+":443")
	for _, n := range names {
		if c := h.sandboxConnect(t, n, deniedAddr+":443"); c.OK {
			t.Fatalf("%s: denied destination open while the daemon is down", n)
		}
		if h.resolvesInSandbox(t, n) {
			t.Fatalf("%s: a name resolved while the daemon is down", n)
		}
	}

	h.startDaemon(t)
	if after := nettest.KernelState(t); after != before {
		t.Fatalf("kernel state after adoption differs:\n%s", nettest.Diff(before, after))
	}
	for _, n := range names {
		if !h.resolvesInSandbox(t, n) {
			t.Fatalf("%s: DNS does not answer after adoption", n)
		}
		if st := h.status(t, n); st == nil || st.State != "running" {
			t.Fatalf("%s: status after adoption: %+v", n, st)
		}
	}
	if _, stderr, code := h.cg("stop", names[0]); code != 0 {
		t.Fatalf("stop through the daemon: %s", stderr)
	}
	h.assertNothingOf(t, names[0])
}

// TestDaemonAPIRefusesBadInputStrangersAndBrowsers.
func TestDaemonAPIRefusesBadInputStrangersAndBrowsers(t *testing.T) {
	h := env
	h.startDaemon(t)
	dir, _ := h.project(t, profile{Name: "daemon-bad"})
	bad := dir + "/bad.yaml"
	if err := run("sh", "-c", "printf 'name: daemon-bad\\nimage: busybox\\nuser: \"0:0\"\\n' > "+bad); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := h.cg("run", "--detach", "--profile", bad)
	if code != 2 || !strings.Contains(stderr, "user") {
		t.Fatalf("invalid profile through the daemon: exit %d: %s", code, stderr)
	}
	if _, stderr, code := h.cg("stop", "no-such-sandbox"); code != 1 || !strings.Contains(stderr, "no-such-sandbox") {
		t.Fatalf("stop of a missing sandbox: exit %d: %s", code, stderr)
	}
	// A user that is not root cannot reach the socket. The built-in
	// profile: nothing to read from disk, the socket comes first.
	out, err := h.asNobody(t, "run", "--detach").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "socket") || !strings.Contains(string(out), "permission denied") {
		t.Fatalf("a non-root user reached the daemon: %v %s", err, out)
	}
	// A browser-style request is refused even from root.
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.socket())
	}}}
	req, _ := http.NewRequest("GET", "http://clawguard/v1/sandboxes", nil)
	req.Header.Set("Origin", "http://evil.example")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("browser request answered %s", resp.Status)
	}
	// Names that are paths, and bodies past the cap, are refused before
	// anything acts on them; a well-formed unknown name is looked up.
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"DELETE", "/v1/sandboxes/no-such-sandbox", "", http.StatusNotFound},
		{"DELETE", "/v1/sandboxes/..%2F..%2Fstate", "", http.StatusBadRequest},
		{"POST", "/v1/sandboxes/%2E%2E/verify", "", http.StatusBadRequest},
		{"POST", "/v1/sandboxes", `{"dir": "/", "name": "../escape"}`, http.StatusBadRequest},
		{"POST", "/v1/sandboxes", `{"dir": "/` + strings.Repeat("a", 2<<20) + `"}`, http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(c.method, "http://clawguard"+c.path, strings.NewReader(c.body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s (%d-byte body): %s %s, want %d", c.method, c.path, len(c.body), resp.Status, b, c.want)
		}
	}
	if _, stderr, code := h.cg("run", "--detach", "--name", "../escape"); code != 2 || !strings.Contains(stderr, "not a valid name") {
		t.Errorf("run --name ../escape: exit %d: %s", code, stderr)
	}
}

// TestDaemonSIGTERMLeavesSandboxesRunningAndEnforced.
func TestDaemonSIGTERMLeavesSandboxesRunningAndEnforced(t *testing.T) {
	h := env
	names := []string{"daemon-term-a", "daemon-term-b"}
	d := h.startDaemon(t)
	for _, n := range names {
		_, file := h.project(t, profile{Name: n, Extra: egressProfile})
		if _, stderr, code := h.cg("run", "--detach", "--profile", file); code != 0 {
			t.Fatalf("run --detach %s: %s", n, stderr)
		}
		t.Cleanup(func() { h.cg("stop", "--timeout", "1s", n) })
	}
	// Stop, start, stop, start, stop: each stop leaves both running and
	// enforced, each start adopts both (an adopted sandbox once died with
	// the daemon that adopted it).
	for round := 1; round <= 3; round++ {
		d.terminate(t)
		for _, n := range names {
			if st := h.status(t, n); st == nil || st.State != "running" {
				t.Fatalf("round %d: %s after the daemon's SIGTERM: %+v\n%s", round, n, st, d.out.String())
			}
			h.assertEnforced(t, n)
		}
		if round == 3 {
			break
		}
		d = h.startDaemon(t)
		for _, n := range names {
			if !strings.Contains(d.out.String(), "adopted sandbox\" sandbox="+n) {
				t.Fatalf("round %d: the new daemon did not adopt %s:\n%s", round, n, d.out.String())
			}
			var r probeResolved
			h.netProbe(t, n, &r, "resolve", "api.example.test")
			if len(r.Addrs) != 1 || r.Addrs[0] != apiAddr {
				t.Fatalf("round %d: %s's DNS gate after adoption: %+v", round, n, r)
			}
		}
	}
}

// TestSecondDaemonRefusesToStart: two daemons on one state directory would
// both reconcile and adopt; the second exits 1 naming the first.
func TestSecondDaemonRefusesToStart(t *testing.T) {
	h := env
	first := h.startDaemon(t)
	second := exec.Command(h.bin, append(h.globalFlags(), "daemon", "--config", emptyConfig(t), "--socket", filepath.Join(t.TempDir(), "second.sock"))...)
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("second daemon: %v, want exit 1\n%s", err, out)
	}
	if want := fmt.Sprintf("pid %d", first.cmd.Process.Pid); !strings.Contains(string(out), want) {
		t.Fatalf("second daemon's message does not name the first (%s): %s", want, out)
	}
	if !h.healthy() {
		t.Fatal("the first daemon stopped answering")
	}
	first.terminate(t)
}

// TestDaemonStartsDeclaredSandboxesAndRestartsThemOnExit: the config names
// two profiles; both start with the daemon, and the one that exits is
// started again.
func TestDaemonStartsDeclaredSandboxesAndRestartsThemOnExit(t *testing.T) {
	h := env
	_, okFile := h.project(t, profile{Name: "declared-ok"})
	_, crashFile := h.project(t, profile{Name: "declared-crash", Args: []string{"sh", "-c", "sleep 1; exit 3"}})
	config := t.TempDir() + "/config.yaml"
	if err := os.WriteFile(config, []byte("sandboxes:\n  - {profile: "+okFile+"}\n  - {profile: "+crashFile+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := h.startDaemonWith(t, config)
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		<-d.exited
		h.cg("stop", "--timeout", "1s", "declared-ok")
		h.cg("stop", "--timeout", "1s", "declared-crash")
	})
	if st := h.status(t, "declared-ok"); st == nil || st.State != "running" {
		t.Fatalf("declared sandbox not running: %+v\n%s", st, d.out.String())
	}
	starts := func() int {
		b, _ := os.ReadFile(h.stateDir + "/audit.jsonl")
		n := 0
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `"sandbox":"declared-crash"`) && strings.Contains(l, `"kind":"started"`) {
				n++
			}
		}
		return n
	}
	first := starts()
	deadline := time.Now().Add(8 * time.Second)
	for starts() < first+1 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if starts() < first+1 {
		t.Fatalf("the sandbox that exited was not started again (%d starts):\n%s", starts(), d.out.String())
	}
}

// TestDaemonMetricsReportEnforcement: with --metrics-addr the daemon serves
// per-sandbox packet, set and DNS counts on loopback.
func TestDaemonMetricsReportEnforcement(t *testing.T) {
	h := env
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := t.TempDir() + "/config.yaml"
	if err := os.WriteFile(cfg, []byte("metrics_addr: "+addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := h.startDaemonWith(t, cfg)
	t.Cleanup(func() { _ = d.cmd.Process.Signal(syscall.SIGTERM); <-d.exited })
	_, file := h.project(t, profile{Name: "daemon-metrics", Extra: egressProfile})
	if _, stderr, code := h.cg("run", "--detach", "--profile", file); code != 0 {
		t.Fatalf("run --detach: %s", stderr)
	}
	t.Cleanup(func() { h.cg("stop", "--timeout", "1s", "daemon-metrics") })
	h.assertEnforced(t, "daemon-metrics")
	var r probeResolved
	h.netProbe(t, "daemon-metrics", &r, "resolve", "evil.example.org")
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"clawguard_sandboxes 1",
		`clawguard_packets_accepted_total{sandbox="daemon-metrics"}`,
		`clawguard_packets_denied_total{sandbox="daemon-metrics"}`,
		`clawguard_allowlist_set_entries{sandbox="daemon-metrics"}`,
		`clawguard_dns_refused_total{sandbox="daemon-metrics"}`,
		"clawguard_sandbox_start_seconds_count 1",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(body), `clawguard_packets_denied_total{sandbox="daemon-metrics"} 0`) {
		t.Error("denied packets not counted")
	}
}

// TestDaemonStopsSandboxesOnExitWhenAsked: --stop-sandboxes-on-exit stops
// and removes every sandbox when the daemon is stopped.
func TestDaemonStopsSandboxesOnExitWhenAsked(t *testing.T) {
	h := env
	cfg := t.TempDir() + "/config.yaml"
	if err := os.WriteFile(cfg, []byte("stop_sandboxes_on_exit: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := h.startDaemonWith(t, cfg)
	_, file := h.project(t, profile{Name: "daemon-exit"})
	if _, stderr, code := h.cg("run", "--detach", "--profile", file); code != 0 {
		t.Fatalf("run --detach: %s", stderr)
	}
	d.terminate(t)
	h.assertNothingOf(t, "daemon-exit")
}

// TestNobodyCanTakeTheDNSGatePortWhileTheDaemonIsDown: with the daemon
// stopped, a sandbox's rules still send its DNS to the gate's port on the
// gateway address. A local user who bound it would answer the sandbox's
// queries once the daemon is back and fails to adopt. The gate's port is
// privileged: nobody cannot bind it (the control: nobody can bind a port
// above 1024 on the very same address), and the next daemon gets it back.
func TestNobodyCanTakeTheDNSGatePortWhileTheDaemonIsDown(t *testing.T) {
	h := env
	d := h.startDaemon(t)
	_, file := h.project(t, profile{Name: "gate-port", Extra: egressProfile})
	if _, stderr, code := h.cg("run", "--detach", "--profile", file); code != 0 {
		t.Fatalf("run --detach: %s", stderr)
	}
	t.Cleanup(func() { h.cg("stop", "--timeout", "1s", "gate-port") })
	var state struct {
		DNSPort int `json:"dns_port"`
	}
	raw, err := os.ReadFile(filepath.Join(h.stateDir, "sandboxes", "gate-port", "state.json"))
	if err != nil || json.Unmarshal(raw, &state) != nil || state.DNSPort == 0 {
		t.Fatalf("state: %v %s", err, raw)
	}
	if state.DNSPort >= 1024 {
		t.Fatalf("the DNS gate listens on %d, a port any user may bind", state.DNSPort)
	}
	d.terminate(t)

	probe := filepath.Join(publicTempDir(t, "cgprobe-"), "cgprobe")
	if err := run("install", "-m", "0755", h.probe, probe); err != nil {
		t.Fatal(err)
	}
	bindAsNobody := func(port int) (held bool, out string) {
		t.Helper()
		cmd := exec.Command(probe, "bind", fmt.Sprintf("%s:%d", testGW, port))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		b, err := cmd.CombinedOutput()
		return err == nil, string(b)
	}
	if held, out := bindAsNobody(40000 + state.DNSPort); !held {
		t.Fatalf("control: nobody cannot bind a high port on %s either: %s", testGW, out)
	}
	if held, out := bindAsNobody(state.DNSPort); held || !strings.Contains(out, "permission denied") {
		t.Fatalf("nobody bound the gate's port %d while the daemon was down: %s", state.DNSPort, out)
	}
	h.startDaemon(t)
	var r probeResolved
	h.netProbe(t, "gate-port", &r, "resolve", "api.example.test")
	if len(r.Addrs) != 1 || r.Addrs[0] != apiAddr {
		t.Fatalf("the adopted gate does not answer: %+v", r)
	}
}
