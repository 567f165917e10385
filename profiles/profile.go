// Package profiles defines the sandbox profile: its YAML format, strict
// loading, defaults, whole-profile validation (including where mounts may come
// from) and the embedded built-in profiles and seccomp JSON.
package profiles

import (
	"slices"
	"strings"
	"time"
)

// Profile is one sandbox's declaration. Paths are as written; Resolve* helpers
// interpret them relative to the profile's directory.
type Profile struct {
	Name           string            `yaml:"name" json:"name"`
	Image          string            `yaml:"image" json:"image"`
	ImageArchive   string            `yaml:"image_archive" json:"image_archive,omitempty"`
	Args           []string          `yaml:"args" json:"args,omitempty"`
	Env            map[string]string `yaml:"env" json:"env,omitempty"`
	User           string            `yaml:"user" json:"user"`
	ReadOnlyRootfs *bool             `yaml:"read_only_rootfs" json:"read_only_rootfs"`
	Capabilities   []string          `yaml:"capabilities" json:"capabilities,omitempty"`
	Seccomp        string            `yaml:"seccomp" json:"seccomp"`
	Resources      Resources         `yaml:"resources" json:"resources"`
	Tmpfs          []Tmpfs           `yaml:"tmpfs" json:"tmpfs"`
	Mounts         []Mount           `yaml:"mounts" json:"mounts,omitempty"`
	Volumes        []Volume          `yaml:"volumes" json:"volumes,omitempty"`
	Secrets        Secrets           `yaml:"secrets" json:"secrets"`
	// Credentials keep secrets out of the sandbox: it holds placeholders,
	// and the broker puts the real values in on the way to their hosts.
	Credentials []Credential `yaml:"credentials" json:"credentials,omitempty"`
	// OnTripwire is what a placeholder seen where it does not belong does
	// to the sandbox: log (the default), freeze or stop.
	OnTripwire  string   `yaml:"on_tripwire" json:"on_tripwire,omitempty"`
	Egress      Egress   `yaml:"egress" json:"egress"`
	Publish     []string `yaml:"publish" json:"publish,omitempty"`
	StopTimeout Duration `yaml:"stop_timeout" json:"stop_timeout"`
	Logs        Logs     `yaml:"logs" json:"logs"`
	// Agent names the agent the image runs ("openclaw"), so verify can
	// judge the agent's own configuration too.
	Agent string `yaml:"agent" json:"agent,omitempty"`

	// Source names where the profile came from ("openclaw (built-in)" or a
	// path) for messages; Dir is what relative paths are relative to.
	Source string `yaml:"-" json:"source"`
	Dir    string `yaml:"-" json:"dir"`
}

// Resources are the cgroup limits.
// CPUs and Pids are pointers so that an explicit 0 is an error rather than a
// request for the default; after Parse they are never nil.
type Resources struct {
	Memory Size     `yaml:"memory" json:"memory"`
	CPUs   *float64 `yaml:"cpus" json:"cpus"`
	Pids   *int64   `yaml:"pids" json:"pids"`
	// Connections caps the flows the sandbox may have tracked at once
	// (conntrack): one agent must not fill the host's table.
	Connections *int64 `yaml:"connections" json:"connections"`
	// NewConnectionsPerSecond caps how fast it may open them: a closed
	// flow no longer counts towards Connections, but the host still
	// tracks it (TIME_WAIT, two minutes), so churning connections would
	// fill the host's table all the same.
	NewConnectionsPerSecond *int64 `yaml:"new_connections_per_second" json:"new_connections_per_second"`
}

// Tmpfs is a size-limited in-memory mount. noexec, nosuid and nodev are
// always applied, whatever the options say.
type Tmpfs struct {
	Path    string   `yaml:"path" json:"path"`
	Size    Size     `yaml:"size" json:"size"`
	Options []string `yaml:"options" json:"options,omitempty"`
}

// Override gives the profile another sandbox name and/or image (empty
// leaves one as it is), checked as the profile's own would be: both come from
// command lines and API requests, after the profile was validated. A new
// image runs its own command: the profile's was written for its own image.
func (p *Profile) Override(name, image string) error {
	var c collector
	if name != "" {
		checkName(&c, name)
	}
	if image != "" {
		checkImage(&c, image)
	}
	if len(c.errs) > 0 {
		return &Error{Source: p.Source, Fields: c.errs}
	}
	if name != "" {
		p.Name = name
	}
	if image != "" {
		p.Image, p.ImageArchive, p.Args = image, "", nil
	}
	return nil
}

// Logs caps the agent's output kept on the host: the current file and Keep
// older ones, each at most MaxSize, so an agent printing in a loop cannot
// fill the disk that the daemon and the other sandboxes share. Keep is a
// pointer so that an explicit 0 (keep only the current file) is not taken
// for the default; after Parse it is never nil.
type Logs struct {
	MaxSize Size `yaml:"max_size" json:"max_size"`
	Keep    *int `yaml:"keep" json:"keep"`
}

// Mount is a bind mount from the host.
type Mount struct {
	Source   string `yaml:"source" json:"source"`
	Target   string `yaml:"target" json:"target"`
	ReadOnly *bool  `yaml:"read_only" json:"read_only"`
}

// Writable reports whether the mount is read-write. Mounts are read-only
// unless they say otherwise.
func (m Mount) Writable() bool { return m.ReadOnly != nil && !*m.ReadOnly }

