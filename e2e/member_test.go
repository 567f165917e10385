package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/clawguard/clawguard/profiles"
)

// memberIDs is the sandbox_ids range of the member tests: ids no account of
// a Debian host uses.
const (
	memberIDs   = "2100000000-2100000009"
	memberID    = 2100000000
	nobodyUID   = 65534
	memberGroup = "nogroup"
)

// TestAMemberRunsSandboxesOnlyAsItself: with sandbox_ids configured, a
// member of the socket group (uid 65534, a real non-root process) starts a
// sandbox through the root daemon. Its sandbox runs as the member's own id
// of the range, and every path of its profile is opened with the member's
// permissions. Each way up a member could try is refused and leaves
// nothing behind: another user's uid with the disk group, a mount of a
// directory it cannot enter, root's secrets, a seccomp file or a profile it
// cannot read, an image archive (its images would be every sandbox's), a
// privileged host port. The control: root runs the very profile with the
// mount, the secrets, the seccomp file and user 1000:6 through the same
// daemon, and its agent leaves a setgid-disk binary in the writable mount,
// which is the attack; the member's agent doing the same leaves one of
// its own id only.
func TestAMemberRunsSandboxesOnlyAsItself(t *testing.T) {
	h := env
	// A declared sandbox whose image never imports: its name stays the
	// config's while it waits to be restarted.
	decl := publicTempDir(t, "cgdeclared-")
	if err := os.WriteFile(filepath.Join(decl, "broken.tar"), []byte("not an image archive\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(decl, "declared.yaml"), []byte("name: member-declared\nimage: docker.io/clawguard-test/broken:e2e\nimage_archive: ./broken.tar\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := h.startDaemonWith(t, writeConfig(t, "socket_group: "+memberGroup+"\nsandbox_ids: "+memberIDs+
		"\nsandboxes:\n  - profile: "+filepath.Join(decl, "declared.yaml")+"\n"))
	defer d.terminate(t)
	// Root imports the image: a member uses it by reference.
	h.start(t, profile{Name: "member-victim"})
	img := h.images[probeImage]

	// The member's project: its own directory, with root's files in it
	// (what a shared checkout or a careless copy leaves).
	dir := publicTempDir(t, "cgmember-")
	mk := func(rel string, mode os.FileMode, uid int, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, rel)
		var err error
		if data == nil {
			err = os.Mkdir(p, mode)
		} else {
			err = os.WriteFile(p, data, mode)
		}
		if err == nil {
			err = os.Chmod(p, mode)
		}
		if err == nil {
			err = os.Chown(p, uid, uid)
		}
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.Chown(dir, nobodyUID, nobodyUID); err != nil {
		t.Fatal(err)
	}
	mk("work", 0o777, nobodyUID, nil)
	mk("secrets", 0o700, nobodyUID, nil)
	mk("secrets/key", 0o600, nobodyUID, []byte("member-secret"))
	mk("private", 0o700, 0, nil)
	mk("private/inner", 0o755, 0, nil)
	// Enterable but not readable by the member: opening it O_PATH works,
	// so only the access check on what was opened refuses it.
	mk("unlisted", 0o711, 0, nil)
	mk("root-secrets", 0o700, 0, nil)
	mk("root-secrets/key", 0o600, 0, []byte("ROOT-SECRET"))
	mk("root-seccomp.json", 0o600, 0, profiles.DefaultSeccompJSON())

	write := func(file string, uid int, mode os.FileMode, name, extra string) string {
		t.Helper()
		y := fmt.Sprintf("name: %s\nimage: %s\nargs: [\"/usr/local/bin/cgprobe\", \"sleep\"]\nstop_timeout: 2s\n%s", name, img.ref, extra)
		return mk(file, mode, uid, []byte(y))
	}
	const work = "mounts:\n  - {source: ./work, target: /work, read_only: false}\n"

	for _, c := range []struct {
		name, extra, says string
		uid               int
		mode              os.FileMode
	}{
		{"another uid and the disk group", "user: \"1000:6\"\n", "sandbox_ids", nobodyUID, 0o644},
		{"a directory it cannot enter", "mounts:\n  - {source: ./private/inner, target: /x}\n", "permission denied", nobodyUID, 0o644},
		{"a directory it may enter but not read", "mounts:\n  - {source: ./unlisted, target: /x}\n", "you may not read it", nobodyUID, 0o644},
		{"root's secrets", "secrets: {dir: ./root-secrets}\n", "permission denied", nobodyUID, 0o644},
		{"a seccomp file it cannot read", "seccomp: ./root-seccomp.json\n", "permission denied", nobodyUID, 0o644},
		{"a profile it cannot read", "", "permission denied", 0, 0o600},
		{"an image archive", "image_archive: " + img.archive + "\n", "image_archive", nobodyUID, 0o644},
		{"a privileged host port", "publish: [\"127.0.0.1:80:18789\"]\n", "privileged", nobodyUID, 0o644},
	} {
		name := "member-refused"
		file := write(strings.ReplaceAll(c.name, " ", "-")+".yaml", c.uid, c.mode, name, c.extra)
		out, err := h.asNobody(t, "run", "--detach", "--profile", file).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.says) {
			t.Errorf("%s: the member's run was not refused saying %q: %v\n%s", c.name, c.says, err, out)
		}
		if st := h.status(t, name); st != nil {
			t.Fatalf("%s: the refused run left a sandbox: %+v", c.name, st)
		}
	}

	// A declared sandbox's name is not the member's to take: the daemon's
	// restarts, and root's verify and stop, would then act on the
	// member's sandbox.
	squat := write("squat.yaml", nobodyUID, 0o644, "member-declared", "")
	if out, err := h.asNobody(t, "run", "--detach", "--profile", squat).CombinedOutput(); err == nil || !strings.Contains(string(out), "config declares") {
		t.Errorf("the member took a declared sandbox's name: %v\n%s", err, out)
	}

	// Control: root runs what the member may not, and its agent leaves a
	// setgid-disk binary in the writable mount.
	rootFile := write("root.yaml", 0, 0o644, "member-control", "user: \"1000:6\"\n"+work+
		"  - {source: ./unlisted, target: /unlisted}\n"+
		"secrets: {dir: ./root-secrets}\nseccomp: ./root-seccomp.json\n")
	if _, stderr, code := h.cg("run", "--detach", "--profile", rootFile); code != 0 {
		t.Fatalf("control: root could not run the profile: %s", stderr)
	}
	defer h.cg("stop", "--timeout", "1s", "member-control")
	if got := dropSetgidShell(t, h, "member-control", dir, "root-drop"); got.Gid != 6 {
		t.Fatalf("control: root's agent left gid %d, want the disk group (6): the attack did not work", got.Gid)
	}

	// The member's own run: its id, its secrets, its mount.
	okFile := write("ok.yaml", nobodyUID, 0o644, "member-ok", work+"secrets: {dir: ./secrets}\n")
	out, err := h.asNobody(t, "run", "--detach", "--profile", okFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("user %d:%d", memberID, memberID)) {
		t.Fatalf("the member's own run: %v\n%s", err, out)
	}
	st := memberStatus(t, h, "member-ok")
	if st.User != fmt.Sprintf("%d:%d", memberID, memberID) || st.OwnerUID != nobodyUID {
		t.Errorf("status: user %q owner %d, want %d:%d owned by %d", st.User, st.OwnerUID, memberID, memberID, nobodyUID)
	}
	if uid := procIDs(t, st.Pid); uid != fmt.Sprintf("%d", memberID) {
		t.Errorf("the agent's process runs as uid %s, want %d", uid, memberID)
	}
	if got, _, code := h.exec(t, "member-ok", "cat", "/run/secrets/key"); code != 0 || got != "member-secret" {
		t.Errorf("the member's secret in its sandbox: %q (exit %d)", got, code)
	}
	if got := dropSetgidShell(t, h, "member-ok", dir, "member-drop"); got.Uid != memberID || got.Gid != memberID {
		t.Errorf("the member's agent left uid %d gid %d, want its own id %d", got.Uid, got.Gid, memberID)
	}

	// It stops its own sandbox, not root's.
	if out, err := h.asNobody(t, "stop", "member-control").CombinedOutput(); err == nil || !strings.Contains(string(out), "only root may") {
		t.Errorf("the member stopped root's sandbox: %v\n%s", err, out)
	}
	if out, err := h.asNobody(t, "stop", "--timeout", "1s", "member-ok").CombinedOutput(); err != nil {
		t.Errorf("the member could not stop its own sandbox: %v\n%s", err, out)
	}
	if st := h.status(t, "member-ok"); st != nil {
		t.Errorf("after the member's stop: %+v", st)
	}
}

// dropSetgidShell has the sandbox's agent copy its shell into /work as a
// setuid and setgid file, as a hostile agent would for its caller to run on
// the host, and returns who owns the file on the host.
func dropSetgidShell(t *testing.T, h *harness, name, dir, file string) *syscall.Stat_t {
	t.Helper()
	if _, stderr, code := h.exec(t, name, "sh", "-c", "cp /bin/busybox /work/"+file+" && chmod 6755 /work/"+file); code != 0 {
		t.Fatalf("%s: the agent could not drop its file: %s", name, stderr)
	}
	fi, err := os.Stat(filepath.Join(dir, "work", file))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSetgid == 0 {
		t.Fatalf("%s: the dropped file is not setgid: %v", name, fi.Mode())
	}
	return fi.Sys().(*syscall.Stat_t)
}

type memberStatusJSON struct {
	Pid      uint32 `json:"pid"`
	User     string `json:"user"`
	OwnerUID uint32 `json:"owner_uid"`
}

func memberStatus(t *testing.T, h *harness, name string) memberStatusJSON {
	t.Helper()
	out, stderr, code := h.cg("status", "--json", name)
	var list []memberStatusJSON
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("status %s: exit %d %s\n%s", name, code, stderr, out)
	}
	return list[0]
}

// procIDs is the real uid of a host process, from /proc.
func procIDs(t *testing.T, pid uint32) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return ""
}
