package seccomp_test

import (
	"bytes"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/seccomp"
)

var update = flag.Bool("update", false, "rewrite profiles/seccomp/default.json from seccomp.Build()")

const (
	shipped          = "../profiles/seccomp/default.json"
	shippedDoc       = "../docs/seccomp.md"
	shippedStrict    = "../profiles/seccomp/strict.json"
	shippedStrictDoc = "../docs/seccomp-strict.md"
)

// maxStrictX86_64 is the strict profile's ceiling on x86_64.
const maxStrictX86_64 = 180

// maxAllowedX86_64 is the goal; Docker's default allows 300.
const maxAllowedX86_64 = 270

func TestShippedProfileIsBuildOutput(t *testing.T) {
	got, err := seccomp.Marshal(seccomp.Build())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(shipped, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, profiles.DefaultSeccompJSON()) {
		t.Fatalf("%s differs from seccomp.Build(); run `go test ./seccomp -run Shipped -update` and rebuild", shipped)
	}
	doc, err := seccomp.Document(seccomp.Build())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(shippedDoc, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if onDisk, err := os.ReadFile(shippedDoc); err != nil || string(onDisk) != doc {
		t.Fatalf("%s is out of date (%v); run `go test ./seccomp -run Shipped -update`", shippedDoc, err)
	}
}

// golden compares generated text with the shipped file, rewriting it
// under -update.
func golden(t *testing.T, path string, want []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date (%v); run `go test ./seccomp -run Shipped -update` and rebuild", path, err)
	}
}

func TestShippedStrictProfileIsBuildStrictOutput(t *testing.T) {
	p, err := seccomp.BuildStrict()
	if err != nil {
		t.Fatal(err)
	}
	b, err := seccomp.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, shippedStrict, b)
	if !bytes.Equal(b, profiles.StrictSeccompJSON()) {
		t.Fatalf("the embedded strict profile differs from %s; rebuild", shippedStrict)
	}
	doc, err := seccomp.DocumentStrict(p)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, shippedStrictDoc, []byte(doc))
}

func TestAnswerModelsRuncsENOSYSForCallsNewerThanTheProfile(t *testing.T) {
	strict, err := seccomp.BuildStrict()
	if err != nil {
		t.Fatal(err)
	}
	// memfd_secret (447) is above every call strict names, and below calls
	// the default allows (futex_waitv, cachestat, ...).
	if got, _ := seccomp.Answer(strict, "memfd_secret"); got != "ENOSYS" {
		t.Errorf("strict: memfd_secret answers %s", got)
	}
	if got, _ := seccomp.Answer(seccomp.Build(), "memfd_secret"); got != "EPERM" {
		t.Errorf("default: memfd_secret answers %s", got)
	}
	if got, _ := seccomp.Answer(strict, "ptrace"); got != "EPERM" {
		t.Errorf("strict: ptrace answers %s", got)
	}
}

