package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// machine is a minimal Debian 12 booted with systemd-nspawn: systemd is its
// PID 1, so clawguard can be installed and driven through systemctl and
// journalctl exactly as on a user's host, on test machines whose own PID 1
// is not systemd. It has its own network namespace with nothing in it but
// loopback until a test wires it up.
type machine struct {
	root    string
	leader  int // the machine's systemd, as this process sees it
	cmd     *exec.Cmd
	console *lockedBuffer
	exited  chan struct{}
}

// The machine's packages beyond minbase: systemd as init, and the host
// packages clawguard runs on (the README's list, less what only tests use).
var machinePackages = []string{"systemd", "systemd-sysv", "dbus", "containerd", "runc", "iptables", "ipset", "iproute2", "libseccomp2"}

const (
	machineSuite    = "bookworm"
	machineCacheDir = "/var/cache/clawguard/machines"
	machinePath     = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// aptSources is the host's Debian sources file, so the machine is built from
// the same archive the host installs from; empty means mmdebstrap's default.
func aptSources() string {
	for _, p := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
			return p
		}
	}
	return ""
}

// machineImage returns a tarball of the machine's root filesystem, built
// with mmdebstrap from Debian's archive the first time and cached by suite,
// package list and sources after that.
func machineImage(t *testing.T) string {
	t.Helper()
	sources := aptSources()
	h := sha256.New()
	fmt.Fprintln(h, machineSuite, strings.Join(machinePackages, ","))
	if sources != "" {
		b, err := os.ReadFile(sources)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	key := hex.EncodeToString(h.Sum(nil))[:12]
	tarball := filepath.Join(machineCacheDir, "debian-"+machineSuite+"-"+key+".tar")
	if _, err := os.Stat(tarball); err == nil {
		return tarball
	}
	if err := os.MkdirAll(machineCacheDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(machineCacheDir, "debian-*.tar"))
	tmp := tarball + ".partial"
	args := []string{"--variant=minbase", "--format=tar", "--include=" + strings.Join(machinePackages, ","), machineSuite, tmp}
	if sources != "" {
		args = append(args, sources)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "mmdebstrap", args...).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("mmdebstrap %s: %v\n%s", strings.Join(args, " "), err, tail(string(out), 40))
	}
	if err := os.Rename(tmp, tarball); err != nil {
		t.Fatal(err)
	}
	for _, o := range old {
		os.Remove(o)
	}
	t.Logf("built the machine's root filesystem in %s (cached as %s)", time.Since(start).Round(time.Second), tarball)
	return tarball
}

// unpackMachine lays the cached root filesystem out in a fresh directory.
func unpackMachine(t *testing.T) string {
	t.Helper()
	tarball := machineImage(t)
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", root, "-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", tarball, err, out)
	}
	return root
}

// makeInstall installs clawguard into root with the Makefile's own install
// target, the steps a user runs, built into a directory of the test's.
func makeInstall(t *testing.T, root string) string {
	t.Helper()
	mod, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "install", "DESTDIR="+root, "BIN="+t.TempDir())
	cmd.Dir = mod
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make install DESTDIR=%s: %v\n%s", root, err, out)
	}
	return string(out)
}

