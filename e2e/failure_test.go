package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInvalidProfilesExitTwoAndCreateNothing runs `clawguard run` on broken
// profiles: each must exit 2 with a message naming the file and the field,
// and leave containerd and the host exactly as they were.
func TestInvalidProfilesExitTwoAndCreateNothing(t *testing.T) {
	h := env
	dir, _ := h.project(t, profile{Name: "bad"})
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("/etc", filepath.Join(dir, "etc-link")))
	must(os.Mkdir(filepath.Join(dir, "open-secrets"), 0o755))
	home := "/root"
	img := h.images[probeImage]
	base := fmt.Sprintf("image: %s\nimage_archive: %s\n", img.ref, img.archive)

	tests := []struct {
		name, yaml, field string
	}{
		{"unknown key", "name: bad\n" + base + "privileged: true\n", "privileged"},
		{"uid 0", "name: bad\n" + base + "user: \"0:0\"\n", "user"},
		{"seccomp unconfined", "name: bad\n" + base + "seccomp: unconfined\n", "seccomp"},
		{"capability SYS_ADMIN", "name: bad\n" + base + "capabilities: [SYS_ADMIN]\n", "capabilities[0]"},
		{"capability NET_RAW", "name: bad\n" + base + "capabilities: [CAP_NET_RAW]\n", "capabilities[0]"},
		{"mount /", "name: bad\n" + base + "mounts: [{source: /, target: /host}]\n", "mounts[0].source"},
		{"mount /etc", "name: bad\n" + base + "mounts: [{source: /etc, target: /x}]\n", "mounts[0].source"},
		{"mount docker.sock", "name: bad\n" + base + "mounts: [{source: /var/run/docker.sock, target: /x}]\n", "mounts[0].source"},
		{"mount containerd state", "name: bad\n" + base + "mounts: [{source: /var/lib/containerd, target: /x}]\n", "mounts[0].source"},
		{"mount ~/.ssh", "name: bad\n" + base + "mounts: [{source: " + home + "/.ssh, target: /x}]\n", "mounts[0].source"},
		{"mount home directory", "name: bad\n" + base + "mounts: [{source: " + home + ", target: /x}]\n", "mounts[0].source"},
		{"mount symlink to /etc", "name: bad\n" + base + "mounts: [{source: ./etc-link, target: /x}]\n", "mounts[0].source"},
		{"mount the state directory", "name: bad\n" + base + "mounts: [{source: " + h.stateDir + ", target: /x}]\n", "mounts[0].source"},
		{"secrets dir 0755", "name: bad\n" + base + "secrets: {dir: ./open-secrets}\n", "secrets.dir"},
		{"secret-looking env", "name: bad\n" + base + "env: {OPENAI_API_KEY: sk-x}\n", "env.OPENAI_API_KEY"},
		{"non-loopback publish", "name: bad\n" + base + "publish: [\"0.0.0.0:18789:18789\"]\n", "publish[0]"},
		{"memory 0", "name: bad\n" + base + "resources: {memory: 0}\n", "resources.memory"},
		{"pids -1", "name: bad\n" + base + "resources: {pids: -1}\n", "resources.pids"},
		{"bad name", "name: Bad/Name\n" + base, "name"},
		{"missing image", "name: bad\n", "image"},
		{"missing image archive", "name: bad\nimage: " + img.ref + "\nimage_archive: ./nope.tar\n", "image_archive"},
		{"tmpfs exec", "name: bad\n" + base + "tmpfs: [{path: /tmp, size: 10m, options: [exec]}]\n", "tmpfs[0].options"},
		{"egress port 0", "name: bad\n" + base + "egress: {allow: [{host: api.example.com, ports: [0]}]}\n", "egress.allow[0].ports"},
	}
	if _, err := os.Stat(home + "/.ssh"); err != nil {
		must(os.MkdirAll(home+"/.ssh", 0o700))
		t.Cleanup(func() { os.Remove(home + "/.ssh") })
	}
	before := h.inventory(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, "bad.yaml")
			if err := os.WriteFile(file, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, stderr, code := h.cgIn(dir, "run", "--profile", file)
			if code != 2 {
				t.Fatalf("exit %d, want 2\n%s", code, stderr)
			}
			if !strings.Contains(stderr, tt.field) || !strings.Contains(stderr, file) {
				t.Fatalf("message does not name %s and %s:\n%s", tt.field, file, stderr)
			}
			if after := h.inventory(t); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("invalid profile changed the host:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
	if len(tests) < 20 {
		t.Fatalf("only %d invalid profiles", len(tests))
	}
}

// TestFailureHalfwayLeavesNothing makes a valid profile fail after creation
// has begun; everything created so far must be gone.
func TestFailureHalfwayLeavesNothing(t *testing.T) {
	h := env
	tests := []struct {
		name  string
		p     profile
		patch func(yaml string) string
		want  string
	}{
		{
			name: "image missing and cannot be pulled",
			p:    profile{Name: "halfway-pull"},
			// Nothing listens on port 1 of loopback: the pull fails at once
			// without any packet leaving the machine.
			patch: func(y string) string {
				y = replaceLine(y, "image:", "image: 127.0.0.1:1/clawguard/missing:latest")
				return replaceLine(y, "image_archive:", "")
			},
			want: "pull",
		},
		{
			name: "archive lacks the image",
			p:    profile{Name: "halfway-archive"},
			patch: func(y string) string {
				return replaceLine(y, "image:", "image: docker.io/clawguard-test/absent:1")
			},
			want: "has no image",
		},
		{
			name:  "task cannot start",
			p:     profile{Name: "halfway-task", Args: []string{"/no/such/agent"}},
			patch: func(y string) string { return y },
			want:  "task",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, file := h.project(t, tt.p)
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(tt.patch(string(b))), 0o644); err != nil {
				t.Fatal(err)
			}
			before := h.inventory(t)
			_, stderr, code := h.cgIn(dir, "run", "--profile", file)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, want 1 with %q:\n%s", code, tt.want, stderr)
			}
			h.assertNothingOf(t, tt.p.Name)
			if after := h.inventory(t); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("failed start changed the host:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

// TestNameInUseIsRefusedWithoutTouchingTheRunningSandbox.
func TestNameInUseIsRefusedWithoutTouchingTheRunningSandbox(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "taken"})
	_, file := h.project(t, profile{Name: "taken"})
	_, stderr, code := h.cg("run", "--profile", file)
	if code != 1 || !strings.Contains(stderr, "already exists") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if st := h.status(t, sb.name); st == nil || st.State != "running" {
		t.Fatalf("first sandbox disturbed: %+v", st)
	}
	if _, stderr, code := h.exec(t, sb.name, "true"); code != 0 {
		t.Fatalf("first sandbox unusable: %s", stderr)
	}
}

func replaceLine(y, prefix, with string) string {
	lines := strings.Split(y, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = with
		}
	}
	return strings.Join(lines, "\n")
}