func TestStrictAllowsAtMost180OnX86_64(t *testing.T) {
	p, err := seccomp.Parse(profiles.StrictSeccompJSON())
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := seccomp.Allowed(p, specs.ArchX86_64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("strict: %d syscalls allowed on x86_64 (ceiling %d)", len(allowed), maxStrictX86_64)
	if len(allowed) > maxStrictX86_64 {
		t.Fatalf("strict allows %d syscalls on x86_64, more than %d", len(allowed), maxStrictX86_64)
	}
}

func TestStrictOnlyEverRemovesFromTheDefault(t *testing.T) {
	strict, err := seccomp.BuildStrict()
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []specs.Arch{specs.ArchX86_64, specs.ArchAARCH64} {
		def, _ := seccomp.Allowed(seccomp.Build(), arch)
		str, _ := seccomp.Allowed(strict, arch)
		for _, n := range str {
			if !slices.Contains(def, n) {
				t.Errorf("%s: strict allows %s, which the default denies", arch, n)
			}
		}
		if len(str) >= len(def) {
			t.Errorf("%s: strict allows %d, default %d", arch, len(str), len(def))
		}
	}
	for _, d := range seccomp.Denied() {
		if _, denied := seccomp.Answer(strict, d.Name); !denied {
			t.Errorf("strict allows %s", d.Name)
		}
	}
}

func TestAllowedOnX86_64StaysUnderGoal(t *testing.T) {
	p, err := seccomp.Parse(profiles.DefaultSeccompJSON())
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := seccomp.Allowed(p, specs.ArchX86_64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("x86_64 syscalls allowed: %d (goal <= %d)", len(allowed), maxAllowedX86_64)
	if len(allowed) > maxAllowedX86_64 {
		t.Fatalf("profile allows %d syscalls on x86_64, more than %d", len(allowed), maxAllowedX86_64)
	}
}

func TestDeniedSyscallsAreInNoAllowRule(t *testing.T) {
	p := seccomp.Build()
	for _, d := range seccomp.Denied() {
		for _, rule := range p.Syscalls {
			if rule.Action == specs.ActAllow && slices.Contains(rule.Names, d.Name) {
				t.Errorf("%s is denied (%s) but allowed by a rule", d.Name, d.Why)
			}
		}
	}
}

func TestBuiltProfileProperties(t *testing.T) {
	p := seccomp.Build()
	rulesFor := func(name string) []specs.LinuxSyscall {
		var out []specs.LinuxSyscall
		for _, r := range p.Syscalls {
			if slices.Contains(r.Names, name) {
				out = append(out, r)
			}
		}
		return out
	}
	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"default action denies with EPERM", func(t *testing.T) {
			if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet != nil {
				t.Fatalf("default %s errno %v", p.DefaultAction, p.DefaultErrnoRet)
			}
		}},
		{"only native 64-bit ABIs are listed", func(t *testing.T) {
			if !slices.Equal(p.Architectures, []specs.Arch{specs.ArchX86_64, specs.ArchAARCH64}) {
				t.Fatalf("architectures %v", p.Architectures)
			}
		}},
		{"clone3 answers ENOSYS so libc falls back to clone", func(t *testing.T) {
			r := rulesFor("clone3")
			if len(r) != 1 || r[0].Action != specs.ActErrno || r[0].ErrnoRet == nil || *r[0].ErrnoRet != 38 {
				t.Fatalf("clone3 rules %+v", r)
			}
		}},
		{"clone is allowed only without CLONE_NEW flags", func(t *testing.T) {
			r := rulesFor("clone")
			if len(r) != 1 || len(r[0].Args) != 1 || r[0].Args[0].Op != specs.OpMaskedEqual || r[0].Args[0].Value != 0x7E020000 || r[0].Args[0].ValueTwo != 0 {
				t.Fatalf("clone rules %+v", r)
			}
		}},
		{"io_uring is not allowed at all", func(t *testing.T) {
			for _, n := range []string{"io_uring_setup", "io_uring_enter", "io_uring_register"} {
				if len(rulesFor(n)) != 0 {
					t.Fatalf("%s has a rule", n)
				}
			}
		}},
		{"socket is allowed for unix, inet, inet6 and netlink only", func(t *testing.T) {
			var fams []uint64
			for _, r := range rulesFor("socket") {
				if r.Action != specs.ActAllow || len(r.Args) != 1 || r.Args[0].Op != specs.OpEqualTo || r.Args[0].Index != 0 {
					t.Fatalf("socket rule %+v", r)
				}
				fams = append(fams, r.Args[0].Value)
			}
			if !slices.Equal(fams, []uint64{1, 2, 10, 16}) {
				t.Fatalf("families %v", fams)
			}
		}},
		{"ioctl refuses TIOCSTI", func(t *testing.T) {
			r := rulesFor("ioctl")
			if len(r) != 1 || len(r[0].Args) != 1 || r[0].Args[0].Op != specs.OpNotEqual || r[0].Args[0].Value != 0x5412 {
				t.Fatalf("ioctl rules %+v", r)
			}
		}},
		{"personality keeps only the safe values", func(t *testing.T) {
			for _, r := range rulesFor("personality") {
				if len(r.Args) == 0 {
					t.Fatalf("unconditional personality rule")
				}
			}
		}},
		{"passes its own validation", func(t *testing.T) {
			if err := seccomp.Validate(p); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

func TestParseRefusesProfilesThatDoNotConfine(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"allow by default", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}`, "does not deny"},
		{"log by default", `{"defaultAction":"SCMP_ACT_LOG"}`, "does not deny"},
		{"no default action", `{"syscalls":[]}`, "defaultAction is missing"},
		{"misspelt syscall", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["reed"],"action":"SCMP_ACT_ALLOW"}]}`, `"reed" is not a syscall`},
		{"unknown action", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_MAYBE"}]}`, "unknown"},
		{"unknown field", `{"defaultAction":"SCMP_ACT_ERRNO","sycalls":[]}`, "unknown field"},
		{"same syscall twice", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"},{"names":["read"],"action":"SCMP_ACT_ERRNO"}]}`, "one rule"},
		{"argument index out of range", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}`, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := seccomp.Parse([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestParseAcceptsOtherArchitecturesNames(t *testing.T) {
	// A 32-bit name is fine in a profile that lists the 32-bit ABI.
	_, err := seccomp.Parse([]byte(`{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],"syscalls":[{"names":["_llseek","read"],"action":"SCMP_ACT_ALLOW"}]}`))
	if err != nil {
		t.Fatal(err)
	}
}

func TestAnswerMatchesWhatTheBuiltInProfileDoes(t *testing.T) {
	p := seccomp.Build()
	for _, tc := range []struct {
		call   string
		errno  string
		denied bool
	}{
		{"ptrace", "EPERM", true},
		{"clone3", "ENOSYS", true},
		{"memfd_create", "ENOSYS", true},
		{"socket(AF_PACKET)", "EPERM", true},
		{"socket", "", false},
		{"read", "", false},
		{"mount", "EPERM", true},
	} {
		errno, denied := seccomp.Answer(p, tc.call)
		if errno != tc.errno || denied != tc.denied {
			t.Errorf("%s: got %q %v, want %q %v", tc.call, errno, denied, tc.errno, tc.denied)
		}
	}
}
