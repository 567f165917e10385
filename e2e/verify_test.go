package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/verify"
)

// verifyEgress allowlists one fake API and publishes one port, so that the
// allowlist and published checks have something to prove.
const verifyEgress = `egress:
  allow:
    - {host: api.example.test, ports: [443]}
publish: ["127.0.0.1:%d:8080"]
`

// blockedProbes are destinations in the fake internet the sandbox must not
// reach: one on the documentation range, one private.
var blockedProbes = []string{"--blocked-probe", deniedAddr + ":80", "--blocked-probe", privateAddr + ":80"}

type verification struct {
	Sandbox string          `json:"sandbox"`
	Passed  bool            `json:"passed"`
	Results []verify.Result `json:"results"`
}

// verifySandbox runs `clawguard verify --json` and decodes the result.
func (h *harness) verifySandbox(t *testing.T, name string, extra ...string) (verification, int) {
	t.Helper()
	args := append(append([]string{"verify", name, "--json"}, blockedProbes...), extra...)
	out, stderr, code := h.cg(args...)
	var v verification
	if err := json.Unmarshal([]byte(out), &v); err != nil || (code != 0 && len(v.Results) == 0) {
		t.Fatalf("verify %s: exit %d: %v\nstdout: %s\nstderr: %s", name, code, err, out, stderr)
	}
	return v, code
}

