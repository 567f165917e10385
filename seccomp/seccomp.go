// Package seccomp builds clawguard's tightened seccomp profile and checks any
// profile before it reaches runc, which silently ignores syscall names it cannot
// resolve: a typo in a deny list would otherwise pass unnoticed.
package seccomp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	ctrdseccomp "github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
)

// SupportedArches are the architectures a profile's names are checked against.
// A name that resolves on none of them is a mistake, not a future syscall.
var supportedArches = []specs.Arch{specs.ArchX86_64, specs.ArchAARCH64}

// Build returns the built-in profile: the container baseline for a process with
// no capabilities, minus every group in denials(), with the socket, ioctl and
// clone3 rules replaced by tighter ones. It is pure; the shipped JSON under
// profiles/seccomp is its output (see the golden test).
//
// Only the native 64-bit ABIs are listed: 32-bit x86 syscalls reach socket(2)
// through socketcall(2), where the family cannot be filtered, so they are
// refused wholesale.
func Build() *specs.LinuxSeccomp {
	base := ctrdseccomp.DefaultProfile(&specs.Spec{
		Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}},
	})

	drop := map[string]bool{"socket": true, "ioctl": true, "clone3": true, "memfd_create": true}
	for _, d := range denials() {
		for _, n := range d.names {
			drop[n] = true
		}
	}

	out := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: slices.Clone(supportedArches),
	}
	var plain []string
	for _, rule := range base.Syscalls {
		if rule.Action != specs.ActAllow {
			continue
		}
		var keep []string
		for _, n := range rule.Names {
			if !drop[n] && existsOn(n, supportedArches) {
				keep = append(keep, n)
			}
		}
		if len(keep) == 0 {
			continue
		}
		if len(rule.Args) == 0 {
			plain = append(plain, keep...)
			continue
		}
		rule.Names = keep
		out.Syscalls = append(out.Syscalls, rule)
	}
	sort.Strings(plain)
	plain = slices.Compact(plain)
	out.Syscalls = append([]specs.LinuxSyscall{{Names: plain, Action: specs.ActAllow}}, out.Syscalls...)

	for _, family := range []uint64{afUnix, afInet, afInet6, afNetlink} {
		out.Syscalls = append(out.Syscalls, specs.LinuxSyscall{
			Names:  []string{"socket"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: 0, Value: family, Op: specs.OpEqualTo}},
		})
	}
	errno := uint(enosys)
	out.Syscalls = append(out.Syscalls,
		specs.LinuxSyscall{
			Names:  []string{"ioctl"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: 1, Value: tiocsti, Op: specs.OpNotEqual}},
		},
		specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &errno},
		// A memfd is an executable file on no mount: noexec cannot stop a
		// downloaded binary run from one (exec of /proc/self/fd/N). ENOSYS,
		// so that libraries that want one fall back to /dev/shm, which is
		// noexec.
		specs.LinuxSyscall{Names: []string{"memfd_create"}, Action: specs.ActErrno, ErrnoRet: &errno},
	)
	return out
}

// Denied returns every syscall name the built-in profile removes from the
// baseline, each with the reason, in the order of the documented rule list.
func Denied() []Denial {
	var out []Denial
	for _, d := range denials() {
		for _, n := range d.names {
			out = append(out, Denial{Name: n, Why: d.why})
		}
	}
	return out
}

// Denial is one syscall the built-in profile removes, and why.
type Denial struct {
	Name string
	Why  string
}

// Marshal renders a profile as indented OCI JSON with a trailing newline.
func Marshal(p *specs.LinuxSeccomp) ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode seccomp profile: %w", err)
	}
	return append(b, '\n'), nil
}

