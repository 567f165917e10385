// Package e2e runs clawguard for real: a private containerd started here,
// real runc, real namespaces, images built locally. Nothing leaves the
// machine: sandboxes have no route out.
//
// Run it with `sudo make test` (or `go test ./e2e` as root). Without root or a
// prerequisite the suite reports why and does not run, unless CI=true, where
// a missing prerequisite fails the run.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawguard/clawguard/runtime"
)

// env is the suite's shared world, set up once in TestMain.
var env *harness

type harness struct {
	net      *fakeNet
	dir      string // everything the suite creates on disk lives here
	bin      string // clawguard
	probe    string // cgprobe
	address  string // private containerd socket
	stateDir string
	images   map[string]image
	ctrd     *exec.Cmd
}

// image is a locally built archive and the reference it carries.
type image struct{ ref, archive string }

const (
	probeImage = "probe"
	nodeImage  = "node"
	// bareImage holds the probe and nothing else: no shell, no libc.
	bareImage = "bare"
	// The other compatibility workloads: Debian's python3 and git.
	pythonImage = "python"
	gitImage    = "git"
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	if reason := missingPrerequisite(); reason != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "e2e: FAIL: %s (CI=true: prerequisites are mandatory)\n", reason)
			return 1
		}
		fmt.Printf("e2e: not run: %s (run `sudo make test`; under CI=true this is a failure)\n", reason)
		return 0
	}
	h, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: setup: %v\n", err)
		if h != nil {
			h.teardown()
		}
		return 1
	}
	env = h
	code := m.Run()
	if err := h.teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: teardown: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func missingPrerequisite() string {
	if os.Geteuid() != 0 {
		return "needs root (containerd, namespaces, mounts)"
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "ldd", "node", "npm", "ip", "systemd-analyze", "ping", "ipset",
		"systemd-nspawn", "mmdebstrap", "nsenter", "make", "modprobe", "tar"} {
		if _, err := exec.LookPath(b); err != nil {
			return b + " is not installed (make deps installs it)"
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return "/bin/busybox (busybox-static) is not installed"
	}
	return ""
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func setup() (*harness, error) {
	// Short path: containerd's sockets must fit in 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "cge2e-")
	if err != nil {
		return nil, err
	}
	h := &harness{dir: dir, images: map[string]image{}, stateDir: filepath.Join(dir, "state")}
	root, err := moduleRoot()
	if err != nil {
		return h, err
	}
	h.bin, h.probe = filepath.Join(dir, "clawguard"), filepath.Join(dir, "cgprobe")
	cgimage := filepath.Join(dir, "cgimage")
	builds := []struct {
		out, pkg string
		cgo      string
	}{{h.bin, "./cmd/clawguard", "1"}, {h.probe, "./cmd/cgprobe", "0"}, {cgimage, "./cmd/cgimage", "0"}}
	for _, b := range builds {
		// The suite's clawguard can weaken a sandbox on purpose
		// (CLAWGUARD_WEAKEN), to prove verify notices.
		cmd := exec.Command("go", "build", "-tags", "clawguard_weaken", "-o", b.out, b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			return h, fmt.Errorf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	compat := filepath.Join(root, "e2e", "testdata", "compat.js")
	shell := filepath.Join(root, "e2e", "testdata", "compat.sh")
	images := []struct {
		name string
		args []string
	}{
		{probeImage, []string{"-probe", h.probe, "-file", "opt/compat.sh=" + shell + ":755"}},
		{bareImage, []string{"-probe", h.probe, "-busybox", ""}},
		{pythonImage, []string{"-probe", h.probe, "-bin", "/usr/bin/python3.11=usr/bin/python3", "-tree", "usr/lib/python3.11=/usr/lib/python3.11",
			"-file", "opt/compat.py=" + filepath.Join(root, "e2e", "testdata", "compat.py")}},
		{gitImage, []string{"-probe", h.probe, "-bin", "/usr/bin/git", "-bin", "/usr/bin/git=usr/lib/git-core/git",
			"-file", "opt/compat-git.sh=" + filepath.Join(root, "e2e", "testdata", "compat-git.sh") + ":755"}},
		{nodeImage, []string{"-probe", h.probe, "-node", mustLookPath("node"), "-file", "opt/compat.js=" + compat}},
	}
	for _, img := range images {
		ref := "docker.io/clawguard-test/" + img.name + ":e2e"
		archive := filepath.Join(dir, img.name+".tar")
		args := append([]string{"-ref", ref, "-o", archive}, img.args...)
		if out, err := exec.Command(cgimage, args...).CombinedOutput(); err != nil {
			return h, fmt.Errorf("build image %s: %v\n%s", img.name, err, out)
		}
		h.images[img.name] = image{ref: ref, archive: archive}
	}
	if h.net, err = startFakeNet(); err != nil {
		return h, fmt.Errorf("fake internet: %w", err)
	}
	return h, h.startContainerd()
}

// The suite's own bridge and subnet, so it never touches a real clawguard's
// (10.89.251.0/24 overlaps none of the machine's networks).
const (
	testBridge = "cge2e0"
	testSubnet = "10.89.251.0/24"
	testGW     = "10.89.251.1"
)

// socket is the suite's daemon socket, never the host's.
func (h *harness) socket() string { return filepath.Join(h.dir, "cg.sock") }

// globalFlags point the CLI at the suite's containerd, state, network and
// fake upstream DNS server.
func (h *harness) globalFlags() []string {
	return []string{"--containerd-address", h.address, "--state-dir", h.stateDir, "--socket", h.socket(),
		"--bridge", testBridge, "--subnet", testSubnet, "--dns-upstream", fakeDNSAddr + ":53", "--upstream-ca", h.net.api.caFile}
}

func mustLookPath(b string) string {
	p, err := exec.LookPath(b)
	if err != nil {
		panic(err)
	}
	return p
}

func (h *harness) startContainerd() error {
	h.address = filepath.Join(h.dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
`, filepath.Join(h.dir, "ctrd-root"), filepath.Join(h.dir, "ctrd-state"), h.address)
	cfgPath := filepath.Join(h.dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(h.dir, "containerd.log"))
	if err != nil {
		return err
	}
	h.ctrd = exec.Command("containerd", "--config", cfgPath)
	h.ctrd.Stdout, h.ctrd.Stderr = logf, logf
	h.ctrd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := h.ctrd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		rt, err := runtime.Connect(context.Background(), h.address, nil)
		if err == nil {
			rt.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("containerd did not come up in 20s (log: %s)", logf.Name())
}

// teardown stops every sandbox still there, then the containerd this suite
// started (by its PID), and removes the suite's directory.
func (h *harness) teardown() error {
	var errs []error
	if h.ctrd != nil && h.ctrd.Process != nil {
		if rt, err := runtime.Connect(context.Background(), h.address, nil); err == nil {
			if list, err := rt.List(context.Background()); err == nil {
				for _, i := range list {
					if _, stderr, code := h.cg("stop", "--timeout", "1s", i.Name); code != 0 {
						errs = append(errs, fmt.Errorf("stop leftover %s: %s", i.Name, stderr))
					}
				}
			}
			rt.Close()
		}
		_ = h.ctrd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = h.ctrd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = h.ctrd.Process.Kill()
			<-done
		}
	}
	// Snapshots stay mounted only if something went badly wrong; unmount
	// before removing so RemoveAll does not walk into a live filesystem.
	for _, m := range mountsUnder(h.dir) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	if err := os.RemoveAll(h.dir); err != nil {
		errs = append(errs, err)
	}
	if h.net != nil {
		h.net.close()
	}
	return errors.Join(errs...)
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append([]string{f[4]}, out...)
		}
	}
	return out
}

// cg runs the clawguard CLI against the private containerd and state dir.
func (h *harness) cg(args ...string) (stdout, stderr string, code int) {
	return h.cgIn("", args...)
}

func (h *harness) cgIn(dir string, args ...string) (stdout, stderr string, code int) {
	return h.cgRun(dir, nil, args...)
}

// cgWithEnv runs the CLI with extra environment variables.
func (h *harness) cgWithEnv(env []string, args ...string) (stdout, stderr string, code int) {
	return h.cgRun("", env, args...)
}

func (h *harness) cgRun(dir string, env []string, args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append(h.globalFlags(), args...)
	cmd := exec.CommandContext(ctx, h.bin, full...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		e.WriteString(err.Error())
	}
	return o.String(), e.String(), code
}

// profile is a sandbox profile under test; Extra is appended verbatim.
type profile struct {
	Name    string
	Image   string // key of env.images
	Args    []string
	Seccomp string
	Extra   string
	// Mounts are extra lines of the mounts list; Weaken is passed to the
	// run process as CLAWGUARD_WEAKEN.
	Mounts string
	Weaken string
	// RunArgs are extra flags of `clawguard run`.
	RunArgs []string
	// WorkspaceVolume, a size, makes /workspace a volume of that size
	// instead of a bind mount of the project's workspace directory.
	WorkspaceVolume string
}

// project lays out a user's project folder for a profile: a workspace the
// sandbox user owns, a read-only config dir and a private secrets dir.
func (h *harness) project(t testing.TB, p profile) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mkdir := func(name string, mode os.FileMode, uid int) {
		path := filepath.Join(dir, name)
		if err := os.Mkdir(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	mkdir("workspace", 0o755, 1000)
	mkdir("config", 0o755, 0)
	mkdir("secrets", 0o700, 0)
	if err := os.WriteFile(filepath.Join(dir, "secrets", "anthropic_api_key"), []byte(secretValue), 0o600); err != nil {
		t.Fatal(err)
	}
	img := h.images[p.Image]
	if img.ref == "" {
		img = h.images[probeImage]
	}
	args, _ := json.Marshal(p.Args)
	if p.Args == nil {
		args = []byte(`["/usr/local/bin/cgprobe", "sleep"]`)
	}
	seccomp := p.Seccomp
	if seccomp == "" {
		seccomp = "default"
	}
	workspace := "  - {source: ./workspace, target: /workspace, read_only: false}"
	if p.WorkspaceVolume != "" {
		workspace = ""
		p.Extra += "volumes: [{name: workspace, target: /workspace, size: " + p.WorkspaceVolume + "}]\n"
	}
	y := fmt.Sprintf(`name: %s
image: %s
image_archive: %s
args: %s
seccomp: %s
mounts:
%s
  - {source: ./config, target: /home/node/.openclaw, read_only: true}
%s
secrets: {dir: ./secrets}
stop_timeout: 3s
%s`, p.Name, img.ref, img.archive, args, seccomp, workspace, p.Mounts, p.Extra)
	file = filepath.Join(dir, "profile.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

// secretValue is planted in every test sandbox's secrets so tests can look
// for it where it must not be.
const secretValue = "sk-ant-e2e-DO-NOT-LEAK-7f3a9c"

// sandbox is a `clawguard run` in the foreground, as a user would start it.
type sandbox struct {
	name, dir string
	cmd       *exec.Cmd
	out       *lockedBuffer
	exited    chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs the profile in the foreground and waits until the sandbox is
// running. Cleanup interrupts it as Ctrl-C would and checks it went away.
func (h *harness) start(t testing.TB, p profile) *sandbox {
	t.Helper()
	dir, file := h.project(t, p)
	var env []string
	if p.Weaken != "" {
		env = []string{"CLAWGUARD_WEAKEN=" + p.Weaken}
	}
	return h.startFile(t, p.Name, dir, file, env, p.RunArgs...)
}

// startFile runs a profile file in the foreground, as start does.
func (h *harness) startFile(t testing.TB, name, dir, file string, env []string, runArgs ...string) *sandbox {
	t.Helper()
	sb := &sandbox{name: name, dir: dir, out: &lockedBuffer{}, exited: make(chan struct{})}
	sb.cmd = exec.Command(h.bin, append(append(h.globalFlags(), "run", "--profile", file), runArgs...)...)
	sb.cmd.Stdout, sb.cmd.Stderr = sb.out, sb.out
	if env != nil {
		sb.cmd.Env = append(os.Environ(), env...)
	}
	if err := sb.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = sb.cmd.Wait(); close(sb.exited) }()
	t.Cleanup(func() { h.stopSandbox(t, sb) })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-sb.exited:
			t.Fatalf("clawguard run exited before the sandbox was running:\n%s", sb.out.String())
		default:
		}
		if st := h.status(t, name); st != nil && st.State == "running" {
			return sb
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("sandbox %s not running after 60s:\n%s", name, sb.out.String())
	return nil
}

func (h *harness) stopSandbox(t testing.TB, sb *sandbox) {
	select {
	case <-sb.exited:
	default:
		_ = sb.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-sb.exited:
		case <-time.After(30 * time.Second):
			t.Errorf("clawguard run did not stop within 30s of SIGINT:\n%s", sb.out.String())
			_ = sb.cmd.Process.Kill()
			<-sb.exited
		}
	}
	// A crashed supervisor leaves its sandbox; stop cleans up either way.
	if h.status(t, sb.name) != nil {
		if _, stderr, code := h.cg("stop", "--timeout", "1s", sb.name); code != 0 {
			t.Errorf("stop %s after the test: %s", sb.name, stderr)
		}
	}
}

// status returns the sandbox's status, or nil if clawguard knows no such one.
func (h *harness) status(t testing.TB, name string) *statusJSON {
	t.Helper()
	out, _, code := h.cg("status", "--json", name)
	if code != 0 {
		return nil
	}
	var list []statusJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("status --json %s: %v\n%s", name, err, out)
	}
	return &list[0]
}

type statusJSON struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Pid   uint32 `json:"pid"`
	Image string `json:"image"`
}

// exec runs a command in the sandbox through the CLI.
func (h *harness) exec(t testing.TB, name string, args ...string) (string, string, int) {
	t.Helper()
	return h.cg(append([]string{"exec", name, "--"}, args...)...)
}

// probe runs cgprobe CHECK inside the sandbox and decodes its JSON.
func (h *harness) probeJSON(t testing.TB, name, check string, v any) {
	t.Helper()
	out, stderr, code := h.exec(t, name, "/usr/local/bin/cgprobe", check)
	if code != 0 {
		t.Fatalf("cgprobe %s in %s: exit %d: %s", check, name, code, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("cgprobe %s: %v\n%s", check, err, out)
	}
}

func (h *harness) runtime(t testing.TB) *runtime.Runtime {
	t.Helper()
	rt, err := runtime.Connect(context.Background(), h.address, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}
