package profiles

import (
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"golang.org/x/net/publicsuffix"
	"golang.org/x/sys/unix"

	"github.com/clawguard/clawguard/seccomp"
)

var (
	reName    = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	reEnvName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	reUser    = regexp.MustCompile(`^(\d+):(\d+)$`)
	reSecret  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	reHost    = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$`)
	reMode    = regexp.MustCompile(`^mode=[0-7]{3,4}$`)
)

const (
	minMemory = 16 << 20
	// A log file smaller than 64K would rotate at every burst of output;
	// one larger than 1G is no cap on a small host's disk.
	minLogSize     = 64 << 10
	maxLogSize     = 1 << 30
	maxLogKeep     = 10
	maxSecretSize  = 1 << 20
	maxSecretFiles = 64
)

// AllowedCapabilities may be added back by a profile; everything else stays
// dropped. Binding a port below 1024 is the only privilege an agent
// plausibly needs.
var allowedCapabilities = map[string]bool{"CAP_NET_BIND_SERVICE": true}

// secretWords mark an environment variable as a secret: its value would be
// visible in the container spec and in /proc/<pid>/environ.
var secretWords = []string{"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"}

// Validate checks the whole profile and reports every problem at once. It
// reads the host (mount sources, the secrets directory, a seccomp file) but
// changes nothing.
func Validate(p *Profile, pol SourcePolicy) error {
	c := &collector{}
	v := validator{p: p, pol: pol, c: c}
	v.identity()
	v.process()
	v.resources()
	v.logs()
	v.filesystems()
	v.secrets()
	v.credentials()
	v.egress()
	v.publish()
	v.agent()
	if len(c.errs) == 0 {
		return nil
	}
	return &Error{Source: p.Source, Fields: c.errs}
}

// Warnings are legal choices that weaken the sandbox; `run` prints them.
func Warnings(p *Profile) []string {
	var w []string
	if p.ReadOnlyRootfs != nil && !*p.ReadOnlyRootfs {
		w = append(w, "read_only_rootfs is false: the agent can change its own image files")
	}
	var writable []string
	for _, m := range p.Mounts {
		if p.Agent == AgentOpenClaw && m.Target == OpenClawStateDir {
			continue // the agent's own state: expected
		}
		if m.Writable() {
			writable = append(writable, m.Target)
		}
	}
	if len(writable) > 1 {
		w = append(w, fmt.Sprintf("%d writable mounts (%s): the workspace should be the only one", len(writable), strings.Join(writable, ", ")))
	}
	if len(p.Capabilities) > 0 {
		w = append(w, fmt.Sprintf("capabilities added: %s", strings.Join(p.Capabilities, ", ")))
	}
	if p.Agent == AgentOpenClaw && p.Resources.Memory.Bytes < OpenClawComfortableMemory {
		w = append(w, fmt.Sprintf("resources.memory %s leaves little headroom for OpenClaw (its gateway idles at about 650 MiB, peaks of 1.4-1.6 GB are reported); Node's heap is capped at %d MiB, raise memory to 2G if the agent gets killed",
			p.Resources.Memory, NodeHeapMiB(p.Resources.Memory.Bytes)))
	}
	uid, gid, _ := p.IDs()
	for i, m := range p.Mounts {
		if !m.Writable() {
			continue
		}
		src := p.Path(m.Source)
		var st unix.Stat_t
		if err := unix.Stat(src, &st); err != nil {
			continue
		}
		perm := st.Mode & 0o777
		if (st.Uid == uid && perm&0o200 != 0) || (st.Gid == gid && perm&0o020 != 0) || perm&0o002 != 0 {
			continue
		}
		w = append(w, fmt.Sprintf("mounts[%d] (%s): %s is owned by %d:%d with mode %04o, so the sandbox user %d cannot write to it; fix: chown %d:%d %s",
			i, m.Target, src, st.Uid, st.Gid, perm, uid, uid, gid, src))
	}
	return w
}

// IDs returns the numeric uid and gid of the user field.
func (p *Profile) IDs() (uint32, uint32, error) {
	m := reUser.FindStringSubmatch(p.User)
	if m == nil {
		return 0, 0, fmt.Errorf("user %q is not UID:GID", p.User)
	}
	uid, err1 := strconv.ParseUint(m[1], 10, 32)
	gid, err2 := strconv.ParseUint(m[2], 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("user %q is out of range", p.User)
	}
	return uint32(uid), uint32(gid), nil
}

type validator struct {
	p   *Profile
	pol SourcePolicy
	c   *collector
}

// Path resolves a profile-relative path.
func (p *Profile) Path(rel string) string {
	if filepath.IsAbs(rel) || rel == "" {
		return rel
	}
	return filepath.Join(p.Dir, rel)
}

// ValidName reports whether name may name a sandbox. A name becomes a
// directory under the state dir, a containerd ID and a label, and reaches
// the daemon in URL paths: every way in checks it here.
func ValidName(name string) error {
	var c collector
	checkName(&c, name)
	if len(c.errs) > 0 {
		return &Error{Source: "sandbox name", Fields: c.errs}
	}
	return nil
}

func checkName(c *collector, name string) {
	if !reName.MatchString(name) {
		c.add("name", fmt.Sprintf("%q is not a valid name", name), "use 1-63 characters: lowercase letters, digits, '_', '.', '-', starting with a letter or digit")
	}
}

func checkImage(c *collector, ref string) {
	if _, err := reference.ParseDockerRef(ref); err != nil {
		c.add("image", fmt.Sprintf("%q is not an image reference: %v", ref, err), "write it as registry/repository:tag")
	}
}

func (v validator) identity() {
	p, c := v.p, v.c
	if p.Name == "" {
		c.add("name", "is missing", "name the sandbox, e.g. name: openclaw")
	} else {
		checkName(c, p.Name)
	}
	if p.Image == "" {
		c.add("image", "is missing", "name the image, e.g. image: ghcr.io/openclaw/openclaw:latest")
	} else {
		checkImage(c, p.Image)
	}
	if p.ImageArchive != "" {
		path := p.Path(p.ImageArchive)
		if fi, err := os.Stat(path); err != nil {
			c.add("image_archive", fmt.Sprintf("cannot use %s: %v", path, unwrapPathError(err)), "point it at an OCI or docker image archive (tar)")
		} else if !fi.Mode().IsRegular() {
			c.add("image_archive", fmt.Sprintf("%s is not a regular file", path), "point it at an OCI or docker image archive (tar)")
		}
	}
	if p.StopTimeout.Duration <= 0 || p.StopTimeout.Duration.Minutes() > 10 {
		c.add("stop_timeout", fmt.Sprintf("%s is out of range", p.StopTimeout.Duration), "use a value from 1s to 10m")
	}
}

func (v validator) process() {
	p, c := v.p, v.c
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !reEnvName.MatchString(k) {
			c.add("env."+k, "is not a valid variable name", "use letters, digits and '_', not starting with a digit")
			continue
		}
		if looksSecret(k) {
			c.add("env."+k, "looks like a secret; environment variables are visible in the container spec and /proc", "put the value in a file in secrets.dir and read it from /run/secrets/")
		}
	}
	if uid, gid, err := p.IDs(); err != nil {
		c.add("user", err.Error(), `write numeric ids, e.g. user: "1000:1000"`)
	} else if uid == 0 {
		c.add("user", "uid 0 (root) is refused", `run the agent as an unprivileged user, e.g. user: "1000:1000"`)
	} else if gid == 0 {
		c.add("user", "gid 0 (the root group) is refused", `use an unprivileged group, e.g. user: "1000:1000"`)
	}
	for i, capName := range p.Capabilities {
		field := fmt.Sprintf("capabilities[%d]", i)
		norm := NormalizeCapability(capName)
		switch {
		case !knownCapabilities[norm]:
			c.add(field, fmt.Sprintf("%q is not a Linux capability", capName), "see capabilities(7); only NET_BIND_SERVICE may be added")
		case !allowedCapabilities[norm]:
			c.add(field, fmt.Sprintf("%s may not be added: every capability is dropped", capName), "only NET_BIND_SERVICE may be added")
		}
	}
	switch p.Seccomp {
	case "default", "strict":
	case "unconfined":
		c.add("seccomp", "unconfined is refused: the agent would reach every syscall", "use seccomp: default or strict, or a path to an OCI seccomp JSON file")
	default:
		path := p.Path(p.Seccomp)
		data, err := ReadRegular(path, MaxFileSize)
		if err != nil {
			c.add("seccomp", fmt.Sprintf("cannot read %s: %v", path, unwrapPathError(err)), "use default or strict, or a path to an OCI seccomp JSON file")
			break
		}
		if _, err := seccomp.Parse(data); err != nil {
			c.add("seccomp", fmt.Sprintf("%s: %v", path, strings.ReplaceAll(err.Error(), "\n", "; ")), "fix the file or use seccomp: default")
		}
	}
}

func (v validator) resources() {
	r, c := v.p.Resources, v.c
	if r.Memory.Bytes < minMemory {
		c.add("resources.memory", fmt.Sprintf("%s is below the minimum of 16M", FormatSize(r.Memory.Bytes)), "set e.g. memory: 1G")
	}
	if r.CPUs == nil || *r.CPUs <= 0 || *r.CPUs > 1024 {
		c.add("resources.cpus", "must be more than 0 and at most 1024", "set e.g. cpus: 1.0 (one core)")
	}
	if r.Pids == nil || *r.Pids < 8 || *r.Pids > 1<<22 {
		c.add("resources.pids", "must be from 8 to 4194304 (there is no unlimited)", "set e.g. pids: 100")
	}
	if r.Connections == nil || *r.Connections < 16 || *r.Connections > 65536 {
		c.add("resources.connections", "must be from 16 to 65536 (there is no unlimited)", fmt.Sprintf("set e.g. connections: %d", DefaultConnections))
	}
	if r.NewConnectionsPerSecond == nil || *r.NewConnectionsPerSecond < 1 || *r.NewConnectionsPerSecond > 10000 {
		c.add("resources.new_connections_per_second", "must be from 1 to 10000 (there is no unlimited)", fmt.Sprintf("set e.g. new_connections_per_second: %d", DefaultNewConnectionsPerSecond))
	}
}

func (v validator) logs() {
	l, c := v.p.Logs, v.c
	if l.MaxSize.Bytes < minLogSize || l.MaxSize.Bytes > maxLogSize {
		c.add("logs.max_size", fmt.Sprintf("%s is out of range", FormatSize(l.MaxSize.Bytes)),
			fmt.Sprintf("use a size from 64K to 1G (default %s)", FormatSize(DefaultLogMaxSize)))
	}
	if l.Keep == nil || *l.Keep < 0 || *l.Keep > maxLogKeep {
		got := "missing"
		if l.Keep != nil {
			got = strconv.Itoa(*l.Keep) + " is out of range"
		}
		c.add("logs.keep", got, fmt.Sprintf("keep from 0 to %d older files (default %d)", maxLogKeep, DefaultLogKeep))
	}
}

// reservedTargets are mount points the sandbox's own layout owns.
var reservedTargets = []string{"/proc", "/sys", "/dev", "/run/secrets"}

func (v validator) target(field, t string, seen map[string]string) {
	c := v.c
	if !filepath.IsAbs(t) || filepath.Clean(t) != t {
		c.add(field, fmt.Sprintf("%q must be an absolute, clean path", t), "e.g. /workspace")
		return
	}
	if t == "/" {
		c.add(field, "cannot mount over /", "pick a directory such as /workspace")
		return
	}
	for _, r := range reservedTargets {
		if within(t, r) && t != "/dev/shm" {
			c.add(field, fmt.Sprintf("%s is under %s, which the sandbox layout owns", t, r), "pick another directory")
			return
		}
	}
	if prev, dup := seen[t]; dup {
		c.add(field, fmt.Sprintf("%s is also the target of %s", t, prev), "give each mount its own target")
		return
	}
	seen[t] = field
}

func (v validator) filesystems() {
	p, c := v.p, v.c
	seen := map[string]string{}
	for i, t := range p.Tmpfs {
		field := fmt.Sprintf("tmpfs[%d]", i)
		v.target(field+".path", t.Path, seen)
		if t.Size.Bytes <= 0 {
			c.add(field+".size", "is missing or zero", "set e.g. size: 100m")
		} else if t.Size.Bytes > p.Resources.Memory.Bytes {
			c.add(field+".size", fmt.Sprintf("%s is larger than resources.memory (%s); tmpfs lives in the sandbox's memory", t.Size, p.Resources.Memory), "make it smaller")
		}
		for _, o := range t.Options {
			switch {
			case o == "noexec" || o == "nosuid" || o == "nodev" || o == "ro" || o == "rw" || reMode.MatchString(o):
			case o == "exec" || o == "suid" || o == "dev":
				c.add(field+".options", fmt.Sprintf("%q is refused: writable space must not hold executables or devices", o), "remove it; noexec,nosuid,nodev are always applied")
			default:
				c.add(field+".options", fmt.Sprintf("%q is not supported", o), "use noexec, nosuid, nodev, ro, rw or mode=NNNN")
			}
		}
	}
	for i, m := range p.Mounts {
		field := fmt.Sprintf("mounts[%d]", i)
		v.target(field+".target", m.Target, seen)
		if m.Source == "" {
			c.add(field+".source", "is missing", "name a host directory, relative to the profile, e.g. ./workspace")
			continue
		}
		f, err := OpenSource(p.Dir, m.Source, v.pol, unix.O_PATH)
		if err != nil {
			c.add(field+".source", err.Error(), "mount a project directory such as ./workspace; create it with mkdir -p if it is missing")
			continue
		}
		f.Close()
	}
	if len(p.Volumes) > MaxVolumes {
		c.add("volumes", fmt.Sprintf("%d volumes", len(p.Volumes)), fmt.Sprintf("at most %d: give one volume subdirectories instead", MaxVolumes))
	}
	names := map[string]string{}
	for i, vol := range p.Volumes {
		field := fmt.Sprintf("volumes[%d]", i)
		v.target(field+".target", vol.Target, seen)
		switch prev, dup := names[vol.Name]; {
		case !reName.MatchString(vol.Name):
			c.add(field+".name", fmt.Sprintf("%q is not a valid volume name", vol.Name), "use lower-case letters, digits, '.', '_' and '-' (at most 63), e.g. workspace")
		case dup:
			c.add(field+".name", fmt.Sprintf("%s is also the name of %s", vol.Name, prev), "give each volume its own name")
		default:
			names[vol.Name] = field
		}
		switch {
		case vol.Size.Bytes == 0:
			c.add(field+".size", "is missing or zero", "set the most the agent may write there, e.g. size: 2G")
		case vol.Size.Bytes < MinVolumeSize || vol.Size.Bytes > MaxVolumeSize:
			c.add(field+".size", fmt.Sprintf("%s is out of range", vol.Size), fmt.Sprintf("from %s to %s", FormatSize(MinVolumeSize), FormatSize(MaxVolumeSize)))
		}
	}
}

func (v validator) secrets() {
	p, c := v.p, v.c
	if p.Secrets.Dir == "" {
		return
	}
	dir := p.Path(p.Secrets.Dir)
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		c.add("secrets.dir", fmt.Sprintf("%s is a symlink", dir), "point at the real directory")
		return
	}
	d, err := OpenSecrets(p.Dir, p.Secrets.Dir, v.pol)
	if err != nil {
		c.add("secrets.dir", err.Error(), "keep secrets in their own directory, e.g. ./secrets with mode 0700 and 0600 files; keep only regular files in it")
		return
	}
	defer d.Close()
	for i, cr := range p.Credentials {
		if cr.Secret != "" && !slices.Contains(d.Names, cr.Secret) {
			c.add(fmt.Sprintf("credentials[%d].secret", i), fmt.Sprintf("%s is not a file of %s", cr.Secret, dir), "write the key to "+filepath.Join(dir, cr.Secret)+" (mode 0600)")
		}
	}
}

func (v validator) egress() {
	e, c := v.p.Egress, v.c
	for i, a := range e.Allow {
		field := fmt.Sprintf("egress.allow[%d]", i)
		switch {
		case a.Host != "" && a.CIDR != "":
			c.add(field, "has both host and cidr", "write one entry per destination")
		case a.Host == "" && a.CIDR == "":
			c.add(field, "needs host or cidr", "e.g. {host: api.anthropic.com, ports: [443]}")
		case a.Host != "" && !reHost.MatchString(strings.ToLower(strings.TrimSuffix(a.Host, "."))):
			c.add(field+".host", fmt.Sprintf("%q is not a domain name", a.Host), `write a name such as api.example.com, or "*.example.com" for its subdomains`)
		case strings.HasPrefix(a.Host, "*."):
			if why := wildcardRefused(strings.ToLower(strings.TrimSuffix(a.Host[2:], "."))); why != "" {
				c.add(field+".host", fmt.Sprintf("%q: %s", a.Host, why), "name the hosts you need one by one (a wildcard also makes every subdomain a DNS channel to that zone's servers)")
			}
		case a.CIDR != "":
			pfx, err := netip.ParsePrefix(a.CIDR)
			switch {
			case err != nil:
				c.add(field+".cidr", fmt.Sprintf("%q is not a CIDR", a.CIDR), "write e.g. 198.51.100.0/24")
			case !pfx.Addr().Is4():
				c.add(field+".cidr", fmt.Sprintf("%s is IPv6; sandboxes have no IPv6", a.CIDR), "allow an IPv4 range")
			case pfx.Bits() < 16:
				c.add(field+".cidr", fmt.Sprintf("%s is larger than a /16", a.CIDR), "allow a smaller range, or name the hosts")
			default:
				for _, r := range neverAllowed {
					if r.prefix.Overlaps(pfx) {
						c.add(field+".cidr", fmt.Sprintf("%s overlaps %s (%s), which no sandbox may reach", a.CIDR, r.prefix, r.what), "allow a range outside it")
						break
					}
				}
			}
		}
		if len(a.Ports) == 0 {
			c.add(field+".ports", "is empty", "list the ports, e.g. ports: [443]")
		}
		for _, port := range a.Ports {
			if port < 1 || port > 65535 {
				c.add(field+".ports", fmt.Sprintf("%d is not a port", port), "use 1-65535")
			}
		}
		seen := map[string]bool{}
		for _, proto := range a.Protocols {
			switch {
			case proto != "tcp" && proto != "udp":
				c.add(field+".protocols", fmt.Sprintf("%q is not tcp or udp", proto), "write protocols: [udp], or [tcp, udp]; without it an entry is TCP only")
			case seen[proto]:
				c.add(field+".protocols", fmt.Sprintf("%q is listed twice", proto), "list each protocol once")
			}
			seen[proto] = true
		}
		if a.Protocols != nil && len(a.Protocols) == 0 {
			c.add(field+".protocols", "is empty", "leave it out for TCP, or write [udp] or [tcp, udp]")
		}
		nameBounds(c, field, a)
		switch {
		case a.TLS != nil && *a.TLS && a.CIDR != "":
			c.add(field+".tls", "a cidr entry is checked by address only: it resolves no names to check a server name against", "remove tls, or name the hosts")
		case a.TLS != nil && *a.TLS && slices.Contains(a.Protos(), "udp"):
			c.add(field+".tls", "the name gate reads TLS over TCP; UDP on the same ports (QUIC) would pass by address, unchecked", "remove udp from protocols (or tls)")
		case a.Host != "" && a.TLS == nil && slices.Contains(a.Protos(), "udp") && slices.Contains(a.Ports, DefaultTLSPort):
			c.add(field+".protocols", fmt.Sprintf("udp on port %d would pass QUIC by address, past the name gate that checks TLS there", DefaultTLSPort),
				"remove udp (HTTPS clients fall back to TCP), or write tls: false to check this entry by address only")
		}
	}
	if e.DNS.MinTTL.Seconds() < 1 {
		c.add("egress.dns.min_ttl", "must be at least 1s", "e.g. min_ttl: 30s")
	}
	if e.DNS.MaxTTL.Duration < e.DNS.MinTTL.Duration || e.DNS.MaxTTL.Hours() > 24 {
		c.add("egress.dns.max_ttl", "must be at least min_ttl and at most 24h", "e.g. max_ttl: 1h")
	}
}

// nameBounds checks a wildcard's max_names and new_names_per_minute, and
// refuses them on any other entry, where they would bound nothing.
func nameBounds(c *collector, field string, a AllowEntry) {
	bounds := []struct {
		key   string
		value *int
		max   int
		fix   string
	}{
		{"max_names", a.MaxNames, MaxMaxNames, fmt.Sprintf("e.g. max_names: %d, the default", DefaultMaxNames)},
		{"new_names_per_minute", a.NewNamesPerMinute, MaxNewNamesPerMinute, fmt.Sprintf("e.g. new_names_per_minute: %d, the default", DefaultNewNamesPerMinute)},
	}
	for _, b := range bounds {
		switch {
		case b.value == nil:
		case !a.Wildcard():
			what := "an exact name is one name"
			if a.CIDR != "" {
				what = "a cidr entry resolves no names"
			}
			c.add(field+"."+b.key, "applies only to a wildcard host (*.example.com): "+what, "remove "+b.key+" from this entry")
		case *b.value < 1 || *b.value > b.max:
			c.add(field+"."+b.key, fmt.Sprintf("%d is out of range 1-%d", *b.value, b.max), b.fix)
		}
	}
}

// anyAddressZones are zones whose names resolve to whatever address they
// spell (198-51-100-7.nip.io) or to any machine of a cloud's customers: a
// wildcard on one allows every address there is, or every tenant's host.
var anyAddressZones = []string{
	"nip.io", "sslip.io", "xip.io", "traefik.me", "lvh.me", "localtest.me",
	"compute.amazonaws.com", "compute-1.amazonaws.com",
	"cloudapp.azure.com", "cloudapp.net", "googleusercontent.com",
}

// wildcardRefused says why "*.suffix" may not be allowed, or "" if it may.
func wildcardRefused(suffix string) string {
	if ps, _ := publicsuffix.PublicSuffix(suffix); ps == suffix {
		return suffix + " is a public suffix: every registrant's domain under it would be allowed"
	}
	for _, z := range anyAddressZones {
		if suffix == z || strings.HasSuffix(suffix, "."+z) {
			return suffix + " is a zone whose names resolve to any address (or any tenant's machine)"
		}
	}
	return ""
}

// neverAllowed are ranges no cidr entry may touch: the host itself
// (loopback), the link-local range that holds cloud metadata services,
// "this network", multicast and the reserved class E.
var neverAllowed = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT; Alibaba Cloud's metadata at 100.100.100.200, Tailscale)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local, where cloud metadata services answer"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
}

func (v validator) agent() {
	switch v.p.Agent {
	case "":
	case AgentOpenClaw:
		src := OpenClawConfigSource(v.p)
		if src == "" {
			v.c.add("agent", "an openclaw sandbox needs its configuration mounted at "+OpenClawConfigDir,
				"add a read-only mount: {source: ./config, target: "+OpenClawConfigDir+"} (`clawguard profile init` writes one)")
			return
		}
		for i, m := range v.p.Mounts {
			if m.Target == OpenClawConfigDir && m.Writable() {
				v.c.add(fmt.Sprintf("mounts[%d]", i), "OpenClaw's configuration must not be writable by the agent", "remove read_only: false")
			}
		}
		for _, f := range []string{"openclaw.json", ApprovalsFile} {
			if _, err := os.Stat(filepath.Join(src, f)); err != nil {
				v.c.add("agent", fmt.Sprintf("%s is missing from the config directory %s", f, src), "run `clawguard profile init` to write the hardened configuration")
			}
		}
	default:
		v.c.add("agent", fmt.Sprintf("unknown agent %q", v.p.Agent), `write "openclaw" or leave it out`)
	}
}

func (v validator) publish() {
	for i, spec := range v.p.Publish {
		if _, err := ParsePublish(spec); err != nil {
			v.c.add(fmt.Sprintf("publish[%d]", i), err.Error(), `write HOST_IP:HOST_PORT:CONTAINER_PORT with a loopback address, e.g. "127.0.0.1:18789:18789"`)
		}
	}
}

// Publish is a host port forwarded to a sandbox port.
type Publish struct {
	HostIP        netip.Addr
	HostPort      int
	ContainerPort int
}

// ParsePublish reads HOST_IP:HOST_PORT:CONTAINER_PORT[/tcp]; the host address
// must be loopback so nothing outside the host reaches the agent.
func ParsePublish(s string) (Publish, error) {
	s = strings.TrimSuffix(s, "/tcp")
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return Publish{}, fmt.Errorf("%q is not HOST_IP:HOST_PORT:CONTAINER_PORT", s)
	}
	hostPart, cport := s[:i], s[i+1:]
	host, hport, err := net.SplitHostPort(hostPart)
	if err != nil {
		return Publish{}, fmt.Errorf("%q has no host address; publishing on every address is refused", s)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return Publish{}, fmt.Errorf("%q: %q is not an IP address", s, host)
	}
	if !ip.IsLoopback() {
		return Publish{}, fmt.Errorf("%q: host address %s is not loopback; the agent would be reachable from the network", s, ip)
	}
	hp, err1 := strconv.Atoi(hport)
	cp, err2 := strconv.Atoi(cport)
	if err1 != nil || err2 != nil || hp < 1 || hp > 65535 || cp < 1 || cp > 65535 {
		return Publish{}, fmt.Errorf("%q: ports must be 1-65535", s)
	}
	return Publish{HostIP: ip, HostPort: hp, ContainerPort: cp}, nil
}

func looksSecret(name string) bool {
	for _, part := range strings.FieldsFunc(strings.ToUpper(name), func(r rune) bool { return r == '_' }) {
		for _, w := range secretWords {
			if strings.HasSuffix(part, w) {
				return true
			}
		}
	}
	return false
}

// NormalizeCapability writes a capability the way OCI specs do (CAP_X).
func NormalizeCapability(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(s, "CAP_") {
		s = "CAP_" + s
	}
	return s
}

var knownCapabilities = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(`CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
		LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO
		SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE
		AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON
		BPF CHECKPOINT_RESTORE`) {
		m["CAP_"+n] = true
	}
	return m
}()
