package profiles

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed builtin
var embedded embed.FS

// defaultSeccomp is embedded by exact name, so a missing file fails the
// build rather than a run.
//
//go:embed seccomp/default.json
var defaultSeccomp []byte

//go:embed seccomp/strict.json
var strictSeccomp []byte

// DefaultName is the profile `clawguard run` uses when given none.
const DefaultName = "openclaw"

// Builtins lists the embedded profiles by name.
func Builtins() []string {
	entries, _ := embedded.ReadDir("builtin")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// LoadBuiltin parses an embedded profile. Its relative paths (./workspace,
// ./secrets, ...) are relative to dir, normally the working directory.
func LoadBuiltin(name, dir string) (*Profile, error) {
	data, err := BuiltinYAML(name)
	if err != nil {
		return nil, fmt.Errorf("no built-in profile %q (built-in: %s)", name, strings.Join(Builtins(), ", "))
	}
	// Pinned at its real location, as Load does.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return Parse(data, name+" (built-in)", dir)
}

// BuiltinYAML returns the text of an embedded profile, for users to copy.
func BuiltinYAML(name string) ([]byte, error) {
	return embedded.ReadFile("builtin/" + name + "/profile.yaml")
}

// BuiltinFiles returns the files a built-in profile ships besides itself
// (the agent's hardened configuration), by path relative to the profile.
func BuiltinFiles(name string) (map[string][]byte, error) {
	root := "builtin/" + name
	out := map[string][]byte{}
	err := fs.WalkDir(embedded, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == root+"/profile.yaml" {
			return err
		}
		b, err := embedded.ReadFile(p)
		out[strings.TrimPrefix(p, root+"/")] = b
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("no built-in profile %q (built-in: %s)", name, strings.Join(Builtins(), ", "))
	}
	return out, nil
}

// DefaultSeccompJSON is the built-in seccomp profile as shipped.
func DefaultSeccompJSON() []byte { return bytes.Clone(defaultSeccomp) }

// StrictSeccompJSON is the strict built-in seccomp profile, derived from the
// recorded traces of the agent workloads.
func StrictSeccompJSON() []byte { return bytes.Clone(strictSeccomp) }

// BuiltinSeccomp returns a built-in seccomp profile by name ("default" or
// "strict").
func BuiltinSeccomp(name string) ([]byte, bool) {
	switch name {
	case "default":
		return DefaultSeccompJSON(), true
	case "strict":
		return StrictSeccompJSON(), true
	}
	return nil, false
}

// Load reads and parses a profile file. Relative paths inside it are relative
// to the file's directory.
func Load(path string) (*Profile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	// The file is read, and its directory pinned, at its real location
	// with no link on the way: whoever owns a directory on the path can
	// swap it for a link to someone else's project later, and every path
	// of the profile is then opened beneath the real one (OpenSource), so
	// the swap meets an error instead of the other project.
	real, err := filepath.EvalSymlinks(abs)
	if err == nil {
		var data []byte
		if data, err = readRegularNoLinks(real, MaxFileSize); err == nil {
			return Parse(data, path, filepath.Dir(real))
		}
	}
	return nil, &Error{Source: path, Fields: []FieldError{{Problem: fmt.Sprintf("cannot read the file: %v", unwrapPathError(err)), Fix: "check the path passed to --profile"}}}
}

// Parse decodes a profile strictly (unknown keys, wrong types and several
// documents are errors), applies defaults and returns it. It does not
// validate: call Validate before acting on it.
func Parse(data []byte, source, dir string) (*Profile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Profile
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Source: source, Fields: []FieldError{{Problem: "the profile is empty", Fix: "start from `clawguard profile show openclaw`"}}}
		}
		return nil, &Error{Source: source, Fields: decodeErrors(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{Source: source, Fields: []FieldError{{Problem: "the file holds more than one YAML document", Fix: "keep one profile per file (remove the '---' separator)"}}}
	}
	p.Source, p.Dir = source, dir
	p.applyDefaults()
	return &p, nil
}

// DefaultConnections is how many flows a sandbox may have tracked at once
// unless its profile says: plenty for an agent's API calls and package
// downloads, a small share of a host's conntrack table (262144 on a 4 GB
// machine).
const DefaultConnections = 512

// DefaultNewConnectionsPerSecond is how many new flows a sandbox may open a
// second, with bursts of twice that: an agent's HTTP clients keep their
// connections alive, and at this rate churning ones leave at most about
// 12,000 closed flows tracked for their two minutes.
const DefaultNewConnectionsPerSecond = 100

// Default log cap: 10 MiB per file and two older files, 30 MiB a sandbox at
// most, enough for an agent's start-up and recent errors.
const (
	DefaultLogMaxSize = 10 << 20
	DefaultLogKeep    = 2
)

