package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawguard/clawguard/verify"
)

// floodDisk writes up to 64 MiB into dir from inside the sandbox and says
// what the writer saw.
func floodDisk(t *testing.T, h *harness, name, dir string) (out string, code int) {
	t.Helper()
	stdout, stderr, code := h.exec(t, name, "sh", "-c", "dd if=/dev/zero of="+dir+"/fill bs=1M count=64 2>&1")
	return stdout + stderr, code
}

// allocated is what a file takes on the host's disk.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

type volumeJSON struct {
	Sandbox   string `json:"sandbox"`
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
	UsedBytes int64  `json:"used_bytes"`
	InUse     bool   `json:"in_use"`
	Image     string `json:"image"`
}

func (h *harness) volumes(t *testing.T) map[string]volumeJSON {
	t.Helper()
	out, stderr, code := h.cg("volume", "ls", "--json")
	if code != 0 {
		t.Fatalf("volume ls: exit %d: %s", code, stderr)
	}
	var list []volumeJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("volume ls --json: %v\n%s", err, out)
	}
	m := map[string]volumeJSON{}
	for _, v := range list {
		m[v.Sandbox+"/"+v.Name] = v
	}
	return m
}

// TestAnAgentFillingItsVolumeFillsOnlyIt: an agent writing without end
// into a writable bind mount takes the host's disk (the control); into a
// volume it stops at the volume's size with ENOSPC, the host's disk does
// not move, and the neighbour, the sandbox itself and clawguard go on. The
// volume then outlives the sandbox and is removed only when asked, and
// never while in use.
func TestAnAgentFillingItsVolumeFillsOnlyIt(t *testing.T) {
	h := env
	const size = 32 << 20

	t.Run("control: a writable bind mount takes all of it from the host", func(t *testing.T) {
		sb := h.start(t, profile{Name: "vol-control"})
		out, code := floodDisk(t, h, "vol-control", "/workspace")
		if code != 0 {
			t.Fatalf("the flood into the workspace failed (exit %d): %s", code, out)
		}
		if got := allocated(t, filepath.Join(sb.dir, "workspace", "fill")); got < 64<<20 {
			t.Fatalf("control: the host holds %d bytes of a 64 MiB flood: the agent did not flood, so the volume run would prove nothing", got)
		}
		h.stopSandbox(t, sb)
	})

	nb := h.start(t, profile{Name: "vol-neighbour", Extra: "volumes: [{name: data, target: /data, size: 16M}]\n"})
	flooder := profile{Name: "vol-flood", WorkspaceVolume: "32M"}
	sb := h.start(t, flooder)
	vols := h.volumes(t)
	v, ok := vols["vol-flood/workspace"]
	if !ok || !v.InUse || v.SizeBytes != size {
		t.Fatalf("volume ls: %+v", vols)
	}
	// Mounted in the sandbox only: no host mount namespace (nor any copy
	// of it a user makes with unshare) holds the filesystem.
	dev := loopOf(t, v.Image)
	if dev == "" {
		t.Fatal("the running sandbox's volume is attached to no loop device")
	}
	if m := hostMountsOf(t, dev); len(m) != 0 {
		t.Fatalf("the volume is mounted on the host: %v", m)
	}
	before := allocated(t, v.Image)
	if before < size {
		t.Fatalf("the image holds %d bytes on the host, want all %d reserved at creation", before, size)
	}

	out, code := floodDisk(t, h, "vol-flood", "/workspace")
	if code == 0 || !strings.Contains(out, "No space left on device") {
		t.Fatalf("the flood into a %d-byte volume: exit %d, %q; want No space left on device", size, code, out)
	}
	if after := allocated(t, v.Image); after != before {
		t.Fatalf("the image took %d bytes of the host's disk after the flood, %d before", after, before)
	}
	wrote, _, _ := h.exec(t, "vol-flood", "sh", "-c", "wc -c < /workspace/fill")
	if n, err := strconv.Atoi(strings.TrimSpace(wrote)); err != nil || n >= size || n < size/2 {
		t.Fatalf("the agent wrote %q bytes into a %d-byte volume", wrote, size)
	}
	t.Logf("a 64 MiB flood into a %d-byte volume: %s bytes written, then %q; the image holds %d bytes on the host before and after", size, strings.TrimSpace(wrote), lastLine(out), before)
	if v := h.volumes(t)["vol-flood/workspace"]; v.UsedBytes < size/2 {
		t.Fatalf("volume ls says %d bytes used after the flood", v.UsedBytes)
	}
	// The agent's other writes, the neighbour's volume and clawguard go on.
	if _, stderr, code := h.exec(t, "vol-flood", "sh", "-c", "echo ok > /tmp/still"); code != 0 {
		t.Fatalf("the flooder cannot write /tmp: %s", stderr)
	}
	if _, stderr, code := h.exec(t, "vol-neighbour", "sh", "-c", "dd if=/dev/zero of=/data/x bs=1M count=4 2>&1"); code != 0 {
		t.Fatalf("the neighbour cannot write its own volume: %s", stderr)
	}
	if st := h.status(t, "vol-flood"); st == nil || st.State != "running" {
		t.Fatalf("the flooder is not running: %+v", st)
	}

	// verify proves the cap from inside, and says the control's workspace
	// has none.
	if v, code := h.verifySandbox(t, "vol-flood"); code != 0 || result(v, "disk").Status != verify.Pass {
		t.Fatalf("verify of the volume's sandbox: exit %d, disk %+v\n%s", code, result(v, "disk"), v.explain())
	}
	if v, _ := h.verifySandbox(t, "vol-neighbour"); result(v, "disk").Status != verify.Warn || !strings.Contains(result(v, "disk").Seen, "/workspace can fill the host's disk") {
		t.Fatalf("verify of a sandbox with a writable host directory: disk %+v", result(v, "disk"))
	}

	// Refused while in use; kept across a stop and a new run.
	if _, stderr, code := h.cg("volume", "rm", "vol-flood"); code == 0 || !strings.Contains(stderr, "stop it first") {
		t.Fatalf("volume rm of a running sandbox's volume: exit %d: %s", code, stderr)
	}
	h.stopSandbox(t, sb)
	h.assertNothingOf(t, "vol-flood")
	// The volume was never mounted on the host, only in the sandbox's own
	// namespace: its loop device clears itself with that namespace.
	for i := 0; loopOf(t, v.Image) != ""; i++ {
		if i == 100 {
			t.Fatalf("%s still holds the image 2 s after the stop", loopOf(t, v.Image))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := h.volumes(t)["vol-flood/workspace"]; v.InUse || v.UsedBytes < size/2 {
		t.Fatalf("after the stop: %+v", v)
	}
	sb = h.start(t, flooder)
	if again, _, _ := h.exec(t, "vol-flood", "sh", "-c", "wc -c < /workspace/fill"); again != wrote {
		t.Fatalf("after a new run the volume holds %q bytes, %q before", again, wrote)
	}
	h.stopSandbox(t, sb)

	if _, stderr, code := h.cg("volume", "rm", "vol-flood", "nope"); code == 0 || !strings.Contains(stderr, "no volume nope") {
		t.Fatalf("volume rm of a volume that does not exist: exit %d: %s", code, stderr)
	}
	if _, ok := h.volumes(t)["vol-flood/workspace"]; !ok {
		t.Fatal("a refused volume rm removed the volume anyway")
	}
	if out, stderr, code := h.cg("volume", "rm", "vol-flood"); code != 0 || !strings.Contains(out, "removed volume workspace of sandbox vol-flood") {
		t.Fatalf("volume rm: exit %d: %s%s", code, out, stderr)
	}
	if _, err := os.Stat(v.Image); !os.IsNotExist(err) {
		t.Fatalf("the image is still there: %v", err)
	}
	h.stopSandbox(t, nb)
	if _, stderr, code := h.cg("volume", "rm", "vol-neighbour"); code != 0 {
		t.Fatalf("volume rm vol-neighbour: %s", stderr)
	}
}

func result(v verification, id string) verify.Result {
	for _, r := range v.Results {
		if r.ID == id {
			return r
		}
	}
	return verify.Result{}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// loopOf is the loop device whose backing file is img, or "".
func loopOf(t *testing.T, img string) string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == img {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		}
	}
	return ""
}

// hostMountsOf lists the host's mount points of device dev.
func hostMountsOf(t *testing.T, dev string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		_, post, ok := strings.Cut(line, " - ")
		if f := strings.Fields(post); ok && len(f) > 1 && f[1] == dev {
			out = append(out, strings.Fields(line)[4])
		}
	}
	return out
}

