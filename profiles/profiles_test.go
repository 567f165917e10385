package profiles

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixture is a profile directory with a workspace, config and a private
// secrets directory, like a user's project folder.
func fixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"workspace", "config"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "api_key"), []byte("value"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

const validProfile = `
name: agent
image: docker.io/library/busybox:latest
mounts:
  - {source: ./workspace, target: /workspace, read_only: false}
  - {source: ./config, target: /home/node/.openclaw, read_only: true}
secrets: {dir: ./secrets}
`

func testPolicy(dir string) SourcePolicy {
	return SourcePolicy{StateDir: filepath.Join(dir, "clawguard-state"), Homes: []string{"/root", "/home/alice"}}
}

func TestValidProfileGetsTheThreatModelDefaults(t *testing.T) {
	dir := fixture(t)
	p, err := Parse([]byte(validProfile), "p.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(p, testPolicy(dir)); err != nil {
		t.Fatal(err)
	}
	if p.User != "1000:1000" || !*p.ReadOnlyRootfs || p.Seccomp != "default" {
		t.Errorf("identity defaults: user %q ro %v seccomp %q", p.User, *p.ReadOnlyRootfs, p.Seccomp)
	}
	if p.Resources.Memory.Bytes != 1<<30 || *p.Resources.CPUs != 1.0 || *p.Resources.Pids != 100 {
		t.Errorf("resource defaults: %+v", p.Resources)
	}
	if len(p.Tmpfs) != 1 || p.Tmpfs[0].Path != "/tmp" || p.Tmpfs[0].Size.Bytes != 100<<20 {
		t.Errorf("tmpfs default: %+v", p.Tmpfs)
	}
	if p.StopTimeout.Seconds() != 10 {
		t.Errorf("stop_timeout default %v", p.StopTimeout)
	}
}

func TestLogsAreCappedByDefaultAndTakeTheirLimits(t *testing.T) {
	tests := []struct {
		name     string
		logs     string
		wantSize int64
		wantKeep int
	}{
		{"no logs section: 10M and two older files", "", 10 << 20, 2},
		{"keep 0 is kept, not taken for the default", "logs: {keep: 0}\n", 10 << 20, 0},
		{"the smallest size", "logs: {max_size: 64K, keep: 10}\n", 64 << 10, 10},
		{"the largest size", "logs: {max_size: 1G}\n", 1 << 30, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fixture(t)
			p, err := Parse([]byte(validProfile+tt.logs), "p.yaml", dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := Validate(p, testPolicy(dir)); err != nil {
				t.Fatal(err)
			}
			if p.Logs.MaxSize.Bytes != tt.wantSize || p.Logs.Keep == nil || *p.Logs.Keep != tt.wantKeep {
				t.Fatalf("logs = %v, keep %v; want %d, %d", p.Logs.MaxSize, p.Logs.Keep, tt.wantSize, tt.wantKeep)
			}
		})
	}
}

func TestBuiltinOpenclawProfileIsValidOnceInitWroteItsFiles(t *testing.T) {
	dir := fixture(t)
	if _, err := Init("openclaw", dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	p, err := LoadBuiltin("openclaw", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(p, testPolicy(dir)); err != nil {
		t.Fatal(err)
	}
	if p.Name != "openclaw" || *p.Resources.Pids != 100 || p.Resources.Memory.Bytes != 1<<30 || len(p.Capabilities) != 0 {
		t.Fatalf("built-in profile lost a control: %+v", p)
	}
}

// TestInvalidProfilesNameTheirField feeds one broken field at a time and
// checks that validation refuses it and says which field.
func TestInvalidProfilesNameTheirField(t *testing.T) {
	dir := fixture(t)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("/etc", filepath.Join(dir, "etc-link")))
	must(os.Mkdir(filepath.Join(dir, "open-secrets"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "linked-secrets"), 0o700))
	must(os.Symlink("/etc/hostname", filepath.Join(dir, "linked-secrets", "k")))
	must(os.Mkdir(filepath.Join(dir, "loose-secrets"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "loose-secrets", "k"), []byte("v"), 0o644))

	tests := []struct {
		name, yaml, field string
	}{
		{"unknown key", "name: a\nimage: busybox\nprivileged: true\n", "privileged"},
		{"unknown nested key", "name: a\nimage: busybox\nresources: {memory: 1G, swap: 2G}\n", "swap"},
		{"bad name", "name: Bad_Name!\nimage: busybox\n", "name"},
		{"missing name", "image: busybox\n", "name"},
		{"missing image", "name: a\n", "image"},
		{"malformed image", "name: a\nimage: 'UPPER/Case::x'\n", "image"},
		{"uid 0", "name: a\nimage: busybox\nuser: \"0:0\"\n", "user"},
		{"gid 0", "name: a\nimage: busybox\nuser: \"1000:0\"\n", "user"},
		{"user by name", "name: a\nimage: busybox\nuser: node\n", "user"},
		{"seccomp unconfined", "name: a\nimage: busybox\nseccomp: unconfined\n", "seccomp"},
		{"seccomp file missing", "name: a\nimage: busybox\nseccomp: ./nope.json\n", "seccomp"},
		{"capability SYS_ADMIN", "name: a\nimage: busybox\ncapabilities: [SYS_ADMIN]\n", "capabilities[0]"},
		{"unknown capability", "name: a\nimage: busybox\ncapabilities: [FLY]\n", "capabilities[0]"},
		{"mount /", "name: a\nimage: busybox\nmounts: [{source: /, target: /host}]\n", "mounts[0].source"},
		{"mount /etc", "name: a\nimage: busybox\nmounts: [{source: /etc, target: /x}]\n", "mounts[0].source"},
		{"mount docker.sock", "name: a\nimage: busybox\nmounts: [{source: /var/run/docker.sock, target: /x}]\n", "mounts[0].source"},
		{"mount /var contains containerd state", "name: a\nimage: busybox\nmounts: [{source: /var, target: /x}]\n", "mounts[0].source"},
		{"mount symlink to /etc", "name: a\nimage: busybox\nmounts: [{source: ./etc-link, target: /x}]\n", "mounts[0].source"},
		{"mount missing source", "name: a\nimage: busybox\nmounts: [{source: ./missing, target: /x}]\n", "mounts[0].source"},
		{"mount relative target", "name: a\nimage: busybox\nmounts: [{source: ./workspace, target: workspace}]\n", "mounts[0].target"},
		{"mount over /proc", "name: a\nimage: busybox\nmounts: [{source: ./workspace, target: /proc/x}]\n", "mounts[0].target"},
		{"duplicate target", "name: a\nimage: busybox\nmounts: [{source: ./workspace, target: /tmp}]\n", "mounts[0].target"},
		{"secrets dir 0755", "name: a\nimage: busybox\nsecrets: {dir: ./open-secrets}\n", "secrets.dir"},
		{"secret is a symlink", "name: a\nimage: busybox\nsecrets: {dir: ./linked-secrets}\n", "secrets.dir"},
		{"secret file 0644", "name: a\nimage: busybox\nsecrets: {dir: ./loose-secrets}\n", "secrets.dir"},
		{"secret-looking env", "name: a\nimage: busybox\nenv: {ANTHROPIC_API_KEY: sk-123}\n", "env.ANTHROPIC_API_KEY"},
		{"token env", "name: a\nimage: busybox\nenv: {GITHUB_TOKEN: x}\n", "env.GITHUB_TOKEN"},
		{"credential of a missing secret", "name: a\nimage: busybox\nsecrets: {dir: ./secrets}\negress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: api.example.com, ports: [443]}, {host: plain.example.com, ports: [443], tls: false}]}\ncredentials: [{secret: nope, preset: anthropic}]\n", "credentials[0].secret"},
		{"credential of a path", "name: a\nimage: busybox\nsecrets: {dir: ./secrets}\negress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: api.example.com, ports: [443]}, {host: plain.example.com, ports: [443], tls: false}]}\ncredentials: [{secret: ../api_key, preset: anthropic}]\n", "credentials[0].secret"},
		{"credential with an unknown preset", "name: a\nimage: busybox\nsecrets: {dir: ./secrets}\negress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: api.example.com, ports: [443]}, {host: plain.example.com, ports: [443], tls: false}]}\ncredentials: [{secret: api_key, preset: gemini}]\n", "credentials[0].preset"},
		{"credential with a preset and hosts", "name: a\nimage: busybox\nsecrets: {dir: ./secrets}\negress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: api.example.com, ports: [443]}, {host: plain.example.com, ports: [443], tls: false}]}\ncredentials: [{secret: api_key, preset: anthropic, hosts: [api.example.com]}]\n", "credentials[0]"},
		{"credential with no hosts", "name: a\nimage: busybox\nsecrets: {dir: ./secrets}\negress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: api.example.com, ports: [443]}, {host: plain.example.com, ports: [443], tls: false}]}\ncredentials: [{secret: api_key, header: Authorization}]\n", "credentials[0].hosts"},
		{"credential with a bad header", "name: a\nimage: busybox\nsecrets: {dir: ./secrets}\negress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: api.example.com, ports: [443]}, {host: plain.example.com, ports: [443], tls: false}]}\ncredentials: [{secret: api_key, hosts: [api.example.com], header: 'x y'}]\n", "credentials[0].header"},
		{"credential with a line break in its scheme", "name: a\nimage: busybox\nsecrets: {dir: ./secrets}\negress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: api.example.com, ports: [443]}, {host: plain.example.com, ports: [443], tls: false}]}\ncredentials: [{secret: api_key, hosts: [api.example.com], header: Authorization, scheme: \"Bearer\\n\"}]\n", "credentials[0].scheme"},
		{"credential for a host not allowlisted", "name: a\nimage: busybox\nsecrets: {dir: ./secrets}\negress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: api.example.com, ports: [443]}, {host: plain.example.com, ports: [443], tls: false}]}\ncredentials: [{secret: api_key, hosts: [other.example.com], header: Authorization}]\n", "credentials[0].hosts"},
		{"credential for a host checked by address only", "name: a\nimage: busybox\nsecrets: {dir: ./secrets}\negress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: api.example.com, ports: [443]}, {host: plain.example.com, ports: [443], tls: false}]}\ncredentials: [{secret: api_key, hosts: [plain.example.com], header: Authorization}]\n", "credentials[0].hosts"},
		{"one secret bound twice", "name: a\nimage: busybox\nsecrets: {dir: ./secrets}\negress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: api.example.com, ports: [443]}, {host: plain.example.com, ports: [443], tls: false}]}\ncredentials: [{secret: api_key, preset: anthropic}, {secret: api_key, hosts: [api.example.com], header: Authorization}]\n", "credentials[1].secret"},
		{"credentials without a secrets dir", "name: a\nimage: busybox\negress: {allow: [{host: api.anthropic.com, ports: [443]}]}\ncredentials: [{secret: api_key, preset: anthropic}]\n", "credentials"},
		{"an unknown tripwire action", "name: a\nimage: busybox\non_tripwire: explode\n", "on_tripwire"},
		{"non-loopback publish", "name: a\nimage: busybox\npublish: [\"0.0.0.0:18789:18789\"]\n", "publish[0]"},
		{"publish without address", "name: a\nimage: busybox\npublish: [\"18789:18789\"]\n", "publish[0]"},
		{"memory 0", "name: a\nimage: busybox\nresources: {memory: 0}\n", "resources.memory"},
		{"pids -1", "name: a\nimage: busybox\nresources: {pids: -1}\n", "resources.pids"},
		{"cpus 0", "name: a\nimage: busybox\nresources: {cpus: 0}\n", "resources.cpus"},
		{"tmpfs exec", "name: a\nimage: busybox\ntmpfs: [{path: /tmp, size: 10m, options: [exec]}]\n", "tmpfs[0].options"},
		{"tmpfs larger than memory", "name: a\nimage: busybox\nresources: {memory: 64m}\ntmpfs: [{path: /tmp, size: 1G}]\n", "tmpfs[0].size"},
		{"egress host and cidr", "name: a\nimage: busybox\negress: {allow: [{host: a.example.com, cidr: 198.51.100.0/24, ports: [443]}]}\n", "egress.allow[0]"},
		{"egress bad port", "name: a\nimage: busybox\negress: {allow: [{host: a.example.com, ports: [0]}]}\n", "egress.allow[0].ports"},
		{"egress bad host", "name: a\nimage: busybox\negress: {allow: [{host: 'exa mple', ports: [443]}]}\n", "egress.allow[0].host"},
		{"wildcard on a public suffix", "name: a\nimage: busybox\negress: {allow: [{host: '*.co.uk', ports: [443]}]}\n", "egress.allow[0].host"},
		{"wildcard on a private public suffix", "name: a\nimage: busybox\negress: {allow: [{host: '*.github.io', ports: [443]}]}\n", "egress.allow[0].host"},
		{"wildcard on an any-address zone", "name: a\nimage: busybox\negress: {allow: [{host: '*.compute-1.amazonaws.com', ports: [443]}]}\n", "egress.allow[0].host"},
		{"wildcard under an any-address zone", "name: a\nimage: busybox\negress: {allow: [{host: '*.x.nip.io', ports: [443]}]}\n", "egress.allow[0].host"},
		{"cidr over cloud metadata", "name: a\nimage: busybox\negress: {allow: [{cidr: 169.254.169.254/32, ports: [80]}]}\n", "egress.allow[0].cidr"},
		{"cidr over loopback", "name: a\nimage: busybox\negress: {allow: [{cidr: 127.0.0.0/16, ports: [80]}]}\n", "egress.allow[0].cidr"},
		{"too few connections", "name: a\nimage: busybox\nresources: {connections: 4}\n", "resources.connections"},
		{"egress unknown protocol", "name: a\nimage: busybox\negress: {allow: [{host: a.example.com, ports: [443], protocols: [quic]}]}\n", "egress.allow[0].protocols"},
		{"egress protocol twice", "name: a\nimage: busybox\negress: {allow: [{host: a.example.com, ports: [443], protocols: [udp, udp]}]}\n", "egress.allow[0].protocols"},
		{"egress empty protocols", "name: a\nimage: busybox\negress: {allow: [{host: a.example.com, ports: [443], protocols: []}]}\n", "egress.allow[0].protocols"},
		{"max_names on an exact name", "name: a\nimage: busybox\negress: {allow: [{host: a.example.com, ports: [443], max_names: 10}]}\n", "egress.allow[0].max_names"},
		{"new_names_per_minute on a cidr", "name: a\nimage: busybox\negress: {allow: [{cidr: 198.51.100.0/24, ports: [443], new_names_per_minute: 10}]}\n", "egress.allow[0].new_names_per_minute"},
		{"max_names 0", "name: a\nimage: busybox\negress: {allow: [{host: '*.example.com', ports: [443], max_names: 0}]}\n", "egress.allow[0].max_names"},
		{"max_names over 100000", "name: a\nimage: busybox\negress: {allow: [{host: '*.example.com', ports: [443], max_names: 100001}]}\n", "egress.allow[0].max_names"},
		{"new_names_per_minute 0", "name: a\nimage: busybox\negress: {allow: [{host: '*.example.com', ports: [443], new_names_per_minute: 0}]}\n", "egress.allow[0].new_names_per_minute"},
		{"new_names_per_minute over 10000", "name: a\nimage: busybox\negress: {allow: [{host: '*.example.com', ports: [443], new_names_per_minute: 10001}]}\n", "egress.allow[0].new_names_per_minute"},
		{"stop_timeout zero", "name: a\nimage: busybox\nstop_timeout: -1s\n", "stop_timeout"},
		{"log files below 64K", "name: a\nimage: busybox\nlogs: {max_size: 63k}\n", "logs.max_size"},
		{"log files of no size", "name: a\nimage: busybox\nlogs: {max_size: 0}\n", "logs.max_size"},
		{"log files above 1G", "name: a\nimage: busybox\nlogs: {max_size: 2G}\n", "logs.max_size"},
		{"more than ten old logs", "name: a\nimage: busybox\nlogs: {keep: 11}\n", "logs.keep"},
		{"negative old logs", "name: a\nimage: busybox\nlogs: {keep: -1}\n", "logs.keep"},
		{"unknown logs key", "name: a\nimage: busybox\nlogs: {max_files: 3}\n", "max_files"},
		{"tls on a cidr", "name: a\nimage: busybox\negress: {allow: [{cidr: 198.51.100.0/24, ports: [443], tls: true}]}\n", "egress.allow[0].tls"},
		{"tls on udp only", "name: a\nimage: busybox\negress: {allow: [{host: a.example.com, ports: [443], protocols: [udp], tls: true}]}\n", "egress.allow[0].tls"},
		{"tls beside udp (QUIC past the gate)", "name: a\nimage: busybox\negress: {allow: [{host: a.example.com, ports: [443], protocols: [tcp, udp], tls: true}]}\n", "egress.allow[0].tls"},
		{"udp on 443 beside the gate's default", "name: a\nimage: busybox\negress: {allow: [{host: a.example.com, ports: [443], protocols: [tcp, udp]}]}\n", "egress.allow[0].protocols"},
		{"QUIC alone on 443 by default", "name: a\nimage: busybox\negress: {allow: [{host: a.example.com, ports: [443], protocols: [udp]}]}\n", "egress.allow[0].protocols"},
		{"volume without a size", "name: a\nimage: busybox\nvolumes: [{name: work, target: /workspace}]\n", "volumes[0].size"},
		{"volume below 16M", "name: a\nimage: busybox\nvolumes: [{name: work, target: /workspace, size: 8m}]\n", "volumes[0].size"},
		{"volume above 1T", "name: a\nimage: busybox\nvolumes: [{name: work, target: /workspace, size: 2T}]\n", "volumes[0].size"},
		{"volume with a path for a name", "name: a\nimage: busybox\nvolumes: [{name: ../x, target: /workspace, size: 1G}]\n", "volumes[0].name"},
		{"volume name twice", "name: a\nimage: busybox\nvolumes: [{name: w, target: /a, size: 1G}, {name: w, target: /b, size: 1G}]\n", "volumes[1].name"},
		{"volume over a mount", "name: a\nimage: busybox\nmounts: [{source: ./workspace, target: /w}]\nvolumes: [{name: w, target: /w, size: 1G}]\n", "volumes[0].target"},
		{"volume over /proc", "name: a\nimage: busybox\nvolumes: [{name: w, target: /proc/w, size: 1G}]\n", "volumes[0].target"},
		{"seventeen volumes", "name: a\nimage: busybox\nvolumes: [" + strings.Repeat("{name: v, target: /v, size: 16M}, ", 16) + "{name: w, target: /w, size: 16M}]\n", "volumes"},
		{"volume with a source", "name: a\nimage: busybox\nvolumes: [{name: w, source: ./workspace, target: /w, size: 1G}]\n", "source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.yaml), "p.yaml", dir)
			if err == nil {
				err = Validate(p, testPolicy(dir))
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a profile error", err)
			}
			if !pe.HasField(tt.field) {
				t.Fatalf("error does not name %s:\n%v", tt.field, err)
			}
			if !strings.Contains(err.Error(), "p.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}

// A wildcard entry always carries its bounds (the defaults unless given),
// so status and the sandbox's state show them; an exact entry has none.
func TestWildcardEntriesGetNameBoundsAndOthersNone(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		name, entry         string
		maxNames, perMinute int
		json                string // what the entry's JSON says of them
	}{
		{"defaults", "{host: '*.example.com', ports: [443]}", DefaultMaxNames, DefaultNewNamesPerMinute, `"max_names":1000,"new_names_per_minute":120`},
		{"given", "{host: '*.example.com', ports: [443], max_names: 100000, new_names_per_minute: 1}", 100000, 1, `"max_names":100000,"new_names_per_minute":1`},
		{"exact", "{host: api.example.com, ports: [443]}", 0, 0, ""},
		{"cidr", "{cidr: 198.51.100.0/24, ports: [443]}", 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte("name: a\nimage: busybox\negress: {allow: ["+tt.entry+"]}\n"), "p.yaml", dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := Validate(p, testPolicy(dir)); err != nil {
				t.Fatal(err)
			}
			a := p.Egress.Allow[0]
			if m, r := a.NameBound(); m != tt.maxNames || r != tt.perMinute {
				t.Errorf("bound %d, %d; want %d, %d", m, r, tt.maxNames, tt.perMinute)
			}
			b, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(b); (tt.json == "") == strings.Contains(got, "names") || !strings.Contains(got, tt.json) {
				t.Errorf("json %s, want %q", got, tt.json)
			}
		})
	}
}

func TestWrongTypeSaysWhatWasExpected(t *testing.T) {
	_, err := Parse([]byte("name: a\nimage: busybox\nresources: {pids: lots}\n"), "p.yaml", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "whole number") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnknownKeyListsTheAllowedOnes(t *testing.T) {
	_, err := Parse([]byte("name: a\nimage: busybox\nresources: {memroy: 1G}\n"), "p.yaml", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "memory, cpus, pids") {
		t.Fatalf("err = %v", err)
	}
}

func TestSeveralProblemsAreAllReported(t *testing.T) {
	dir := fixture(t)
	p, err := Parse([]byte("name: A\nimage: busybox\nuser: \"0:0\"\nseccomp: unconfined\n"), "p.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	var pe *Error
	if err := Validate(p, testPolicy(dir)); !errors.As(err, &pe) || len(pe.Fields) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
}

func TestSourcePolicy(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home", "alice")
	for _, d := range []string{"project/workspace", ".ssh", ".config/gh", "state"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(home, ".ssh"), filepath.Join(home, "project", "keys")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(home, "project", "root")); err != nil {
		t.Fatal(err)
	}
	pol := SourcePolicy{StateDir: filepath.Join(home, "state"), Homes: []string{home}}
	tests := []struct {
		path    string
		allowed bool
	}{
		{filepath.Join(home, "project", "workspace"), true},
		{filepath.Join(home, "project"), true},
		{home, false},
		{filepath.Dir(home), false}, // contains a home
		{filepath.Join(home, ".ssh"), false},
		{filepath.Join(home, ".config", "gh"), false},
		{filepath.Join(home, "project", "keys"), false}, // symlink into .ssh
		{filepath.Join(home, "project", "root"), false}, // symlink to /
		{filepath.Join(home, "state"), false},
		{"/etc/hostname", false},
		{"/run", false},
		{"/var/lib/containerd", false},
		{"/proc/self", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := pol.Check(tt.path)
			if (err == nil) != tt.allowed {
				t.Fatalf("allowed = %v (err %v), want %v", err == nil, err, tt.allowed)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"100m", 100 << 20, true}, {"1G", 1 << 30, true}, {"1Gi", 1 << 30, true}, {"512MB", 512 << 20, true},
		{"4096", 4096, true}, {"1.5g", 3 << 29, true}, {"", 0, false}, {"lots", 0, false}, {"-1m", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestPublishMustBeLoopback(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"127.0.0.1:18789:18789", true}, {"[::1]:8080:80/tcp", true},
		{"0.0.0.0:1:1", false}, {"192.0.2.1:1:1", false}, {"1:1", false}, {"127.0.0.1:0:1", false},
	}
	for _, tt := range tests {
		if _, err := ParsePublish(tt.in); (err == nil) != tt.ok {
			t.Errorf("ParsePublish(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestPort443OfAHostIsBehindTheNameGateUnlessTheEntrySaysOtherwise(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name           string
		entry          AllowEntry
		tls, byAddress []int
	}{
		{"a host on 443", AllowEntry{Host: "a.example.com", Ports: []int{443}}, []int{443}, nil},
		{"a host on 80 and 443: 443 only", AllowEntry{Host: "a.example.com", Ports: []int{80, 443}}, []int{443}, nil},
		{"a wildcard on 443", AllowEntry{Host: "*.example.com", Ports: []int{443}}, []int{443}, nil},
		{"a host on another port", AllowEntry{Host: "a.example.com", Ports: []int{8443}}, nil, nil},
		{"tls: true puts every port behind it", AllowEntry{Host: "a.example.com", Ports: []int{443, 8443}, TLS: &yes}, []int{443, 8443}, nil},
		{"tls: false opts 443 out", AllowEntry{Host: "a.example.com", Ports: []int{443, 80}, TLS: &no}, nil, []int{443}},
		{"tls: false elsewhere opts nothing out", AllowEntry{Host: "a.example.com", Ports: []int{80}, TLS: &no}, nil, nil},
		{"a cidr is checked by address", AllowEntry{CIDR: "198.51.100.0/24", Ports: []int{443}}, nil, nil},
		{"QUIC opted out is by address too", AllowEntry{Host: "a.example.com", Ports: []int{443}, Protocols: []string{"udp"}, TLS: &no}, nil, []int{443}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.entry.TLSPorts(); !slices.Equal(got, tc.tls) {
				t.Errorf("TLSPorts = %v, want %v", got, tc.tls)
			}
			if got := tc.entry.ByAddress(); !slices.Equal(got, tc.byAddress) {
				t.Errorf("ByAddress = %v, want %v", got, tc.byAddress)
			}
		})
	}
}

func TestACredentialBindsASecretToAnAllowlistedHostBehindTheGate(t *testing.T) {
	dir := fixture(t)
	p, err := Parse([]byte(`name: a
image: busybox
secrets: {dir: ./secrets}
egress: {allow: [{host: api.anthropic.com, ports: [443]}, {host: git.example.com, ports: [8443], tls: true}]}
credentials:
  - {secret: api_key, preset: anthropic}
on_tripwire: freeze
`), "p.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(p, testPolicy(dir)); err != nil {
		t.Fatal(err)
	}
	got := p.Credentials[0].Presentation()
	if !slices.Equal(got.Hosts, []string{"api.anthropic.com"}) || got.Header != "x-api-key" || got.Scheme != "" || got.Prefix != "sk-ant-api03-" {
		t.Errorf("anthropic preset: %+v", got)
	}
	own := Credential{Secret: "api_key", Hosts: []string{"Git.Example.com."}, Header: "Authorization", Scheme: "token "}.Presentation()
	if !slices.Equal(own.Hosts, []string{"git.example.com"}) || own.Header != "Authorization" || own.Scheme != "token " {
		t.Errorf("own presentation: %+v", own)
	}
}
