package seccomp

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// traces are the syscall sets the compatibility workloads made, recorded by
// traces/record.sh: one file per workload, one name per line, # comments.
//
//go:embed traces/*.txt
var traces embed.FS

// Trace is one recorded workload.
type Trace struct {
	Name     string
	What     string // the workload, from the file's first comment
	Syscalls []string
}

// Traces returns the recorded workloads, by name.
func Traces() ([]Trace, error) {
	files, err := fs.Glob(traces, "traces/*.txt")
	if err != nil {
		return nil, err
	}
	var out []Trace
	for _, f := range files {
		b, err := traces.ReadFile(f)
		if err != nil {
			return nil, err
		}
		t := Trace{Name: strings.TrimSuffix(path.Base(f), ".txt")}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "":
			case strings.HasPrefix(line, "#"):
				if t.What == "" {
					t.What = strings.TrimSpace(strings.TrimPrefix(line, "#"))
				}
			default:
				t.Syscalls = append(t.Syscalls, line)
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// runtimeNeeds are calls the sandbox needs whatever the workload: the
// runtime installs the filter and then executes the agent.
var runtimeNeeds = []string{"execve", "exit", "exit_group", "rt_sigreturn"}

// genericEquivalents maps the legacy calls an x86_64 libc makes to the
// calls the same code makes on architectures without them (aarch64 has only
// the *at and numbered variants). The traces are recorded on x86_64, so
// without this the aarch64 profile would miss calls the workloads make there.
var genericEquivalents = map[string][]string{
	"open": {"openat"}, "creat": {"openat"}, "stat": {"newfstatat"}, "lstat": {"newfstatat"},
	"access": {"faccessat", "faccessat2"}, "pipe": {"pipe2"}, "dup2": {"dup3"}, "poll": {"ppoll"},
	"select": {"pselect6"}, "fork": {"clone"}, "vfork": {"clone"}, "readlink": {"readlinkat"},
	"unlink": {"unlinkat"}, "rmdir": {"unlinkat"}, "rename": {"renameat2"}, "mkdir": {"mkdirat"},
	"chmod": {"fchmodat"}, "chown": {"fchownat"}, "lchown": {"fchownat"}, "symlink": {"symlinkat"},
	"link": {"linkat"}, "getdents": {"getdents64"}, "epoll_wait": {"epoll_pwait"},
	"epoll_create": {"epoll_create1"}, "eventfd": {"eventfd2"}, "inotify_init": {"inotify_init1"},
	"signalfd": {"signalfd4"}, "utimes": {"utimensat"}, "futimesat": {"utimensat"},
	"getpgrp": {"getpgid"}, "pause": {"ppoll"}, "alarm": {"setitimer"},
}

// BuildStrict returns the strict profile: the built-in profile's rules
// (argument filters and all), keeping only the calls the recorded workloads
// made and the runtime needs. It can only remove calls from Build(), never
// add one.
func BuildStrict() (*specs.LinuxSeccomp, error) {
	ts, err := Traces()
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("no recorded traces")
	}
	want := map[string]bool{}
	for _, n := range runtimeNeeds {
		want[n] = true
	}
	for _, t := range ts {
		for _, n := range t.Syscalls {
			want[n] = true
			for _, g := range genericEquivalents[n] {
				want[g] = true
			}
		}
	}
	base := Build()
	out := &specs.LinuxSeccomp{DefaultAction: base.DefaultAction, DefaultErrnoRet: base.DefaultErrnoRet, Architectures: slices.Clone(base.Architectures)}
	for _, r := range base.Syscalls {
		if r.Action != specs.ActAllow {
			out.Syscalls = append(out.Syscalls, r) // denials with their own errno stay
			continue
		}
		var keep []string
		for _, n := range r.Names {
			if want[n] {
				keep = append(keep, n)
			}
		}
		if len(keep) > 0 {
			r.Names = keep
			out.Syscalls = append(out.Syscalls, r)
		}
	}
	return out, Validate(out)
}

// DocumentStrict renders how the strict profile was derived and what it
// allows, with the workloads that use each call.
func DocumentStrict(p *specs.LinuxSeccomp) (string, error) {
	ts, err := Traces()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# The strict seccomp profile\n\n")
	b.WriteString("Generated from `seccomp/strict.go` and the traces in `seccomp/traces/` by `go test ./seccomp -run Shipped -update`;\n")
	b.WriteString("do not edit by hand. Select it in a profile with `seccomp: strict`.\n\n")
	b.WriteString("The strict profile is the built-in profile (see [seccomp.md](seccomp.md)) with every call removed that none of the\n")
	b.WriteString("agent workloads below made. Each workload was run under `strace -f` by `seccomp/traces/record.sh`, as user nobody in\n")
	b.WriteString("a network namespace of its own; the names it called are in `seccomp/traces/NAME.txt`. A call the built-in profile\n")
	b.WriteString("denies stays denied even if a workload tried it (the probe tries them all, to check they fail). Argument filters\n")
	b.WriteString("(socket families, clone flags, ioctl, personality) are kept as they are.\n\n")
	b.WriteString("The traces are recorded on x86_64. So that the same code runs on aarch64, which has only the `*at` and numbered\n")
	b.WriteString("variants of the legacy calls, each legacy call also allows its equivalent (open: openat, stat: newfstatat, ...).\n")
	b.WriteString("The aarch64 profile is derived, not recorded: it is untested on aarch64 hardware.\n\n")
	for _, arch := range supportedArches {
		allowed, err := Allowed(p, arch)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "- syscalls allowed on %s: **%d**\n", arch, len(allowed))
	}
	b.WriteString("\n## Workloads\n\n| trace | workload | calls |\n|---|---|---|\n")
	users := map[string][]string{}
	for _, t := range ts {
		fmt.Fprintf(&b, "| `%s` | %s | %d |\n", t.Name, t.What, len(t.Syscalls))
		for _, n := range t.Syscalls {
			users[n] = append(users[n], t.Name)
		}
	}
	allowed, err := Allowed(p, specs.ArchX86_64)
	if err != nil {
		return "", err
	}
	b.WriteString("\n## Allowed on x86_64, and who needs each call\n\n| syscall | traced in |\n|---|---|\n")
	for _, n := range allowed {
		who := strings.Join(users[n], ", ")
		switch {
		case slices.Contains(runtimeNeeds, n) && who == "":
			who = "(the runtime: executing the agent)"
		case who == "":
			who = "(the generic equivalent of a traced legacy call)"
		}
		fmt.Fprintf(&b, "| %s | %s |\n", n, who)
	}
	return b.String(), nil
}