// Parse decodes OCI seccomp JSON strictly and validates it.
func Parse(data []byte) (*specs.LinuxSeccomp, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p specs.LinuxSeccomp
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decode seccomp JSON: %w", err)
	}
	if err := Validate(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate refuses profiles that would not confine the process or that runc
// would quietly misread: an allowing default action, unknown actions or
// operators, names that exist on none of the profile's architectures (or, if
// it lists none, on none of x86_64 and aarch64), and a name that
// has an unconditional rule and another rule (runc applies the first only).
func Validate(p *specs.LinuxSeccomp) error {
	var errs []error
	switch p.DefaultAction {
	case specs.ActErrno, specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap:
	case "":
		errs = append(errs, errors.New("defaultAction is missing: use SCMP_ACT_ERRNO"))
	default:
		errs = append(errs, fmt.Errorf("defaultAction %s does not deny: use SCMP_ACT_ERRNO", p.DefaultAction))
	}
	for _, a := range p.Architectures {
		if _, err := libseccomp.GetArchFromString(archName(a)); err != nil {
			errs = append(errs, fmt.Errorf("architecture %s is unknown to libseccomp", a))
		}
	}
	arches := p.Architectures
	if len(arches) == 0 {
		arches = supportedArches
	}
	unconditional := map[string]int{}
	ruleCount := map[string]int{}
	for i, rule := range p.Syscalls {
		if _, ok := knownActions[rule.Action]; !ok {
			errs = append(errs, fmt.Errorf("syscalls[%d]: action %q is unknown", i, rule.Action))
		}
		if len(rule.Names) == 0 {
			errs = append(errs, fmt.Errorf("syscalls[%d]: names is empty", i))
		}
		for _, arg := range rule.Args {
			if arg.Index > 5 {
				errs = append(errs, fmt.Errorf("syscalls[%d]: argument index %d is out of range 0-5", i, arg.Index))
			}
			if _, ok := knownOps[arg.Op]; !ok {
				errs = append(errs, fmt.Errorf("syscalls[%d]: operator %q is unknown", i, arg.Op))
			}
		}
		for _, n := range rule.Names {
			if !existsOn(n, arches) {
				errs = append(errs, fmt.Errorf("syscalls[%d]: %q is not a syscall on %v (runc would ignore it silently)", i, n, arches))
			}
			ruleCount[n]++
			if len(rule.Args) == 0 {
				unconditional[n]++
			}
		}
	}
	for n, c := range unconditional {
		if ruleCount[n] > 1 && c > 0 {
			errs = append(errs, fmt.Errorf("syscall %q has an unconditional rule and %d other rule(s): runc applies only the first, keep it in one rule", n, ruleCount[n]-1))
		}
	}
	return errors.Join(errs...)
}

// Allowed returns the syscalls a profile allows on arch (conditionally or not),
// as libseccomp resolves them there: names that do not exist on arch do not
// count, and aliases of one number count once.
func Allowed(p *specs.LinuxSeccomp, arch specs.Arch) ([]string, error) {
	a, err := libseccomp.GetArchFromString(archName(arch))
	if err != nil {
		return nil, fmt.Errorf("architecture %s: %w", arch, err)
	}
	seen := map[libseccomp.ScmpSyscall]string{}
	for _, rule := range p.Syscalls {
		if rule.Action != specs.ActAllow {
			continue
		}
		for _, n := range rule.Names {
			nr, err := libseccomp.GetSyscallFromNameByArch(n, a)
			if err != nil || nr < 0 {
				continue
			}
			if _, dup := seen[nr]; !dup {
				seen[nr] = n
			}
		}
	}
	names := make([]string, 0, len(seen))
	for _, n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func existsOn(name string, arches []specs.Arch) bool {
	for _, arch := range arches {
		a, err := libseccomp.GetArchFromString(archName(arch))
		if err != nil {
			continue
		}
		if nr, err := libseccomp.GetSyscallFromNameByArch(name, a); err == nil && nr >= 0 {
			return true
		}
	}
	return false
}

// archName maps the OCI spelling (SCMP_ARCH_X86_64) to libseccomp's (x86_64).
func archName(a specs.Arch) string {
	switch a {
	case specs.ArchX86_64:
		return "amd64"
	case specs.ArchAARCH64:
		return "arm64"
	case specs.ArchX86:
		return "x86"
	case specs.ArchX32:
		return "x32"
	case specs.ArchARM:
		return "arm"
	}
	return string(a)
}

var knownActions = map[specs.LinuxSeccompAction]struct{}{
	specs.ActKill: {}, specs.ActKillProcess: {}, specs.ActKillThread: {}, specs.ActTrap: {},
	specs.ActErrno: {}, specs.ActTrace: {}, specs.ActAllow: {}, specs.ActLog: {}, specs.ActNotify: {},
}

var knownOps = map[specs.LinuxSeccompOperator]struct{}{
	specs.OpNotEqual: {}, specs.OpLessThan: {}, specs.OpLessEqual: {}, specs.OpEqualTo: {},
	specs.OpGreaterEqual: {}, specs.OpGreaterThan: {}, specs.OpMaskedEqual: {},
}

// Document renders the rule list as Markdown: what the built-in profile
// starts from, what it removes and why, and the resulting counts.
func Document(p *specs.LinuxSeccomp) (string, error) {
	var b strings.Builder
	b.WriteString("# The built-in seccomp profile\n\n")
	b.WriteString("Generated from `seccomp/rules.go` by `go test ./seccomp -run Shipped -update`; do not edit by hand.\n\n")
	b.WriteString("clawguard starts from Docker's default profile as it applies to a container with no capabilities (containerd ships\n")
	b.WriteString("the same list) and removes the calls below. Removed calls are left out of every allow rule, so the default action\n")
	b.WriteString("answers them with EPERM; clone3 answers ENOSYS so that libc and Node fall back to clone(2), whose flags can be\n")
	b.WriteString("checked, and memfd_create answers ENOSYS so that a library that wants one falls back to /dev/shm, which is noexec.\n")
	b.WriteString("Only the native 64-bit ABIs (x86_64, aarch64) are listed: 32-bit x86 reaches sockets through socketcall(2),\n")
	b.WriteString("where the address family cannot be filtered, so that ABI is refused as a whole.\n\n")
	for _, arch := range supportedArches {
		allowed, err := Allowed(p, arch)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "- syscalls allowed on %s: **%d**\n", arch, len(allowed))
	}
	b.WriteString("\n## Removed\n\n| syscalls | why |\n|---|---|\n")
	for _, d := range denials() {
		fmt.Fprintf(&b, "| %s | %s |\n", strings.Join(d.names, ", "), d.why)
	}
	b.WriteString("\n## Narrowed\n\n| syscall | allowed only when |\n|---|---|\n")
	b.WriteString("| socket | the family is AF_UNIX, AF_INET, AF_INET6 or AF_NETLINK (no packet, vsock, alg, bluetooth, ...) |\n")
	b.WriteString("| ioctl | the request is not TIOCSTI (no typing into a shared terminal) |\n")
	b.WriteString("| clone | no CLONE_NEW* flag is set (no new namespaces) |\n")
	b.WriteString("| personality | the value is one of Docker's safe ones (no disabling ASLR) |\n")
	b.WriteString("| clone3 | never: answers ENOSYS |\n")
	b.WriteString("| memfd_create | never: answers ENOSYS (a memfd is an executable file on no mount, so noexec cannot stop a downloaded binary run from one) |\n")
	return b.String(), nil
}