// DefaultUser is the UID:GID a profile without `user` runs as (and the one
// the built-in profile names).
const DefaultUser = "1000:1000"

func (p *Profile) applyDefaults() {
	t := true
	if p.User == "" {
		p.User = DefaultUser
	}
	if p.ReadOnlyRootfs == nil {
		p.ReadOnlyRootfs = &t
	}
	if p.Seccomp == "" {
		p.Seccomp = "default"
	}
	if !p.Resources.Memory.given {
		p.Resources.Memory = Size{Bytes: 1 << 30, given: true}
	}
	if p.Resources.CPUs == nil {
		cpus := 1.0
		p.Resources.CPUs = &cpus
	}
	if p.Resources.Pids == nil {
		pids := int64(100)
		p.Resources.Pids = &pids
	}
	if p.Resources.NewConnectionsPerSecond == nil {
		rate := int64(DefaultNewConnectionsPerSecond)
		p.Resources.NewConnectionsPerSecond = &rate
	}
	if p.Resources.Connections == nil {
		conns := int64(DefaultConnections)
		p.Resources.Connections = &conns
	}
	if p.Tmpfs == nil {
		p.Tmpfs = []Tmpfs{{Path: "/tmp", Size: Size{Bytes: 100 << 20}, Options: []string{"noexec", "nosuid", "nodev"}}}
	}
	for i := range p.Egress.Allow {
		a := &p.Egress.Allow[i]
		if !a.Wildcard() {
			continue
		}
		maxNames, perMinute := a.NameBound()
		if a.MaxNames == nil {
			a.MaxNames = &maxNames
		}
		if a.NewNamesPerMinute == nil {
			a.NewNamesPerMinute = &perMinute
		}
	}
	if p.Egress.DNS.MinTTL.Duration == 0 {
		p.Egress.DNS.MinTTL.Duration = 30 * time.Second
	}
	if p.Egress.DNS.MaxTTL.Duration == 0 {
		p.Egress.DNS.MaxTTL.Duration = time.Hour
	}
	if p.Egress.LogDenied == nil {
		p.Egress.LogDenied = &t
	}
	if p.StopTimeout.Duration == 0 {
		p.StopTimeout.Duration = 10 * time.Second
	}
	if !p.Logs.MaxSize.given {
		p.Logs.MaxSize = Size{Bytes: DefaultLogMaxSize, given: true}
	}
	if p.Logs.Keep == nil {
		keep := DefaultLogKeep
		p.Logs.Keep = &keep
	}
}

var (
	reUnknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type profiles\.(\w+)`)
	reWrongType    = regexp.MustCompile("line (\\d+): cannot unmarshal !!(\\w+) `([^`]*)` into (\\S+)")
	reLine         = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// sections maps the Go type a YAML mapping decodes into to the keys it takes,
// so an unknown key can be answered with the ones that are allowed.
var sections = map[string]string{
	"Profile":    "name, image, image_archive, args, env, user, read_only_rootfs, capabilities, seccomp, resources, tmpfs, mounts, secrets, egress, publish, stop_timeout, logs",
	"Resources":  "memory, cpus, pids, connections, new_connections_per_second",
	"Tmpfs":      "path, size, options",
	"Mount":      "source, target, read_only",
	"Secrets":    "dir",
	"Egress":     "allow, dns, log_denied",
	"AllowEntry": "host, cidr, ports, protocols, max_names, new_names_per_minute",
	"DNS":        "min_ttl, max_ttl",
	"Logs":       "max_size, keep",
}

var typeWords = map[string]string{
	"int": "a whole number", "int64": "a whole number", "float64": "a number", "string": "a string",
	"bool": "true or false", "[]string": "a list", "[]int": "a list of numbers", "map[string]string": "a mapping of NAME: value",
}

// decodeErrors turns yaml.v3's messages into ones that say what to write.
func decodeErrors(err error) []FieldError {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var out []FieldError
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if s := reUnknownField.FindStringSubmatch(m); s != nil {
			out = append(out, FieldError{Line: s[1], Field: s[2], Problem: "unknown key", Fix: "allowed here: " + sections[s[3]]})
			continue
		}
		if s := reWrongType.FindStringSubmatch(m); s != nil {
			want := typeWords[strings.TrimPrefix(s[4], "profiles.")]
			if want == "" {
				want = "a " + strings.ToLower(strings.TrimPrefix(s[4], "[]profiles.")) + " section"
			}
			out = append(out, FieldError{Line: s[1], Problem: fmt.Sprintf("got %s %q", s[2], s[3]), Fix: "expected " + want})
			continue
		}
		if s := reLine.FindStringSubmatch(m); s != nil {
			out = append(out, FieldError{Line: s[1], Problem: s[2]})
			continue
		}
		out = append(out, FieldError{Problem: m})
	}
	return out
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