func (v verification) with(status verify.Status) []string {
	var ids []string
	for _, r := range v.Results {
		if r.Status == status {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// warnings are the WARN results but disk's, which a profile with a writable
// host directory earns by its own choice (the directory has no size cap).
func (v verification) warnings() []string {
	var ids []string
	for _, id := range v.with(verify.Warn) {
		if id != "disk" {
			ids = append(ids, id)
		}
	}
	return ids
}

func (v verification) explain() string {
	var b strings.Builder
	for _, r := range v.Results {
		if r.Status != verify.Pass {
			b.WriteString("  " + string(r.Status) + " " + r.ID + ": expected " + r.Expected + "; seen " + r.Seen + "\n")
		}
	}
	return b.String()
}

var publishPort = 18900

func nextPublishPort() int {
	publishPort++
	return publishPort
}

func TestVerifyPassesOnEveryTestImage(t *testing.T) {
	for _, img := range []string{bareImage, probeImage, nodeImage} {
		t.Run(img, func(t *testing.T) {
			name := "verify-" + img
			env.start(t, profile{Name: name, Image: img, Args: []string{"/usr/local/bin/cgprobe", "listen", "8080"},
				Extra: fmt.Sprintf(verifyEgress, nextPublishPort())})
			// A second sandbox, so "other sandboxes unreachable" has one to try.
			env.start(t, profile{Name: name + "-peer", Image: probeImage})
			v, code := env.verifySandbox(t, name)
			if code != 0 || !v.Passed || len(v.with(verify.Fail)) > 0 {
				t.Fatalf("verify exited %d, failing %v:\n%s", code, v.with(verify.Fail), v.explain())
			}
			if warn := v.warnings(); len(warn) > 0 {
				t.Errorf("warnings where every check has something to test: %v\n%s", warn, v.explain())
			}
			for _, r := range v.Results {
				if r.ID == "other-sandboxes" && !strings.Contains(r.Seen, ":1") {
					t.Errorf("other-sandboxes tried no peer: %s", r.Seen)
				}
			}
		})
	}
}

func TestVerifyTableAndExitStatus(t *testing.T) {
	env.start(t, profile{Name: "verify-table"})
	out, stderr, code := env.cg(append([]string{"verify", "verify-table"}, blockedProbes...)...)
	if code != 0 {
		t.Fatalf("verify exited %d: %s%s", code, out, stderr)
	}
	for _, want := range []string{"CHECK", "RESULT", "EXPECTED", "SEEN", "syscalls", "PASS", "checks,"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if _, stderr, code := env.cg("verify", "no-such-sandbox"); code == 0 || !strings.Contains(stderr, "no-such-sandbox") {
		t.Errorf("verify of a missing sandbox: exit %d, %s", code, stderr)
	}
}

// TestEachWeakenedControlFailsItsCheck breaks one control at a time, after
// clawguard applied them all, and checks that verify fails exactly the
// checks of that control. The unweakened sandboxes of
// TestVerifyPassesOnEveryTestImage are the control case.
func TestEachWeakenedControlFailsItsCheck(t *testing.T) {
	// A directory of the host's disk the sandbox user may write to.
	hostDir := t.TempDir()
	for _, d := range []string{filepath.Dir(hostDir), hostDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(hostDir, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		weaken string
		fails  []string
		// volume makes the workspace a volume of that size; extra is
		// added to the profile.
		volume, extra string
	}{
		{weaken: "cap", fails: []string{"capabilities"}},
		// Root without capabilities is just another user: it neither owns
		// the workspace nor may read the agent's secrets.
		{weaken: "root", fails: []string{"user", "workspace", "secrets"}},
		{weaken: "netraw", fails: []string{"capabilities", "raw-sockets"}},
		{weaken: "cpu", fails: []string{"cpu"}},
		{weaken: "shmexec", fails: []string{"run-shm", "exec-writable"}},
		{weaken: "nnp", fails: []string{"no-new-privs"}},
		// Without seccomp, memfd_create works and a binary runs from it.
		{weaken: "seccomp", fails: []string{"seccomp", "syscalls", "memfd-exec"}},
		{weaken: "rootfs", fails: []string{"rootfs"}},
		{weaken: "tmpexec", fails: []string{"tmpfs", "exec-writable"}},
		{weaken: "procsys", fails: []string{"proc-sys", "masked-paths"}},
		// /proc/kcore exists only on kernels built with it; timer_list always.
		{weaken: "timerlist", fails: []string{"masked-paths"}},
		{weaken: "pids", fails: []string{"pids"}},
		{weaken: "memory", fails: []string{"memory"}},
		{weaken: "hostpid", fails: []string{"namespaces"}},
		{weaken: "socket=" + env.address, fails: []string{"runtime-sockets"}},
		// The host's layer alone still holds on a quiet host: only the
		// check of the sandbox's namespace can tell.
		{weaken: "inner-layer", fails: []string{"second-layer"}},
		// The workspace on the host's disk instead of its volume.
		{weaken: "volume=" + hostDir, fails: []string{"disk"}, volume: "32M"},
		// TLS straight to the CDN: another name is served at the
		// allowlisted name's address; the second layer lacks the rules
		// that send TLS ports to the gate.
		{weaken: "name-gate", fails: []string{"second-layer", "name-gate"}, extra: nameGateProfile},
		// The key staged as it is, no broker: the key is in the sandbox,
		// it has no CA of its own, and a foreign key is not refused.
		{weaken: "credentials", fails: []string{"credentials"}, extra: brokerProfile("log")},
	} {
		id, _, _ := strings.Cut(tc.weaken, "=")
		t.Run(id, func(t *testing.T) {
			name := "weak-" + id
			env.start(t, profile{Name: name, Weaken: tc.weaken, WorkspaceVolume: tc.volume, Extra: tc.extra})
			v, code := env.verifySandbox(t, name)
			if got := v.with(verify.Fail); code != 1 || !slices.Equal(got, tc.fails) {
				t.Fatalf("weakened %s: exit %d, failing %v, want %v\n%s", tc.weaken, code, got, tc.fails, v.explain())
			}
		})
	}
}

func TestVerifyFailsOnAnAddressOutsideTheAllowlist(t *testing.T) {
	env.start(t, profile{Name: "weak-set"})
	// The control: verified as is, the blocked probe is held.
	if v, code := env.verifySandbox(t, "weak-set"); code != 0 {
		t.Fatalf("before the set was changed: exit %d\n%s", code, v.explain())
	}
	// Into both layers' sets: the host's and the mirror in the sandbox's
	// own namespace, each of which would hold the address alone.
	for _, in := range [][]string{nil, inSandboxNS("weak-set")} {
		if err := run(append(in, "ipset", "add", netrules.SetName("weak-set"), deniedAddr+",tcp:80")...); err != nil {
			t.Fatal(err)
		}
	}
	v, code := env.verifySandbox(t, "weak-set")
	if got := v.with(verify.Fail); code != 1 || !slices.Equal(got, []string{"egress-blocked", "egress-set"}) {
		t.Fatalf("exit %d, failing %v\n%s", code, got, v.explain())
	}
}

func TestVerifyFailsOnAPublishedPortOpenBeyondLoopback(t *testing.T) {
	port := nextPublishPort()
	env.start(t, profile{Name: "weak-publish", Args: []string{"/usr/local/bin/cgprobe", "listen", "8080"}, Extra: fmt.Sprintf(verifyEgress, port)})
	// Someone also listens on every IPv6 address on the published port.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(t.Context(), "tcp6", "[::]:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	v, code := env.verifySandbox(t, "weak-publish")
	if got := v.with(verify.Fail); code != 1 || !slices.Equal(got, []string{"published"}) {
		t.Fatalf("exit %d, failing %v\n%s", code, got, v.explain())
	}
}

func TestVerifyFailsOnASecretInTheEnvironment(t *testing.T) {
	env.start(t, profile{Name: "weak-env", Extra: "env: {NOTE: " + secretValue + "}\n"})
	v, code := env.verifySandbox(t, "weak-env")
	if got := v.with(verify.Fail); code != 1 || !slices.Equal(got, []string{"secrets-env"}) {
		t.Fatalf("exit %d, failing %v\n%s", code, got, v.explain())
	}
}

// openClawProject lays the hardened OpenClaw configuration into a project
// directory the way `clawguard profile init` does, then lets the test
// change it.
func openClawProject(t *testing.T, edit func(dir string)) profile {
	t.Helper()
	cfg := t.TempDir()
	files, err := profiles.BuiltinFiles(profiles.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	for rel, b := range files {
		path := filepath.Join(cfg, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if edit != nil {
		edit(cfg)
	}
	return profile{
		Mounts: "  - {source: " + filepath.Join(cfg, "config") + ", target: /etc/openclaw, read_only: true}",
		Extra:  "agent: openclaw\n",
	}
}

func TestVerifyJudgesTheOpenClawConfiguration(t *testing.T) {
	replace := func(file, old, new string) func(string) {
		return func(dir string) {
			path := filepath.Join(dir, "config", file)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), old) {
				t.Fatalf("%s has no %q", file, old)
			}
			if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		edit  func(string)
		fails []string
	}{
		{"as shipped", nil, nil},
		{"ask off", replace("openclaw.json", `"ask": "always"`, `"ask": "off"`), []string{"openclaw-exec"}},
		{"unrecorded command", replace("exec-approvals.json", `{"pattern": "env"}`, `{"pattern": "curl"}`), []string{"openclaw-allowlist"}},
		{"browser on", replace("openclaw.json", `"browser": {"enabled": false}`, `"browser": {"enabled": true}`), []string{"openclaw-browser"}},
		{"a channel", replace("openclaw.json", `"channels": {}`, `"channels": {"telegram": {"enabled": true}}`), []string{"openclaw-channels"}},
		{"skills installable", replace("openclaw.json", `"installPolicy": {"enabled": true}`, `"installPolicy": {"enabled": false}`), []string{"openclaw-skills"}},
		{"transcripts off", replace("openclaw.json", `"level": "debug"`, `"level": "info"`), []string{"openclaw-transcripts"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			p := openClawProject(t, tc.edit)
			p.Name = "oc-" + strings.ReplaceAll(tc.name, " ", "-")
			env.start(t, p)
			v, _ := env.verifySandbox(t, p.Name)
			if got := v.with(verify.Fail); !slices.Equal(got, tc.fails) {
				t.Fatalf("failing %v, want %v\n%s", got, tc.fails, v.explain())
			}
			ran := 0
			for _, r := range v.Results {
				if strings.HasPrefix(r.ID, "openclaw-") {
					ran++
				}
			}
			if ran != 7 {
				t.Errorf("%d OpenClaw checks ran, want 7", ran)
			}
		})
	}
}

func TestRunVerifyKeepsASandboxThatPasses(t *testing.T) {
	sb := env.start(t, profile{Name: "runverify-ok", RunArgs: append([]string{"--verify"}, blockedProbes...)})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(sb.out.String(), "none failed") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(sb.out.String(), "none failed") || env.status(t, "runverify-ok") == nil {
		t.Fatalf("run --verify did not report a pass or did not keep the sandbox:\n%s", sb.out.String())
	}
}

func TestRunVerifyStopsASandboxThatFails(t *testing.T) {
	_, file := env.project(t, profile{Name: "runverify"})
	out, stderr, code := env.cgWithEnv([]string{"CLAWGUARD_WEAKEN=cap"}, append([]string{"run", "--verify", "--profile", file}, blockedProbes...)...)
	if code != 1 || !strings.Contains(stderr, "capabilities") || !strings.Contains(stderr, "FAIL") {
		t.Fatalf("run --verify on a weakened sandbox: exit %d\n%s%s", code, out, stderr)
	}
	if env.status(t, "runverify") != nil {
		t.Fatal("the failed sandbox is still there")
	}
}

// TestAllowlistChangesAreRecordedAndAccepted changes the allowlist through
// the CLI and checks that verify accepts the recorded command, then that it
// refuses one added behind the CLI's back.
func TestAllowlistChangesAreRecordedAndAccepted(t *testing.T) {
	p := openClawProject(t, nil)
	p.Name = "oc-allowlist"
	dir, file := env.project(t, p)
	if out, stderr, code := env.cg("allowlist", "add", "jq", "--profile", file, "--reason", "parse API output", "--risk", "Medium: reads what it is given"); code != 0 {
		t.Fatalf("allowlist add: exit %d\n%s%s", code, out, stderr)
	}
	if _, stderr, code := env.cg("allowlist", "add", "curl", "--profile", file, "--reason", "x"); code != 2 || !strings.Contains(stderr, "--risk") {
		t.Errorf("add without --risk: exit %d: %s", code, stderr)
	}
	log, err := os.ReadFile(filepath.Join(dir, profiles.ChangeLogFile))
	if err != nil || !strings.Contains(string(log), "| add | jq | parse API output | Medium: reads what it is given |") {
		t.Fatalf("change log: %v\n%s", err, log)
	}
	env.startFile(t, p.Name, dir, file, nil)
	v, _ := env.verifySandbox(t, p.Name)
	for _, r := range v.Results {
		if r.ID == "openclaw-allowlist" && (r.Status != verify.Pass || !strings.Contains(r.Seen, "jq")) {
			t.Fatalf("after allowlist add: %s %s", r.Status, r.Seen)
		}
	}
	out, _, code := env.cg("allowlist", "list", "--profile", file)
	if code != 0 || !strings.Contains(out, "jq") || strings.Contains(out, "not in the change log") {
		t.Errorf("allowlist list: exit %d\n%s", code, out)
	}
}

// TestDetachedRunVerifies covers run --detach --verify: the daemon starts
// the sandbox, the CLI verifies it, and stops it through the daemon when a
// check fails.
func TestDetachedRunVerifies(t *testing.T) {
	for _, tc := range []struct {
		name, weaken string
		code         int
	}{
		{"detach-verify-ok", "", 0},
		{"detach-verify-weak", "CLAWGUARD_WEAKEN=nnp", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var denv []string
			if tc.weaken != "" {
				denv = append(denv, tc.weaken)
			}
			d := env.startDaemonWith(t, emptyConfig(t), denv...)
			defer d.terminate(t)
			_, file := env.project(t, profile{Name: tc.name})
			out, stderr, code := env.cg(append([]string{"run", "--detach", "--verify", "--profile", file}, blockedProbes...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, stderr)
			}
			running := env.status(t, tc.name) != nil
			if running != (tc.code == 0) {
				t.Fatalf("sandbox left running: %v (exit %d)\n%s", running, code, stderr)
			}
			if running {
				if _, stderr, code := env.cg("stop", tc.name); code != 0 {
					t.Fatalf("stop: %s", stderr)
				}
			} else if !strings.Contains(stderr, "no-new-privs") {
				t.Errorf("the failing check is not shown:\n%s", stderr)
			}
		})
	}
}

// inSandboxNS prefixes a command so that it runs in the sandbox's network
// namespace: where its second layer is.
func inSandboxNS(name string) []string {
	return []string{"ip", "netns", "exec", netrules.NetNSName(name)}
}

// TestNetworkWeakeningsFailTheirCheck breaks one network control at a time
// in the kernel, behind clawguard's back, on a sandbox verified clean first.
// Each weakening opens both layers, the host's and the one in the
// sandbox's own namespace: either alone would still hold.
func TestNetworkWeakeningsFailTheirCheck(t *testing.T) {
	// inner opens the second layer's OUTPUT to dst before its jump, which
	// verify reports too.
	inner := func(t *testing.T, name string, dst ...string) {
		rule := append([]string{"OUTPUT", "-m", "comment", "--comment", "e2e weakening"}, append(dst, "-j", "ACCEPT")...)
		mustRun(t, append(inSandboxNS(name), append([]string{"iptables", "-I"}, rule...)...)...)
	}
	for _, tc := range []struct {
		name   string
		weaken func(t *testing.T, name string)
		fails  []string
	}{
		{"metadata", func(t *testing.T, name string) {
			for _, in := range [][]string{nil, inSandboxNS(name)} {
				mustRun(t, append(in, "ipset", "add", netrules.SetName(name), metadataAddr+",tcp:80")...)
			}
		}, []string{"egress-set", "metadata", "private-ranges"}},
		{"direct-dns", func(t *testing.T, name string) {
			for _, in := range [][]string{nil, inSandboxNS(name)} {
				mustRun(t, append(in, "ipset", "add", netrules.SetName(name), fakeDNSAddr+",udp:53")...)
			}
		}, []string{"egress-set", "dns-direct"}},
		{"ipv6", func(t *testing.T, name string) {
			mustRun(t, "ip", "netns", "exec", netrules.NetNSName(name), "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
		}, []string{"ipv6"}},
		{"host-ports", func(t *testing.T, name string) {
			rule := []string{"INPUT", "-i", testBridge, "-p", "tcp", "-m", "comment", "--comment", "e2e weakening", "-j", "ACCEPT"}
			mustRun(t, append([]string{"iptables", "-I"}, rule...)...)
			t.Cleanup(func() { mustRun(t, append([]string{"iptables", "-D"}, rule...)...) })
			inner(t, name, "-p", "tcp")
		}, []string{"second-layer", "host-ports"}},
		{"other-sandboxes", func(t *testing.T, name string) {
			peer := name + "-peer"
			for _, n := range []string{name, peer} {
				mustRun(t, "bridge", "link", "set", "dev", netrules.VethName(n), "isolated", "off")
			}
			rule := []string{"FORWARD", "-i", testBridge, "-o", testBridge, "-m", "comment", "--comment", "e2e weakening", "-j", "ACCEPT"}
			mustRun(t, append([]string{"iptables", "-I"}, rule...)...)
			t.Cleanup(func() { mustRun(t, append([]string{"iptables", "-D"}, rule...)...) })
			inner(t, name, "-d", testSubnet)
			// And the peer's, which lets nothing in but replies.
			mustRun(t, append(inSandboxNS(peer), "iptables", "-I", "INPUT", "-s", testSubnet, "-m", "comment", "--comment", "e2e weakening", "-j", "ACCEPT")...)
		}, []string{"second-layer", "other-sandboxes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "net-" + tc.name
			// The firewall guard would undo a foreign rule above ours
			// within milliseconds (TestAFirewallReloadIsUndone): off
			// here, where the weakening is the point.
			env.start(t, profile{Name: name, Weaken: "firewall-guard"})
			env.start(t, profile{Name: name + "-peer", Weaken: "firewall-guard"})
			if v, code := env.verifySandbox(t, name); code != 0 {
				t.Fatalf("before the weakening: exit %d\n%s", code, v.explain())
			}
			tc.weaken(t, name)
			v, code := env.verifySandbox(t, name)
			if got := v.with(verify.Fail); code != 1 || !slices.Equal(got, tc.fails) {
				t.Fatalf("exit %d, failing %v, want %v\n%s", code, got, tc.fails, v.explain())
			}
		})
	}
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	if err := run(args...); err != nil {
		t.Fatal(err)
	}
}

// TestTheSocketGroupVerifiesThroughTheDaemon runs verify as an unprivileged
// member of the daemon's socket group: the daemon does the work.
func TestTheSocketGroupVerifiesThroughTheDaemon(t *testing.T) {
	h := env
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("socket_group: nogroup\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := h.startDaemonWith(t, cfg)
	defer d.terminate(t)
	h.start(t, profile{Name: "verify-group"})

	out, err := h.asNobody(t, "verify", "verify-group", "--json").Output()
	var v verification
	if jerr := json.Unmarshal(out, &v); err != nil || jerr != nil || !v.Passed {
		t.Fatalf("verify as a socket-group member: %v %v\n%s", err, jerr, out)
	}
	// Blocked probes are dialled by the host as root: a member may not
	// aim them (root may, as every other verify test does).
	if out, err := h.asNobody(t, append([]string{"verify", "verify-group"}, blockedProbes...)...).CombinedOutput(); err == nil || !strings.Contains(string(out), "only root may name blocked probes") {
		t.Fatalf("a member aimed the host's dials: %v\n%s", err, out)
	}
	if out, err := h.asNobody(t, "status", "verify-group", "--json").Output(); err != nil || !strings.Contains(string(out), "verify-group") {
		t.Fatalf("status as a socket-group member: %v\n%s", err, out)
	}
}

// TestTheSocketGroupCannotActAsRoot: a member of the socket group asks the
// root daemon to run a sandbox as another user's uid and a privileged group
// (disk, 6) with a writable mount of a directory it owns, where an image
// could leave a setgid-disk shell; to stop root's sandbox; to reconcile.
// Each is refused and changes nothing. The control: root may run the very
// same profile, so the refusal is about the caller.
func TestTheSocketGroupCannotActAsRoot(t *testing.T) {
	h := env
	d := h.startDaemonWith(t, writeConfig(t, "socket_group: nogroup\n"))
	defer d.terminate(t)
	h.start(t, profile{Name: "group-victim"})

	// The member's own project, which it can read.
	dir := publicTempDir(t, "cgattack-")
	attack := filepath.Join(dir, "attack.yaml")
	img := h.images[probeImage]
	y := fmt.Sprintf(`name: group-attack
image: %s
image_archive: %s
args: ["/usr/local/bin/cgprobe", "sleep"]
user: "1000:6"
mounts:
  - {source: ./drop, target: /drop, read_only: false}
stop_timeout: 2s
`, img.ref, img.archive)
	if err := os.WriteFile(attack, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "drop"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "drop"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"run as uid 1000, gid disk", []string{"run", "--detach", "--profile", attack}},
		{"stop root's sandbox", []string{"stop", "group-victim"}},
		{"reconcile", []string{"reconcile"}},
	} {
		out, err := h.asNobody(t, c.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "only root may") {
			t.Errorf("%s as a socket-group member: %v\n%s", c.name, err, out)
		}
	}
	if st := h.status(t, "group-attack"); st != nil {
		t.Errorf("the refused run left a sandbox: %+v", st)
	}
	if st := h.status(t, "group-victim"); st == nil || st.State != "running" {
		t.Errorf("root's sandbox after the refused stop: %+v", st)
	}
	// Control: root runs the same profile through the same daemon.
	if _, stderr, code := h.cg("run", "--detach", "--profile", attack); code != 0 {
		t.Fatalf("control: root could not run the profile either: %s", stderr)
	}
	h.cg("stop", "--timeout", "1s", "group-attack")
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
