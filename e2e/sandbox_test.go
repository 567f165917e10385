package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawguard/clawguard/seccomp"
)

// Shapes of cgprobe's JSON (cmd/cgprobe).
type (
	probeIdentity struct {
		UID, GID                               int
		CapEff, CapPrm, CapBnd, CapAmb, CapInh string
		NoNewPrivs, Seccomp, Hostname          string
	}
	probeMount struct {
		FSType         string
		Options, Super []string
	}
	probeFS struct {
		Mounts                                 map[string]probeMount
		WriteRoot, WriteTmp, WriteWorkDir      string
		ExecFromTmp, ExecFromShm, ExecFromWork string
		MountAttempt, ReadOnlyProcS            string
	}
	probeSecret struct {
		Name, Mode string
		UID, GID   uint32
		Readable   bool
		Bytes      int
	}
	probeLimits struct{ MemoryBytes, PidsMax, CPUQuota string }
	probeNet    struct {
		Interfaces []string
		Connect    string
	}
	probeSyscall struct{ Name, Errno string }
	probeFork    struct {
		TasksBefore, Forked int
		Errno               string
	}
)

const zeroCaps = "0000000000000000"

// TestThreatModelChecksFromInside asserts THREAT-MODEL.md §4 checks 1-5, 8
// and 10 from inside a running sandbox, with the probe as the agent would
// see things.
func TestThreatModelChecksFromInside(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "inside"})

	var id probeIdentity
	h.probeJSON(t, sb.name, "identity", &id)
	var fs probeFS
	h.probeJSON(t, sb.name, "fs", &fs)
	var secrets []probeSecret
	h.probeJSON(t, sb.name, "secrets", &secrets)
	var lim probeLimits
	h.probeJSON(t, sb.name, "limits", &lim)
	var nw probeNet
	h.probeJSON(t, sb.name, "net", &nw)

	mountHas := func(target string, opts ...string) error {
		m, ok := fs.Mounts[target]
		if !ok {
			return fmt.Errorf("%s is not a mount", target)
		}
		all := append(append([]string{}, m.Options...), m.Super...)
		for _, o := range opts {
			found := false
			for _, a := range all {
				if a == o {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("%s lacks %s (options %v %v)", target, o, m.Options, m.Super)
			}
		}
		return nil
	}
	checks := []struct {
		name string
		ok   func() error
	}{
		{"1 non-root user 1000:1000", func() error {
			if id.UID != 1000 || id.GID != 1000 {
				return fmt.Errorf("uid:gid %d:%d", id.UID, id.GID)
			}
			return nil
		}},
		{"2 root filesystem is read-only", func() error {
			if fs.WriteRoot != "EROFS" {
				return fmt.Errorf("write to / gave %q, want EROFS", fs.WriteRoot)
			}
			return mountHas("/", "ro")
		}},
		{"3 workspace is writable", func() error {
			if fs.WriteWorkDir != "" {
				return fmt.Errorf("write to /workspace: %s", fs.WriteWorkDir)
			}
			return nil
		}},
		{"4 /tmp is a 100m noexec tmpfs", func() error {
			if fs.WriteTmp != "" {
				return fmt.Errorf("write to /tmp: %s", fs.WriteTmp)
			}
			return mountHas("/tmp", "noexec", "nosuid", "nodev", "size=102400k")
		}},
		{"4 /run is a small noexec tmpfs", func() error { return mountHas("/run", "noexec", "nosuid", "nodev", "size=16384k") }},
		{"4 /dev/shm is a small noexec tmpfs", func() error { return mountHas("/dev/shm", "noexec", "nosuid", "nodev", "size=65536k") }},
		{"4 a binary copied to a writable place cannot run", func() error {
			for place, res := range map[string]string{"/tmp": fs.ExecFromTmp, "/dev/shm": fs.ExecFromShm} {
				if !strings.Contains(res, "permission denied") {
					return fmt.Errorf("exec from %s: %q", place, res)
				}
			}
			// The workspace is noexec too (the probe may write there).
			return mountHas("/workspace", "noexec", "nosuid", "nodev")
		}},
		{"5 no capabilities in any set", func() error {
			for set, v := range map[string]string{"CapEff": id.CapEff, "CapPrm": id.CapPrm, "CapBnd": id.CapBnd, "CapAmb": id.CapAmb, "CapInh": id.CapInh} {
				if v != zeroCaps {
					return fmt.Errorf("%s = %s", set, v)
				}
			}
			return nil
		}},
		{"no new privileges and seccomp filtering", func() error {
			if id.NoNewPrivs != "1" || id.Seccomp != "2" {
				return fmt.Errorf("NoNewPrivs %s Seccomp %s", id.NoNewPrivs, id.Seccomp)
			}
			return nil
		}},
		{"mount is refused", func() error {
			if fs.MountAttempt != "EPERM" {
				return fmt.Errorf("mount gave %q", fs.MountAttempt)
			}
			return nil
		}},
		{"/proc/sys is read-only", func() error {
			if fs.ReadOnlyProcS != "EROFS" {
				return fmt.Errorf("write to /proc/sys gave %q", fs.ReadOnlyProcS)
			}
			return nil
		}},
		{"own hostname", func() error {
			if id.Hostname != "inside" {
				return fmt.Errorf("hostname %q", id.Hostname)
			}
			return nil
		}},
		{"8 secret mounted read-only, 0400, owned by the sandbox user", func() error {
			if len(secrets) != 1 {
				return fmt.Errorf("secrets %+v", secrets)
			}
			s := secrets[0]
			if s.Name != "anthropic_api_key" || s.Mode != "0400" || s.UID != 1000 || s.GID != 1000 || !s.Readable || s.Bytes != len(secretValue) {
				return fmt.Errorf("secret %+v", s)
			}
			return mountHas("/run/secrets/anthropic_api_key", "ro", "noexec", "nosuid", "nodev")
		}},
		{"8 secret value is readable by the agent", func() error {
			out, stderr, code := h.exec(t, sb.name, "cat", "/run/secrets/anthropic_api_key")
			if code != 0 || out != secretValue {
				return fmt.Errorf("cat: %d %q %s", code, out, stderr)
			}
			return nil
		}},
		{"10 memory limit is 1G, pids 100, cpu 1.0 as seen inside", func() error {
			if lim.MemoryBytes != strconv.Itoa(1<<30) || lim.PidsMax != "100" {
				return fmt.Errorf("limits %+v", lim)
			}
			if lim.CPUQuota != "100000" && lim.CPUQuota != "100000 100000" {
				return fmt.Errorf("cpu quota %q", lim.CPUQuota)
			}
			return nil
		}},
		{"network: loopback and eth0 only; nothing allowlisted, so nothing reachable", func() error {
			if len(nw.Interfaces) != 2 || nw.Interfaces[0] != "lo" || nw.Interfaces[1] != "eth0" || nw.Connect == "" {
				return fmt.Errorf("net %+v", nw)
			}
			return nil
		}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if err := c.ok(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestThreatModelChecksFromHost asserts the same controls from outside: the
// kernel's view of the agent process, the spec containerd holds, the cgroup
// limits as containerd reads them, and the workspace on the host.
func TestThreatModelChecksFromHost(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "host-view"})
	st := h.status(t, sb.name)
	if st.Pid == 0 {
		t.Fatal("no pid in status")
	}
	pid := strconv.Itoa(int(st.Pid))
	status := readProcStatus(t, pid)
	rt := h.runtime(t)

	t.Run("1 agent runs as uid and gid 1000", func(t *testing.T) {
		if f := strings.Fields(status["Uid"]); len(f) < 4 || f[0] != "1000" || f[1] != "1000" || f[2] != "1000" || f[3] != "1000" {
			t.Fatalf("Uid: %s", status["Uid"])
		}
		if f := strings.Fields(status["Gid"]); len(f) < 1 || f[0] != "1000" {
			t.Fatalf("Gid: %s", status["Gid"])
		}
	})
	t.Run("5 kernel reports no capabilities, no new privileges, seccomp filter", func(t *testing.T) {
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"} {
			if status[k] != zeroCaps {
				t.Errorf("%s = %s", k, status[k])
			}
		}
		if status["NoNewPrivs"] != "1" || status["Seccomp"] != "2" {
			t.Errorf("NoNewPrivs %s Seccomp %s", status["NoNewPrivs"], status["Seccomp"])
		}
	})
	t.Run("8 secret value is in neither the spec nor the environment", func(t *testing.T) {
		spec, err := rt.Spec(context.Background(), sb.name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(spec)
		if bytes.Contains(b, []byte(secretValue)) {
			t.Fatal("secret value in the container spec")
		}
		environ, err := os.ReadFile("/proc/" + pid + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(environ, []byte(secretValue)) {
			t.Fatal("secret value in /proc/<pid>/environ")
		}
		out, _, _ := h.exec(t, sb.name, "cat", "/proc/1/environ")
		if strings.Contains(out, secretValue) {
			t.Fatal("secret value in /proc/1/environ inside the sandbox")
		}
	})
	t.Run("8 secret value is in no state or log file", func(t *testing.T) {
		err := filepath.Walk(h.stateDir, func(path string, info os.FileInfo, err error) error {
			if err != nil || !info.Mode().IsRegular() || strings.Contains(path, "/secrets/") {
				return nil
			}
			b, _ := os.ReadFile(path)
			if bytes.Contains(b, []byte(secretValue)) {
				return fmt.Errorf("secret value in %s", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(sb.out.String(), secretValue) {
			t.Fatal("secret value in clawguard run's output")
		}
	})
	t.Run("spec keeps masked and read-only paths and has no terminal", func(t *testing.T) {
		spec, err := rt.Spec(context.Background(), sb.name)
		if err != nil {
			t.Fatal(err)
		}
		if len(spec.Linux.MaskedPaths) == 0 || len(spec.Linux.ReadonlyPaths) == 0 {
			t.Fatalf("masked %v readonly %v", spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths)
		}
		if !containsStr(spec.Linux.MaskedPaths, "/proc/kcore") || !containsStr(spec.Linux.ReadonlyPaths, "/proc/sys") {
			t.Fatalf("masked %v readonly %v", spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths)
		}
		if spec.Process.Terminal || !spec.Root.Readonly || !spec.Process.NoNewPrivileges {
			t.Fatalf("terminal %v readonly root %v nnp %v", spec.Process.Terminal, spec.Root.Readonly, spec.Process.NoNewPrivileges)
		}
		var netns *specs.LinuxNamespace
		for i := range spec.Linux.Namespaces {
			if spec.Linux.Namespaces[i].Type == specs.NetworkNamespace {
				netns = &spec.Linux.Namespaces[i]
			}
		}
		if netns == nil || netns.Path != "/var/run/netns/cg-"+sb.name {
			t.Fatalf("network namespace %+v", netns)
		}
	})
	t.Run("10 memory and pids limits through containerd", func(t *testing.T) {
		l, err := rt.Limits(context.Background(), sb.name)
		if err != nil {
			t.Fatal(err)
		}
		if l.MemoryBytes != 1<<30 || l.Pids != 100 {
			t.Fatalf("limits %+v", l)
		}
	})
	t.Run("10 cpu quota in the task's cgroup", func(t *testing.T) {
		quota, period := cpuLimit(t, pid)
		if quota != 100000 || period != 100000 {
			t.Fatalf("cpu quota %d period %d, want 100000/100000", quota, period)
		}
	})
	t.Run("3 a file written in the workspace appears on the host", func(t *testing.T) {
		if _, stderr, code := h.exec(t, sb.name, "sh", "-c", "echo from-sandbox > /workspace/hello.txt"); code != 0 {
			t.Fatalf("write: %s", stderr)
		}
		b, err := os.ReadFile(filepath.Join(sb.dir, "workspace", "hello.txt"))
		if err != nil || string(b) != "from-sandbox\n" {
			t.Fatalf("host sees %q, %v", b, err)
		}
	})
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func readProcStatus(t testing.TB, pid string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// cpuLimit finds the task's cpu cgroup (v1 or v2) through /proc/<pid>/cgroup
// and /proc/self/mountinfo, and reads its quota and period.
func cpuLimit(t *testing.T, pid string) (int64, int64) {
	t.Helper()
	cg, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mountOf := func(fstype, opt string) string {
		for _, line := range strings.Split(string(mi), "\n") {
			_, after, ok := strings.Cut(line, " - ")
			if !ok {
				continue
			}
			f := strings.Fields(line)
			a := strings.Fields(after)
			if len(a) >= 3 && a[0] == fstype && (opt == "" || containsStr(strings.Split(a[2], ","), opt)) {
				return f[4]
			}
		}
		return ""
	}
	for _, line := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			if root := mountOf("cgroup2", ""); root != "" {
				if b, err := os.ReadFile(filepath.Join(root, parts[2], "cpu.max")); err == nil {
					var q, p int64
					fmt.Sscanf(string(b), "%d %d", &q, &p)
					return q, p
				}
			}
			continue
		}
		if containsStr(strings.Split(parts[1], ","), "cpu") {
			root := mountOf("cgroup", "cpu")
			dir := filepath.Join(root, parts[2])
			read := func(f string) int64 {
				b, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
				return v
			}
			return read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")
		}
	}
	t.Fatalf("no cpu cgroup for pid %s in:\n%s", pid, cg)
	return 0, 0
}

// TestForkBombStopsAtPidsLimit is check 9: fork until the kernel refuses.
func TestForkBombStopsAtPidsLimit(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "forkbomb"})
	var fb probeFork
	h.probeJSON(t, sb.name, "forkbomb", &fb)
	total := fb.TasksBefore + fb.Forked
	t.Logf("tasks before %d, forked %d, stopped by %s", fb.TasksBefore, fb.Forked, fb.Errno)
	if fb.Errno != "EAGAIN" {
		t.Fatalf("fork loop ended with %q after %d forks, want EAGAIN from the pids limit", fb.Errno, fb.Forked)
	}
	if total < 90 || total > 100 {
		t.Fatalf("fork stopped at %d tasks, want near the limit of 100", total)
	}
	// The sandbox survives its own fork bomb.
	if _, stderr, code := h.exec(t, sb.name, "true"); code != 0 {
		t.Fatalf("sandbox unusable after the fork bomb: %s", stderr)
	}
}

// TestRemovedSyscallsAnswerTheIntendedErrno runs every denied call in the
// sandbox: EPERM, and ENOSYS for clone3. A control sandbox whose profile
// allows those calls shows which of these answers come from the filter
// itself rather than from the missing capabilities.
func TestRemovedSyscallsAnswerTheIntendedErrno(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "syscalls"})
	var got []probeSyscall
	h.probeJSON(t, sb.name, "syscalls", &got)

	control := h.start(t, profile{Name: "syscalls-control", Seccomp: looseSeccomp(t)})
	var ctl []probeSyscall
	h.probeJSON(t, control.name, "syscalls", &ctl)
	ctlErrno := map[string]string{}
	for _, s := range ctl {
		ctlErrno[s.Name] = s.Errno
	}

	proved := 0
	for _, s := range got {
		want := "EPERM"
		if s.Name == "clone3" {
			want = "ENOSYS"
		}
		if s.Errno != want {
			t.Errorf("%s answered %s, want %s", s.Name, s.Errno, want)
		}
		if ctlErrno[s.Name] != s.Errno {
			proved++
		} else {
			t.Logf("%s: %s also without the filter (refused by missing capabilities too)", s.Name, s.Errno)
		}
	}
	t.Logf("%d of %d answers differ when the profile allows the call", proved, len(got))
	if len(got) < 60 {
		t.Fatalf("probe tried only %d calls", len(got))
	}
	if proved < len(got)*3/4 {
		t.Fatalf("only %d of %d denials are distinguishable from the control run", proved, len(got))
	}
}

// looseSeccomp writes a profile that is the built-in one with every denied
// call allowed again: the control case for the errno test.
func looseSeccomp(t *testing.T) string {
	t.Helper()
	p := seccomp.Build()
	var extra []string
	for _, d := range seccomp.Denied() {
		extra = append(extra, d.Name)
	}
	extra = append(extra, "socket", "ioctl", "clone", "clone3", "personality")
	var rules []specs.LinuxSyscall
	for _, r := range p.Syscalls {
		switch r.Names[0] {
		case "socket", "ioctl", "clone", "clone3", "personality":
			continue
		}
		rules = append(rules, r)
	}
	names := map[string]bool{}
	for _, n := range rules[0].Names {
		names[n] = true
	}
	for _, n := range extra {
		if !names[n] && existsOnX86_64(n) {
			rules[0].Names = append(rules[0].Names, n)
			names[n] = true
		}
	}
	p.Syscalls = rules
	b, err := seccomp.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "loose.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func existsOnX86_64(name string) bool {
	probe := &specs.LinuxSeccomp{Syscalls: []specs.LinuxSyscall{{Names: []string{name}, Action: specs.ActAllow}}}
	l, err := seccomp.Allowed(probe, specs.ArchX86_64)
	return err == nil && len(l) == 1
}

// TestNodeRunsUnderTheProfile is the compatibility workload: a real Node.js
// (the host's, with its libraries) serving and fetching HTTP over loopback,
// using fs, fs.watch, child_process, worker_threads and crypto.
func TestNodeRunsUnderTheProfile(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "node", Image: nodeImage})
	out, stderr, code := h.exec(t, sb.name, "node", "/opt/compat.js")
	t.Logf("node compat: %s", strings.TrimSpace(out))
	if code != 0 {
		t.Fatalf("compat.js exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"http", "fs", "fs.watch", "child_process", "worker_threads", "crypto"} {
		if res[k] != "ok" {
			t.Errorf("%s: %s", k, res[k])
		}
	}
}

// TestShellRunsUnderTheProfile runs the everyday commands an agent's shell
// tool uses.
func TestShellRunsUnderTheProfile(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "shell"})
	script := `set -e
cd /tmp
mkdir -p a/b && echo hello > a/b/f && cp a/b/f g && mv g h && cat h | grep -q hello
printf '3\n1\n2\n' | sort | head -1 | grep -qx 1
echo abc | sed s/b/X/ | awk '{print toupper($0)}' | grep -qx AXC
tar cf t.tar a && rm -rf a && tar xf t.tar && test -f a/b/f
find /tmp -name f | wc -l | grep -qx 1
ls -la / >/dev/null && id -u | grep -qx 1000 && date >/dev/null && ps >/dev/null
sleep 0.1 & wait
sha256sum h | grep -q '^5891b5b5' && ln -s h l && readlink l | grep -qx h
echo SHELL-OK`
	out, stderr, code := h.exec(t, sb.name, "sh", "-c", script)
	if code != 0 || !strings.Contains(out, "SHELL-OK") {
		t.Fatalf("shell workload exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
}

// TestCtrlCStopsAndRemovesEverything: the foreground run's Ctrl-C path.
func TestCtrlCStopsAndRemovesEverything(t *testing.T) {
	h := env
	before := h.inventory(t)
	sb := h.start(t, profile{Name: "ctrlc"})
	if left := h.inventory(t).has(sb.name); len(left) < 3 {
		t.Fatalf("running sandbox should own a container, snapshot, netns and state; inventory has %v", left)
	}
	start := time.Now()
	h.stopSandbox(t, sb)
	t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(sb.out.String(), "stopped and removed") {
		t.Fatalf("run output:\n%s", sb.out.String())
	}
	h.assertNothingOf(t, sb.name)
	after := h.inventory(t)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("inventory changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

// TestStopFromAnotherTerminal: `clawguard stop` while `run` supervises.
func TestStopFromAnotherTerminal(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "stopper"})
	if _, stderr, code := h.cg("stop", sb.name); code != 0 {
		t.Fatalf("stop: %s", stderr)
	}
	select {
	case <-sb.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("run did not exit after stop:\n%s", sb.out.String())
	}
	h.assertNothingOf(t, sb.name)
	if _, _, code := h.cg("stop", sb.name); code != 1 {
		t.Fatalf("second stop exit %d, want 1 (no such sandbox)", code)
	}
}

// TestSandboxIgnoringSIGTERMIsKilled: stop escalates after stop_timeout.
func TestSandboxIgnoringSIGTERMIsKilled(t *testing.T) {
	h := env
	// busybox sh as PID 1 ignores SIGTERM.
	sb := h.start(t, profile{Name: "stubborn", Args: []string{"sh", "-c", "while :; do sleep 1; done"}})
	start := time.Now()
	if _, stderr, code := h.cg("stop", "--timeout", "1s", sb.name); code != 0 {
		t.Fatalf("stop: %s", stderr)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("stop took %s", took)
	}
	h.assertNothingOf(t, sb.name)
}
