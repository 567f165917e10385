package seccomp

import (
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Answer says how a profile answers a call the verify probe makes: the errno
// name it fails with, or denied false if the profile lets it through.
//
// call is a syscall name, optionally with the dangerous argument the probe
// passes, as in "socket(AF_PACKET)". Such a call is judged denied when the
// profile allows the syscall only conditionally: the built-in profiles'
// conditions leave exactly those arguments out, and for any other profile a
// wrong guess shows up as a failed check naming the call, never a silent pass.
//
// Like runc, a call newer than every call the profile names answers ENOSYS
// rather than the default errno, so that libc can tell "not here" from
// "forbidden" for syscalls the profile predates.
func Answer(p *specs.LinuxSeccomp, call string) (errno string, denied bool) {
	errno, denied = answer(p, call)
	if denied && errno != "ENOSYS" && newerThanProfile(p, call) {
		return "ENOSYS", true
	}
	return errno, denied
}

func answer(p *specs.LinuxSeccomp, call string) (errno string, denied bool) {
	name, withArgs := strings.CutSuffix(call, ")")
	name, _, _ = strings.Cut(name, "(")
	conditional := false
	for _, r := range p.Syscalls {
		if !containsName(r.Names, name) {
			continue
		}
		switch {
		case r.Action == specs.ActAllow && len(r.Args) == 0:
			return "", false
		case r.Action == specs.ActAllow:
			conditional = true
		case r.Action == specs.ActErrno && len(r.Args) == 0:
			return errnoName(r.ErrnoRet), true
		}
	}
	if conditional && !withArgs {
		return "", false
	}
	if p.DefaultAction != specs.ActErrno {
		return "", false
	}
	return errnoName(p.DefaultErrnoRet), true
}

// newerThanProfile reports whether call's number on this machine is above
// every number the profile's rules name.
func newerThanProfile(p *specs.LinuxSeccomp, call string) bool {
	name, _, _ := strings.Cut(call, "(")
	nr, err := libseccomp.GetSyscallFromName(name)
	if err != nil {
		return false
	}
	highest := libseccomp.ScmpSyscall(-1)
	for _, r := range p.Syscalls {
		for _, n := range r.Names {
			if x, err := libseccomp.GetSyscallFromName(n); err == nil && x > highest {
				highest = x
			}
		}
	}
	return nr > highest
}

func containsName(names []string, n string) bool {
	for _, x := range names {
		if x == n {
			return true
		}
	}
	return false
}

func errnoName(ret *uint) string {
	if ret == nil {
		return "EPERM"
	}
	return unix.ErrnoName(syscall.Errno(*ret))
}