// hostHasSystemd: systemd is this host's PID 1, and nspawn may register a
// scope with it.
func hostHasSystemd() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// bootMachine boots root with systemd-nspawn and waits until its systemd
// reports the system up. Cleanup powers it off and removes what nspawn and
// the machine's runc left in the host's cgroup hierarchies.
func bootMachine(t *testing.T, root, name string, sandboxes ...string) *machine {
	t.Helper()
	// A real host loads these at boot (modules-load.d); a container cannot.
	loadModules(t)
	resolv := filepath.Join(root, "etc", "resolv.conf")
	_ = os.Remove(resolv)
	if err := os.WriteFile(resolv, []byte("nameserver "+fakeDNSAddr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-D", root, "-b", "-M", name, "--private-network", "--resolv-conf=off",
		"--link-journal=no", "--register=no",
		// runc gives every container a session keyring; nspawn's own filter
		// refuses keyctl, which no host does.
		"--system-call-filter=add_key keyctl request_key"}
	var footprint *nspawnFootprint
	if !hostHasSystemd() {
		// Nothing to register a scope with: nspawn runs in the caller's
		// cgroup and leaves its mark on the host's tree (below).
		args = append(args, "--keep-unit")
		footprint = noteFootprint()
	}
	cmd := exec.Command("systemd-nspawn", args...)
	m := &machine{root: root, cmd: cmd, console: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = m.console, m.console
	// The machine must not outlive this test binary, however it ends (a
	// go test timeout runs no cleanup): nspawn dies with it, and its
	// machine with nspawn.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	v1 := v1CgroupPaths(sandboxes)
	if err := cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() { _ = cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() {
		m.poweroff(t)
		for _, p := range v1 {
			_ = os.Remove(p) // the sandbox's, then its parent if that is empty now
		}
		if footprint != nil {
			footprint.restore(t)
		}
		for _, mp := range mountsUnder(root) {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for m.leader == 0 {
		select {
		case <-m.exited:
			t.Fatalf("systemd-nspawn exited while booting:\n%s", tail(m.console.String(), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the machine's systemd did not start in 30s:\n%s", tail(m.console.String(), 40))
		}
		m.leader = findInit(cmd.Process.Pid)
		time.Sleep(50 * time.Millisecond)
	}
	m.writableCgroups(t)
	// Asked too early, systemctl finds no manager to talk to yet and
	// prints nothing at once: ask again until it answers with a state.
	var out, errOut string
	for boot := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		out, errOut, _ = m.runTimeout(t, 90*time.Second, "systemctl", "is-system-running", "--wait")
		if strings.TrimSpace(out) != "" || time.Since(boot) > 90*time.Second {
			break
		}
	}
	if state := strings.TrimSpace(out); state != "running" {
		t.Logf("systemctl is-system-running: %s", errOut)
		failed, _, _ := m.run(t, "systemctl", "--failed", "--no-legend")
		t.Fatalf("the machine did not come up: %q; failed units:\n%s\nconsole:\n%s", state, failed, tail(m.console.String(), 40))
	}
	return m
}

// findInit finds the machine's systemd among the descendants of nspawn.
func findInit(pid int) int {
	queue := []int{pid}
	for len(queue) > 0 && len(queue) < 64 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, c := range strings.Fields(string(b)) {
				child, _ := strconv.Atoi(c)
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child))
				if strings.TrimSpace(string(comm)) == "systemd" {
					return child
				}
				queue = append(queue, child)
			}
		}
	}
	return 0
}

// loadModules loads what deploy/modules-load.d lists, as systemd-modules-load
// does at boot on a real host. A kernel without a modules directory has
// everything built in (these machines' kernels do).
func loadModules(t *testing.T) {
	t.Helper()
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))); errors.Is(err, os.ErrNotExist) {
		return
	}
	mod, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(mod, "deploy", "modules-load.d", "clawguard.conf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if out, err := exec.Command("modprobe", line).CombinedOutput(); err != nil {
			t.Fatalf("modprobe %s: %v: %s", line, err, out)
		}
	}
}

// nspawnFootprint is what systemd-nspawn adds to the host's cgroup tree
// where the host's PID 1 is not systemd: it mounts the unified hierarchy at
// /sys/fs/cgroup/unified if nothing is there, and makes "payload" and
// "supervisor" groups at the root of its hierarchies, whatever cgroup it was
// started in. Noted before boot, so cleanup removes exactly what it added.
type nspawnFootprint struct {
	unifiedMounted, unifiedDir bool
	groups                     map[string]bool // path: existed before
}

const unifiedMount = "/sys/fs/cgroup/unified"

func nspawnGroups() []string {
	var out []string
	for _, base := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/systemd", unifiedMount} {
		for _, g := range []string{"payload", "supervisor"} {
			out = append(out, filepath.Join(base, g))
		}
	}
	return out
}