// TestARefusedStartLeavesNoNewVolumeReserved: a start whose second volume
// cannot be attached (its image is still held, here by a loop device set up
// by hand, as a process keeping an old run's mounts would) fails, says why,
// and removes the new volume it had made for the first: nothing stays
// reserved for a sandbox that never ran. The control is the held volume,
// which is kept.
func TestARefusedStartLeavesNoNewVolumeReserved(t *testing.T) {
	h := env
	const name = "vol-refused"
	sb := h.start(t, profile{Name: name, Extra: "volumes: [{name: held, target: /held, size: 16M}]\n"})
	h.stopSandbox(t, sb)
	held := h.volumes(t)[name+"/held"]
	out, err := exec.Command("losetup", "--find", "--show", held.Image).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })

	dir, file := h.project(t, profile{Name: name, Extra: "volumes: [{name: fresh, target: /fresh, size: 16M}, {name: held, target: /held, size: 16M}]\n"})
	_, stderr, code := h.cgIn(dir, "run", "--profile", file)
	if code == 0 || !strings.Contains(stderr, "volume is in use") || !strings.Contains(stderr, dev) {
		t.Fatalf("run with a held volume: exit %d: %s", code, stderr)
	}
	vols := h.volumes(t)
	if _, ok := vols[name+"/fresh"]; ok {
		t.Errorf("the refused start left its new volume: %+v", vols)
	}
	if _, ok := vols[name+"/held"]; !ok {
		t.Errorf("the held volume is gone: %+v", vols)
	}
	h.assertNothingOf(t, name)
	_ = exec.Command("losetup", "-d", dev).Run()
	if _, stderr, code := h.cg("volume", "rm", name); code != 0 {
		t.Errorf("volume rm: %s", stderr)
	}
}
