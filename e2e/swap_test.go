package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawguard/clawguard/internal/racetest"
)

// TestSwappedSourcesAreNeverMounted: the owner of a project directory swaps
// its workspace and its secrets directory for links to a private directory
// of someone else's, over and over, while sandboxes start from it. A start
// may be refused; it may never mount or copy the victim's directory.
func TestSwappedSourcesAreNeverMounted(t *testing.T) {
	h := env
	h.startDaemon(t)
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.Mkdir(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	const marker = "victim-private-file"
	if err := os.WriteFile(filepath.Join(victim, marker), []byte("VICTIM-SECRET-VALUE"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The secrets directory's stand-in must look like one: the file is
	// named as the real secret is, so a copy would be staged.
	if err := os.WriteFile(filepath.Join(victim, "key"), []byte("VICTIM-SECRET-VALUE"), 0o600); err != nil {
		t.Fatal(err)
	}
	real := map[string]string{"workspace": filepath.Join(dir, ".workspace-real"), "secrets": filepath.Join(dir, ".secrets-real")}
	for _, d := range []string{"workspace", "secrets"} {
		if err := os.Mkdir(real[d], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(real["workspace"], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real["secrets"], "key"), []byte("own-secret-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := h.writeSwapProfile(t, dir, "swap")
	// The swap: a rename of the real directory in and out, with a link to
	// the victim in its place.
	place := func(name string, link bool) {
		p := filepath.Join(dir, name)
		if link {
			_ = os.Rename(p, real[name])
			_ = os.Symlink(victim, p)
		} else {
			_ = os.Remove(p)
			_ = os.Rename(real[name], p)
		}
	}
	place("workspace", false)
	place("secrets", false)

	// Control: by path, the workspace leads to the victim's file once it
	// is swapped; a mount that followed the path would show it.
	place("workspace", true)
	if _, err := os.Stat(filepath.Join(dir, "workspace", marker)); err != nil {
		t.Fatalf("control: the swapped path does not reach the victim: %v", err)
	}
	if _, stderr, code := h.cg("run", "--detach", "--profile", file); code == 0 || !strings.Contains(stderr, "symbolic link") {
		h.cg("stop", "--timeout", "1s", "swap")
		t.Fatalf("a workspace that is a link to elsewhere was accepted: exit %d: %s", code, stderr)
	}
	place("workspace", false)

	stop := racetest.Loop(func(i int) {
		place("workspace", i%2 == 0)
		place("secrets", i%3 == 0)
		// Irregular pauses, so that some starts pass validation and meet
		// a swap while they stage and mount.
		time.Sleep(time.Duration(i%11) * time.Millisecond)
	})
	started, refused := 0, 0
	for i := 0; i < 25; i++ {
		_, stderr, code := h.cg("run", "--detach", "--profile", file)
		if code != 0 {
			refused++
			if !strings.Contains(stderr, "symbolic link") && !strings.Contains(stderr, "does not exist") {
				t.Logf("refused: %s", strings.TrimSpace(stderr))
			}
			continue
		}
		started++
		ls, lsErr, lsCode := h.exec(t, "swap", "/bin/ls", "-a", "/workspace")
		key, keyErr, keyCode := h.exec(t, "swap", "/bin/cat", "/run/secrets/key")
		h.cg("stop", "--timeout", "1s", "swap")
		if lsCode != 0 || keyCode != 0 || key != "own-secret-value" {
			stop()
			t.Fatalf("start %d: could not look inside: ls %d %s, cat %d %q %s", i, lsCode, lsErr, keyCode, key, keyErr)
		}
		if strings.Contains(ls, marker) || strings.Contains(key, "VICTIM") {
			stop()
			t.Fatalf("start %d mounted or copied the victim's directory: ls %q, key %q", i, ls, key)
		}
	}
	stop()
	t.Logf("25 starts while swapping: %d started on the real directories, %d refused, none saw the victim's", started, refused)
	if refused == 0 {
		t.Fatal("no start met a swapped link: the race did not run")
	}
}

// TestSwappedProjectDirectoryIsNeverMixed: the profile's own directory is a
// link its owner keeps pointing at its project and at someone else's (with
// no profile of its own). A start uses one project whole, its own, or is
// refused; it never takes the profile from one and the directories from the
// other.
func TestSwappedProjectDirectoryIsNeverMixed(t *testing.T) {
	h := env
	h.startDaemon(t)
	top := t.TempDir()
	mine, victim := filepath.Join(top, "mine"), filepath.Join(top, "victim")
	const marker = "victim-private-file"
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{mine, 0o755}, {mine + "/workspace", 0o755}, {mine + "/secrets", 0o700}, {victim, 0o755}, {victim + "/workspace", 0o755}, {victim + "/secrets", 0o700}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	for path, body := range map[string]string{mine + "/secrets/key": "own-secret-value", victim + "/secrets/key": "VICTIM-SECRET-VALUE", victim + "/workspace/" + marker: "x"} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.writeSwapProfile(t, mine, "swapdir")
	proj := filepath.Join(top, "proj")
	point := func(at string) {
		tmp := proj + ".new"
		_ = os.Remove(tmp)
		_ = os.Symlink(at, tmp)
		_ = os.Rename(tmp, proj) // atomic: proj is always one or the other
	}
	point(mine)
	stop := racetest.Loop(func(i int) {
		point(map[bool]string{true: victim, false: mine}[i%2 == 0])
		time.Sleep(time.Duration(i%7) * time.Millisecond)
	})
	started, refused := 0, 0
	for i := 0; i < 25; i++ {
		if _, _, code := h.cg("run", "--detach", "--profile", proj+"/profile.yaml"); code != 0 {
			refused++
			continue
		}
		started++
		ls, _, lsCode := h.exec(t, "swapdir", "/bin/ls", "-a", "/workspace")
		key, _, keyCode := h.exec(t, "swapdir", "/bin/cat", "/run/secrets/key")
		h.cg("stop", "--timeout", "1s", "swapdir")
		if lsCode != 0 || keyCode != 0 || strings.Contains(ls, marker) || key != "own-secret-value" {
			stop()
			t.Fatalf("start %d mixed the projects: ls %d %q, key %d %q", i, lsCode, ls, keyCode, key)
		}
	}
	stop()
	t.Logf("25 starts while the project directory was swapped: %d started whole on the own project, %d refused", started, refused)
	if started == 0 {
		t.Fatal("no start got through: the test proved nothing")
	}
}

// writeSwapProfile writes dir/profile.yaml: the probe image with the
// workspace and the secrets of dir, the two things the swap tests aim at.
func (h *harness) writeSwapProfile(t *testing.T, dir, name string) string {
	t.Helper()
	img := h.images[probeImage]
	y := fmt.Sprintf(`name: %s
image: %s
image_archive: %s
args: ["/usr/local/bin/cgprobe", "sleep"]
mounts:
  - {source: ./workspace, target: /workspace, read_only: true}
secrets: {dir: ./secrets}
stop_timeout: 2s
`, name, img.ref, img.archive)
	file := filepath.Join(dir, "profile.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}
