package e2e

import (
	"strings"
	"testing"

	"github.com/clawguard/clawguard/verify"
)

// TestCompatibilityWorkloadsRunUnderBothProfiles runs the workloads the
// strict profile was derived from, inside sandboxes, under the strict and
// the default profile.
func TestCompatibilityWorkloadsRunUnderBothProfiles(t *testing.T) {
	workloads := []struct {
		name, image string
		cmd         []string
		done        string
	}{
		{"node", nodeImage, []string{"node", "/opt/compat.js"}, `"worker_threads":"ok"`},
		{"shell", probeImage, []string{"sh", "/opt/compat.sh"}, "compat.sh: all ok"},
		{"python", pythonImage, []string{"python3", "/opt/compat.py"}, `"http": "ok"`},
		{"git", gitImage, []string{"sh", "/opt/compat-git.sh"}, "compat-git.sh: all ok"},
	}
	for _, sc := range []string{"strict", "default"} {
		for _, w := range workloads {
			t.Run(sc+"/"+w.name, func(t *testing.T) {
				name := "compat-" + sc + "-" + w.name
				env.start(t, profile{Name: name, Image: w.image, Seccomp: sc})
				out, stderr, code := env.exec(t, name, w.cmd...)
				if code != 0 || !strings.Contains(out, w.done) {
					t.Fatalf("%s under %s: exit %d\nstdout: %s\nstderr: %s", w.name, sc, code, out, stderr)
				}
			})
		}
	}
}

func TestVerifyPassesUnderTheStrictProfile(t *testing.T) {
	env.start(t, profile{Name: "verify-strict", Seccomp: "strict"})
	v, code := env.verifySandbox(t, "verify-strict")
	if code != 0 || len(v.with(verify.Fail)) > 0 {
		t.Fatalf("verify under strict: exit %d\n%s", code, v.explain())
	}
	for _, r := range v.Results {
		if r.ID == "syscalls" && r.Status != verify.Pass {
			t.Errorf("syscalls under strict: %s", r.Seen)
		}
	}
}
