//go:build clawguard_weaken

package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// weakenOpts reads CLAWGUARD_WEAKEN, a comma-separated list of controls to
// break after every control was applied, so that the end-to-end suite can
// prove each verify check fails when its control is missing. This file is
// compiled only with the clawguard_weaken tag; release builds cannot
// weaken anything.
func weakenOpts() ([]oci.SpecOpts, error) {
	v := os.Getenv("CLAWGUARD_WEAKEN")
	if v == "" {
		return nil, nil
	}
	var opts []oci.SpecOpts
	for _, w := range strings.Split(v, ",") {
		name, arg, _ := strings.Cut(w, "=")
		fn, ok := weakenings[name]
		if !ok {
			return nil, fmt.Errorf("CLAWGUARD_WEAKEN: unknown weakening %q", name)
		}
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			fn(s, arg)
			return nil
		})
	}
	return opts, nil
}

// weakened reports whether CLAWGUARD_WEAKEN names a control of the
// supervising process itself (not of the sandbox's spec).
func weakened(name string) bool {
	return slices.Contains(strings.Split(os.Getenv("CLAWGUARD_WEAKEN"), ","), name)
}

var weakenings = map[string]func(s *oci.Spec, arg string){
	// firewall-guard: the supervising process does not repair the host's
	// rules (see weakened); nothing of the spec changes.
	"firewall-guard": func(*oci.Spec, string) {},
	// conntrack: the supervising process leaves a sandbox's tracked flows
	// behind (see weakened); nothing of the spec changes.
	"conntrack": func(*oci.Spec, string) {},
	// inner-layer: no rules or sets in the sandbox's own namespace (see
	// weakened); nothing of the spec changes.
	"inner-layer": func(*oci.Spec, string) {},
	// name-gate: nothing is sent to the name gate (see weakened);
	// nothing of the spec changes.
	"name-gate": func(*oci.Spec, string) {},
	// credentials: bound secrets are staged as they are and no broker
	// stands at the gate (see weakened); nothing of the spec changes.
	"credentials": func(*oci.Spec, string) {},
	"cap":         func(s *oci.Spec, _ string) { addCap(s, "CAP_CHOWN") },
	"rootfs":      func(s *oci.Spec, _ string) { s.Root.Readonly = false },
	"root":        func(s *oci.Spec, _ string) { s.Process.User.UID, s.Process.User.GID = 0, 0 },
	"netraw":      func(s *oci.Spec, _ string) { addCap(s, "CAP_NET_RAW") },
	"cpu":         func(s *oci.Spec, _ string) { s.Linux.Resources.CPU = nil },
	"shmexec": func(s *oci.Spec, _ string) {
		for i, m := range s.Mounts {
			if m.Destination == "/dev/shm" {
				s.Mounts[i].Options = slices.DeleteFunc(m.Options, func(o string) bool { return o == "noexec" })
			}
		}
	},
	"nnp":     func(s *oci.Spec, _ string) { s.Process.NoNewPrivileges = false },
	"seccomp": func(s *oci.Spec, _ string) { s.Linux.Seccomp = nil },
	"pids":    func(s *oci.Spec, _ string) { s.Linux.Resources.Pids = nil },
	"memory":  func(s *oci.Spec, _ string) { s.Linux.Resources.Memory = nil },
	"tmpexec": func(s *oci.Spec, _ string) {
		for i, m := range s.Mounts {
			if m.Destination == "/tmp" {
				s.Mounts[i].Options = slices.DeleteFunc(m.Options, func(o string) bool { return o == "noexec" })
			}
		}
	},
	"procsys": func(s *oci.Spec, _ string) {
		s.Linux.ReadonlyPaths = slices.DeleteFunc(s.Linux.ReadonlyPaths, func(p string) bool { return p == "/proc/sys" })
	},
	"timerlist": func(s *oci.Spec, _ string) {
		s.Linux.MaskedPaths = slices.DeleteFunc(s.Linux.MaskedPaths, func(p string) bool { return p == "/proc/timer_list" })
	},
	"hostpid": func(s *oci.Spec, _ string) {
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.PIDNamespace })
	},
	// volume=DIR binds the host directory DIR where /workspace, a
	// volume, was mounted: the agent writes on the host's disk again.
	"volume": func(s *oci.Spec, arg string) {
		for i, m := range s.Mounts {
			if m.Destination == "/workspace" {
				s.Mounts[i] = specs.Mount{Destination: m.Destination, Type: "bind", Source: arg, Options: []string{"rbind", "rw", "nosuid", "nodev", "noexec"}}
			}
		}
	},
	// socket=PATH mounts a runtime socket where the agent can find it.
	"socket": func(s *oci.Spec, arg string) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/run/containerd/containerd.sock", Type: "bind", Source: arg, Options: []string{"bind", "ro"}})
	},
}

// addCap grants c for real: a non-root process keeps a capability across
// execve only through the ambient set.
func addCap(s *oci.Spec, c string) {
	caps := s.Process.Capabilities
	caps.Bounding, caps.Effective, caps.Permitted = append(caps.Bounding, c), append(caps.Effective, c), append(caps.Permitted, c)
	caps.Inheritable, caps.Ambient = append(caps.Inheritable, c), append(caps.Ambient, c)
}