// Volume is writable storage of a fixed size that clawguard keeps for the
// sandbox name, across runs: a filesystem of its own, so an agent that
// fills it fills only it. A writable bind mount shares the host's disk
// with everything else on it.
type Volume struct {
	Name   string `yaml:"name" json:"name"`
	Target string `yaml:"target" json:"target"`
	Size   Size   `yaml:"size" json:"size"`
}

// Volume sizes a profile may ask for: below 16M the filesystem's own
// structures take most of it; a terabyte is no cap on any disk this runs on.
// Each volume is a loop device and a filesystem made under the host's lock,
// so a profile may ask for MaxVolumes of them.
const (
	MinVolumeSize = 16 << 20
	MaxVolumeSize = 1 << 40
	MaxVolumes    = 16
)

// Secrets names the directory whose files are copied into the sandbox.
type Secrets struct {
	Dir string `yaml:"dir" json:"dir,omitempty"`
}

// Egress is the network allowlist (enforced by netrules).
type Egress struct {
	Allow     []AllowEntry `yaml:"allow" json:"allow"`
	DNS       DNS          `yaml:"dns" json:"dns"`
	LogDenied *bool        `yaml:"log_denied" json:"log_denied"`
}

// AllowEntry is one allowed destination: a host name (or *.suffix) or a CIDR,
// on its ports, for TCP unless Protocols says otherwise.
type AllowEntry struct {
	Host      string   `yaml:"host" json:"host,omitempty"`
	CIDR      string   `yaml:"cidr" json:"cidr,omitempty"`
	Ports     []int    `yaml:"ports" json:"ports"`
	Protocols []string `yaml:"protocols" json:"protocols,omitempty"`
	// MaxNames and NewNamesPerMinute bound a wildcard: every distinct
	// name asked under it is data sent to the zone's nameservers and an
	// entry in the sandbox's cache. They are set (to the defaults if not
	// given) on wildcard entries only; elsewhere they are refused.
	MaxNames          *int `yaml:"max_names" json:"max_names,omitempty"`
	NewNamesPerMinute *int `yaml:"new_names_per_minute" json:"new_names_per_minute,omitempty"`
	// TLS puts the entry's TCP ports behind the name gate: a connection
	// passes only if its ClientHello names this host and the sandbox's DNS
	// gate resolved that name to that very address. An address on a CDN is
	// shared by every site there; a name is not. Unset, port 443 of a host
	// entry is behind the gate and its other ports are not; true puts every
	// port behind it; false checks the entry by address only, for a
	// protocol on 443 that is not TLS.
	TLS *bool `yaml:"tls" json:"tls,omitempty"`
}

// DefaultTLSPort is the port a host entry puts behind the name gate unless
// it says otherwise.
const DefaultTLSPort = 443

// TLSPorts are the entry's ports the name gate checks.
func (a AllowEntry) TLSPorts() []int {
	if a.Host == "" || !slices.Contains(a.Protos(), "tcp") {
		return nil
	}
	switch {
	case a.TLS == nil && slices.Contains(a.Ports, DefaultTLSPort):
		return []int{DefaultTLSPort}
	case a.TLS != nil && *a.TLS:
		return a.Ports
	}
	return nil
}

// ByAddress are the entry's ports on which it opted out of the name gate
// (tls: false), where TLS would otherwise be checked, over TCP or (QUIC)
// UDP: status and verify say so.
func (a AllowEntry) ByAddress() []int {
	if a.Host == "" || a.TLS == nil || *a.TLS || !slices.Contains(a.Ports, DefaultTLSPort) {
		return nil
	}
	return []int{DefaultTLSPort}
}

// Wildcard reports whether the entry is "*.suffix".
func (a AllowEntry) Wildcard() bool { return strings.HasPrefix(a.Host, "*.") }

// Wildcard bounds unless a profile says otherwise: room for the distinct
// hosts of a CDN or an API with per-tenant names, two new names a second
// on average; and the ranges a profile may set them in.
const (
	DefaultMaxNames          = 1000
	DefaultNewNamesPerMinute = 120
	MaxMaxNames              = 100000
	MaxNewNamesPerMinute     = 10000
)

// NameBound is a wildcard entry's max_names and new_names_per_minute, the
// defaults where they are not given (as in the state of a sandbox started
// before they existed). Both are 0 on any other entry.
func (a AllowEntry) NameBound() (maxNames, newPerMinute int) {
	if !a.Wildcard() {
		return 0, 0
	}
	maxNames, newPerMinute = DefaultMaxNames, DefaultNewNamesPerMinute
	if a.MaxNames != nil {
		maxNames = *a.MaxNames
	}
	if a.NewNamesPerMinute != nil {
		newPerMinute = *a.NewNamesPerMinute
	}
	return maxNames, newPerMinute
}

// Protos are the entry's protocols: "tcp" when it names none. UDP is
// opened only where asked for: QUIC on 443 is a second door that no name
// check can see into.
func (a AllowEntry) Protos() []string {
	if len(a.Protocols) == 0 {
		return []string{"tcp"}
	}
	return a.Protocols
}

// DNS clamps the TTLs of allowlisted answers.
type DNS struct {
	MinTTL Duration `yaml:"min_ttl" json:"min_ttl"`
	MaxTTL Duration `yaml:"max_ttl" json:"max_ttl"`
}

// Duration is a time.Duration written as "10s" in YAML and JSON.
type Duration struct{ time.Duration }

// Size is a byte count written as "100m" or "1G" (binary units).
type Size struct {
	Bytes int64
	given bool
}
