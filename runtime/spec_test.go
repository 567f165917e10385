package runtime

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultSpec is containerd's default spec, the base every option applies to.
func defaultSpec(t *testing.T, opts ...oci.SpecOpts) *oci.Spec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), Namespace)
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "t"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mountsAt(s *oci.Spec, dest string) []specs.Mount {
	var out []specs.Mount
	for _, m := range s.Mounts {
		if m.Destination == dest {
			out = append(out, m)
		}
	}
	return out
}

func TestOnlyCapabilitiesEmptiesAllFiveSets(t *testing.T) {
	s := defaultSpec(t, WithOnlyCapabilities(nil))
	c := s.Process.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted, "inheritable": c.Inheritable, "ambient": c.Ambient} {
		if len(set) != 0 {
			t.Errorf("%s = %v", name, set)
		}
	}
}

func TestOnlyCapabilitiesAddsBackToEverySetIncludingAmbient(t *testing.T) {
	s := defaultSpec(t, WithOnlyCapabilities([]string{"CAP_NET_BIND_SERVICE"}))
	c := s.Process.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted, "inheritable": c.Inheritable, "ambient": c.Ambient} {
		if !slices.Equal(set, []string{"CAP_NET_BIND_SERVICE"}) {
			t.Errorf("%s = %v", name, set)
		}
	}
}

func TestTmpfsReplacesDefaultMountAndIsIdempotent(t *testing.T) {
	for _, dest := range []string{"/run", "/dev/shm", "/tmp"} {
		t.Run(dest, func(t *testing.T) {
			s := defaultSpec(t, WithTmpfs(dest, 1<<20), WithTmpfs(dest, 2<<20, "mode=755", "exec"))
			ms := mountsAt(s, dest)
			if len(ms) != 1 {
				t.Fatalf("%d mounts at %s", len(ms), dest)
			}
			for _, o := range []string{"noexec", "nosuid", "nodev", "size=2097152", "mode=755"} {
				if !slices.Contains(ms[0].Options, o) {
					t.Errorf("options %v lack %s", ms[0].Options, o)
				}
			}
		})
	}
}

func TestTmpfsDefaultsToStickyWorldWritable(t *testing.T) {
	s := defaultSpec(t, WithTmpfs("/tmp", 1<<20))
	if ms := mountsAt(s, "/tmp"); len(ms) != 1 || !slices.Contains(ms[0].Options, "mode=1777") {
		t.Fatalf("mounts %v", ms)
	}
}

func TestAVolumeIsItsDeviceMountedWritableNoexec(t *testing.T) {
	s := defaultSpec(t, WithVolume(Volume{Device: "/dev/loop7", Target: "/workspace"}))
	for _, m := range s.Mounts {
		if m.Destination != "/workspace" {
			continue
		}
		if m.Type != "ext4" || m.Source != "/dev/loop7" || !slices.Equal(m.Options, []string{"rw", "nosuid", "nodev", "noexec"}) {
			t.Fatalf("volume mount: %+v", m)
		}
		return
	}
	t.Fatal("no mount at /workspace")
}

func TestBindOptions(t *testing.T) {
	tests := []struct {
		name     string
		bind     Bind
		want     []string
		unwanted []string
	}{
		{"writable is noexec", Bind{Source: "/w", Target: "/workspace"}, []string{"rw", "noexec", "nosuid", "nodev", "rbind"}, []string{"ro"}},
		{"read-only may exec", Bind{Source: "/c", Target: "/config", ReadOnly: true}, []string{"ro", "nosuid", "nodev"}, []string{"rw", "noexec"}},
		{"read-only noexec", Bind{Source: "/s", Target: "/run/secrets/k", ReadOnly: true, NoExec: true}, []string{"ro", "noexec"}, []string{"rw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultSpec(t, WithBind(tt.bind))
			ms := mountsAt(s, tt.bind.Target)
			if len(ms) != 1 || ms[0].Source != tt.bind.Source {
				t.Fatalf("mounts %v", ms)
			}
			for _, o := range tt.want {
				if !slices.Contains(ms[0].Options, o) {
					t.Errorf("lacks %s: %v", o, ms[0].Options)
				}
			}
			for _, o := range tt.unwanted {
				if slices.Contains(ms[0].Options, o) {
					t.Errorf("has %s: %v", o, ms[0].Options)
				}
			}
		})
	}
}

func TestResourcesSetMemoryWithoutSwapCPUAndPids(t *testing.T) {
	s := defaultSpec(t, WithResources(1<<30, 1.5, 100))
	r := s.Linux.Resources
	if *r.Memory.Limit != 1<<30 || *r.Memory.Swap != 1<<30 {
		t.Errorf("memory %d swap %d", *r.Memory.Limit, *r.Memory.Swap)
	}
	if *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 {
		t.Errorf("cpu %d/%d", *r.CPU.Quota, *r.CPU.Period)
	}
	if *r.Pids.Limit != 100 {
		t.Errorf("pids %d", *r.Pids.Limit)
	}
}

func TestOptionsRefuseUnsafeValues(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), Namespace)
	tests := []struct {
		name string
		opt  oci.SpecOpts
	}{
		{"uid 0", WithUser(0, 1000)},
		{"no seccomp profile", WithSeccomp(nil)},
		{"zero memory", WithResources(0, 1, 100)},
		{"zero pids", WithResources(1<<30, 1, 0)},
		{"zero-sized tmpfs", WithTmpfs("/tmp", 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "t"}, tt.opt); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestNetworkNamespaceIsReplacedNotAdded(t *testing.T) {
	s := defaultSpec(t, WithNetworkNamespace("/var/run/netns/cg-a"), WithNetworkNamespace("/var/run/netns/cg-b"))
	var net []specs.LinuxNamespace
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			net = append(net, n)
		}
	}
	if len(net) != 1 || net[0].Path != "/var/run/netns/cg-b" {
		t.Fatalf("network namespaces %v", net)
	}
}

func TestUserHasNoSupplementaryGroups(t *testing.T) {
	s := defaultSpec(t, WithUser(1000, 1000))
	if s.Process.User.UID != 1000 || s.Process.User.GID != 1000 || len(s.Process.User.AdditionalGids) != 0 {
		t.Fatalf("user %+v", s.Process.User)
	}
}

func TestSandboxGetsItsOwnCgroupNamespaceOnEveryCgroupVersion(t *testing.T) {
	s := defaultSpec(t, SpecOpts(nil, Sandbox{Name: "x", UID: 1000, GID: 1000, Pids: 10, CPUs: 1, MemoryBytes: 64 << 20, Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}})[1:]...)
	n := 0
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.CgroupNamespace {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d cgroup namespaces in %+v", n, s.Linux.Namespaces)
	}
}