func noteFootprint() *nspawnFootprint {
	f := &nspawnFootprint{unifiedMounted: isMountPoint(unifiedMount), groups: map[string]bool{}}
	_, err := os.Stat(unifiedMount)
	f.unifiedDir = err == nil
	for _, g := range nspawnGroups() {
		_, err := os.Stat(g)
		f.groups[g] = err == nil
	}
	return f
}

func (f *nspawnFootprint) restore(t *testing.T) {
	for g, existed := range f.groups {
		if !existed {
			removeCgroupTree(g)
		}
	}
	if !f.unifiedMounted && isMountPoint(unifiedMount) {
		// Lazily: the mount may still count as busy for a moment after the
		// machine's last process is gone.
		if err := syscall.Unmount(unifiedMount, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s, which systemd-nspawn mounted: %v", unifiedMount, err)
		}
	}
	if !f.unifiedDir {
		_ = os.Remove(unifiedMount)
	}
}

func isMountPoint(path string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// removeCgroupTree removes a cgroup and its children, deepest first; a
// cgroup directory can only be removed once it is empty of groups and tasks.
func removeCgroupTree(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i])
	}
}

// v1CgroupPaths are where the machine's runc puts a sandbox's cgroups on a
// cgroup v1 host (relative to this process's groups, the roots of the
// machine's cgroup namespace), each followed by its parent when that is
// created for the test: cleanup removes them if a sandbox was not stopped.
func v1CgroupPaths(sandboxes []string) []string {
	if cgroupV2() {
		return nil
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[1] == "" || strings.HasPrefix(f[1], "name=") {
			continue
		}
		parent := filepath.Join("/sys/fs/cgroup", strings.Split(f[1], ",")[0], f[2], "clawguard")
		_, err := os.Stat(parent)
		existed := err == nil
		for _, sb := range sandboxes {
			out = append(out, filepath.Join(parent, sb))
		}
		if !existed {
			out = append(out, parent)
		}
	}
	return out
}

func cgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// writableCgroups: on a cgroup v1 host nspawn mounts the controllers
// read-only, so no container could start inside, which is true of no real
// host. Remount them writable in the machine's mount namespace. On cgroup v2
// nspawn delegates the machine a writable subtree and nothing is needed.
func (m *machine) writableCgroups(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", m.leader))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT TARGET OPTIONS ... - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 3 || g[0] != "cgroup" || strings.Contains(g[2], "name=") {
			continue
		}
		if !strings.Contains(","+f[5]+",", ",ro,") {
			continue
		}
		if out, err := exec.Command("nsenter", "-t", strconv.Itoa(m.leader), "-m", "--", "mount", "-o", "remount,bind,rw", f[4]).CombinedOutput(); err != nil {
			t.Fatalf("remount %s writable in the machine: %v: %s", f[4], err, out)
		}
	}
}

// run runs a command inside the machine, in all its namespaces, with a clean
// environment, as a root login shell there would.
func (m *machine) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return m.runTimeout(t, 2*time.Minute, args...)
}

func (m *machine) runTimeout(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"-t", strconv.Itoa(m.leader), "-a", "--", "env", "-i", machinePath, "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	// nsenter forks into the machine's PID namespace; killing it on timeout
	// leaves its child holding our pipes. Stop waiting for them.
	cmd.WaitDelay = 5 * time.Second
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		code = -1
		e.WriteString(err.Error())
	}
	return o.String(), e.String(), code
}

// must runs a command in the machine and fails the test if it fails.
func (m *machine) must(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, code := m.run(t, args...)
	if code != 0 {
		t.Fatalf("in the machine: %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, stderr)
	}
	return out
}

// poweroff shuts the machine down in order (SIGTERM makes nspawn ask its
// systemd to power off), and kills it if that takes too long: the kernel
// then kills everything in its PID namespace, sandboxes included.
func (m *machine) poweroff(t *testing.T) {
	select {
	case <-m.exited:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return
	case <-time.After(30 * time.Second):
	}
	t.Logf("the machine did not power off in 30s; killing it")
	// Its systemd is in a session of its own: kill it by pid too; the
	// kernel then kills the rest of its PID namespace.
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	if m.leader > 0 {
		_ = syscall.Kill(m.leader, syscall.SIGKILL)
	}
	<-m.exited
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
