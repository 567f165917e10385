package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/clawguard/clawguard/verify"
)

func TestRuntimeSocketNamesAreRecognised(t *testing.T) {
	for name, want := range map[string]bool{
		"/run/docker.sock":                    true,
		"/run/containerd/containerd.sock":     true,
		"@/containerd-shim/k8s/abc.sock@":     true,
		"/var/run/crio/crio.sock":             true,
		"/run/clawguard/clawguard.sock":       true,
		"/home/node/.openclaw/approvals.sock": false,
		"@/tmp/.X11-unix/X0":                  false,
	} {
		if got := runtimeSocketName(name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

func TestWriteCandidatesSkipKernelFilesystemsButNotShm(t *testing.T) {
	dir := t.TempDir()
	extra := filepath.Join(dir, "workspace")
	if err := os.Mkdir(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	ms := []verify.Mount{{Target: "/"}, {Target: "/proc"}, {Target: "/proc/sys"}, {Target: "/sys/fs/cgroup"}, {Target: "/dev"}, {Target: "/dev/shm"}, {Target: dir}}
	got := writeCandidates(ms, []string{extra, "/no/such/dir"})
	want := []string{"/", "/dev/shm", dir, extra}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("candidates %v, want %v", got, want)
	}
}
