package verify

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Status is a check's verdict.
type Status string

const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	// Warn means the check could not prove the control either way (nothing
	// to test against) or the profile itself relaxes it on purpose.
	Warn Status = "WARN"
)

// Result is one check's verdict with what was expected and what was seen.
type Result struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Status   Status `json:"status"`
	Expected string `json:"expected"`
	Seen     string `json:"seen"`
}

// Expect is what the sandbox's profile promises.
type Expect struct {
	UID, GID     uint32
	Capabilities []string // CAP_* names the profile grants; normally none
	ReadOnlyRoot bool
	Writable     []string // writable mount targets, volumes among them
	// TLSPorts are the ports behind the name gate; ByAddress the
	// entries' HOST:PORT that opted out of it (tls: false).
	TLSPorts  []int
	ByAddress []string
	Volumes   []Volume
	Tmpfs     []Tmpfs
	Secrets   []string // file names under /run/secrets
	// BoundHosts are the hosts credentials are bound to.
	BoundHosts  []string
	MemoryBytes int64
	CPUs        float64
	Pids        int64
	Publish     []string // published port specs, as the profile writes them
	// Syscall says how the profile answers a probed call: the errno, or
	// denied false when it allows it.
	Syscall func(call string) (errno string, denied bool)
	// Agent is the agent the profile runs ("openclaw" or ""), and
	// AgentConfig the agent's configuration files as the probe reads them.
	Agent       string
	AgentConfig AgentConfig
}

// Volume is a size-capped volume the profile asks for.
type Volume struct {
	Path      string
	SizeBytes int64
}

// Tmpfs is a tmpfs mount the profile asks for.
type Tmpfs struct {
	Path      string
	SizeBytes int64
}

// Credentials is what the host sees of a sandbox's bound secrets.
type Credentials struct {
	// Searched are the places the real keys were looked for; Found those
	// where one was; Errors where the search could not look.
	Searched      int
	Found, Errors []string
	// CA is the authority the sandbox trusts, as the host reads it: its
	// name, the hosts it may sign for, and the other sandboxes that trust
	// the same one.
	CAName     string
	CAHosts    []string
	CASharedBy []string
	CAErr      string
}

// Host is what the host sees of the sandbox.
type Host struct {
	Credentials Credentials
	// Namespaces pairs the task's namespaces with the host's.
	Namespaces []Namespace
	// EnvLeaks and SpecLeaks name the secrets whose value appears in the
	// task's environment or in the container spec.
	EnvLeaks, SpecLeaks []string
	// LeakSearchErrors say where the secret search could not look (the
	// task's environment unreadable, say): no evidence is not a pass.
	LeakSearchErrors []string
	Published        []Published
	// Unexplained are egress set members no allowlist entry accounts for;
	// Forbidden those in ranges that need an explicit cidr: entry.
	Unexplained, Forbidden []string
	// Silent are destinations that must be blocked but did not answer the
	// host either, with the host's error: blocking them proves nothing.
	Silent map[string]string
	// Guarded are names whose answers the DNS gate dropped for pointing
	// at ranges a name may not open (private, loopback, metadata, ...),
	// with the range: such a name resolves to nothing by design.
	Guarded map[string]string
	// HostListener is the temporary host listener the host-ports dials
	// target, after the host itself reached it; empty if it could not be
	// opened.
	HostListener string
	// SecondLayer is what was read of the rules in the sandbox's own
	// namespace.
	SecondLayer Layer
	// OtherServed is, per "addr:port" the name gate was probed at, the
	// error of the host's own TLS connection there naming the other name
	// ("" when the destination served it: the control).
	OtherServed map[string]string
}

// Layer is the second layer as read: what is missing or out of place, or
// why it could not be read. Nothing read is no evidence.
type Layer struct {
	Read    bool
	Missing []string
	Err     string
}

// Namespace is one namespace of the task and the host's of the same kind.
type Namespace struct {
	Kind          string
	Sandbox, Host uint64
	// Want, if set, is the inode the sandbox must be in (clawguard's own
	// network namespace).
	Want uint64
}

// Published is one published port and who listens on it on the host.
type Published struct {
	Spec      string
	HostIP    string
	Port      int
	Listeners []string // local addresses listening on Port
}

// Check is one control and how it is judged.
type Check struct {
	ID     string
	Title  string
	Proves string // what a PASS proves, for the docs
	Risks  string // the threat-model risks the control mitigates
	judge  func(e Expect, r Report, h Host) (Status, string, string)
	agent  string // only for sandboxes running this agent
}

// Judge runs every check against the observations, in a fixed order.
func Judge(e Expect, r Report, h Host) []Result {
	var out []Result
	for _, c := range Checks() {
		if c.agent != "" && c.agent != e.Agent {
			continue
		}
		st, want, seen := c.judge(e, r, h)
		out = append(out, Result{ID: c.ID, Title: c.Title, Status: st, Expected: want, Seen: seen})
	}
	return out
}

// Failed reports whether any result is a FAIL.
func Failed(rs []Result) bool {
	return slices.ContainsFunc(rs, func(r Result) bool { return r.Status == Fail })
}

// Checks is the list of checks in the order they are reported.
func Checks() []Check {
	cs := []Check{
		{ID: "user", Risks: "T12", Title: "runs as the profile's unprivileged user", Proves: "the agent is not root inside the sandbox and has no supplementary groups", judge: checkUser},
		{ID: "capabilities", Risks: "T12", Title: "no capabilities", Proves: "all five capability sets hold exactly what the profile grants (nothing, by default)", judge: checkCaps},
		{ID: "no-new-privs", Risks: "T12", Title: "no_new_privs set", Proves: "setuid binaries and file capabilities cannot raise privileges", judge: checkNNP},
		{ID: "seccomp", Risks: "T12", Title: "seccomp filter active", Proves: "the kernel filters every syscall of the agent (mode 2)", judge: checkSeccompMode},
		{ID: "syscalls", Risks: "T12", Title: "dangerous syscalls refused", Proves: "each dangerous call the profile denies answers with the profile's errno, made for real from inside", judge: checkSyscalls},
		{ID: "rootfs", Risks: "T2", Title: "root filesystem read-only", Proves: "/ is mounted ro and a write to it fails", judge: checkRootfs},
		{ID: "workspace", Risks: "-", Title: "writable mounts writable", Proves: "each mount the profile makes writable accepts a new file", judge: checkWorkspace},
		{ID: "disk", Risks: "T11", Title: "writable mounts size-capped", Proves: "each volume is a filesystem of its own no larger than the profile's size, so filling it fills nothing else; a writable host directory is reported as uncapped (WARN)", judge: checkDisk},
		{ID: "tmpfs", Risks: "T2, T11, T12", Title: "tmpfs mounts noexec, size-limited", Proves: "each profile tmpfs is a tmpfs with noexec, nosuid, nodev and the profile's size", judge: checkTmpfs},
		{ID: "run-shm", Risks: "T2, T12", Title: "/run and /dev/shm noexec", Proves: "the runtime's own tmpfs mounts cannot hold executables", judge: checkRunShm},
		{ID: "exec-writable", Risks: "T2, T12", Title: "nothing executes from a writable path", Proves: "a copy of the probe written to every writable mount fails to execute", judge: checkExecWritable},
		{ID: "memfd-exec", Risks: "T2, T12", Title: "no binary runs from a memfd", Proves: "a copy of the probe in an anonymous memory file (memfd_create) fails to execute (a loader that maps code itself is not covered)", judge: checkMemfdExec},
		{ID: "proc-sys", Risks: "T12", Title: "/proc/sys read-only", Proves: "kernel parameters cannot be changed from inside", judge: checkProcSys},
		{ID: "masked-paths", Risks: "T6, T12", Title: "sensitive /proc and /sys paths masked", Proves: "/proc/kcore, /proc/keys, /proc/timer_list, /sys/firmware and the rest are masked or absent", judge: checkMasked},
		{ID: "runtime-sockets", Risks: "T12", Title: "no container-runtime socket reachable", Proves: "no docker, containerd, shim, podman, cri-o or clawguard socket by path or abstract name", judge: checkRuntimeSockets},
		{ID: "namespaces", Risks: "T12", Title: "own namespaces", Proves: "(host) the task shares no namespace with the host and is in clawguard's network namespace", judge: checkNamespaces},
		{ID: "pids", Risks: "T11", Title: "pids limit", Proves: "the cgroup caps the number of tasks as the profile says", judge: checkPids},
		{ID: "memory", Risks: "T11", Title: "memory limit", Proves: "the cgroup caps memory as the profile says", judge: checkMemory},
		{ID: "cpu", Risks: "T11", Title: "cpu limit", Proves: "the cgroup caps CPU time as the profile says", judge: checkCPU},
		{ID: "secrets", Risks: "T6", Title: "secrets mounted as files", Proves: "each secret is a file under /run/secrets, readable by the agent and by no one else", judge: checkSecrets},
		{ID: "credentials", Risks: "T3, T6", Title: "bound keys stay outside, foreign keys are refused", Proves: "(host) no bound key's value is in the sandbox's staged secrets, its processes' environments and command lines, or its spec; the sandbox's CA is its own, for its bound hosts only; a request to each bound host with a key the sandbox was not given is refused by the broker (403)", judge: checkCredentials},
		{ID: "secrets-env", Risks: "T6", Title: "secrets absent from environment and spec", Proves: "(host) no secret value appears in the task's environment or the container spec", judge: checkSecretLeaks},
		{ID: "raw-sockets", Risks: "T3, T12", Title: "raw and packet sockets refused", Proves: "the agent cannot forge packets or sniff the link", judge: checkRawSockets},
		{ID: "egress-blocked", Risks: "T3", Title: "egress outside the allowlist blocked", Proves: "a destination outside the allowlist cannot be reached", judge: dialsBlocked("egress-blocked", "no destination outside the allowlist known: pass --blocked-probe HOST:PORT")},
		{ID: "allowlist", Risks: "-", Title: "allowlisted names resolve and connect", Proves: "every allowlisted name resolves through the DNS gate and its ports answer", judge: checkAllowlist},
		{ID: "second-layer", Risks: "T3", Title: "second layer in the sandbox's namespace", Proves: "(host) the sandbox's own network namespace drops, first thing in OUTPUT, what its allowlist does not grant: a flush of the host's tables opens nothing", judge: checkSecondLayer},
		{ID: "name-gate", Risks: "T3", Title: "TLS passes only under its allowlisted name", Proves: "on a port behind the name gate (443 of every host entry, and the ports of `tls: true` entries), a TLS connection naming the allowlisted name passes and one naming another name to the same address is refused, where the host shows the destination serves both; entries with `tls: false` are named as checked by address only", judge: checkNameGate},
		{ID: "egress-set", Risks: "T3", Title: "egress set holds only allowlisted addresses", Proves: "(host) every address the kernel lets through comes from an allowlisted name or cidr entry", judge: checkEgressSet},
		{ID: "dns-denied", Risks: "T3", Title: "DNS refuses names outside the allowlist", Proves: "a name outside the allowlist gets no address", judge: checkDeniedName},
		{ID: "dns-direct", Risks: "T3", Title: "direct DNS to outside resolvers blocked", Proves: "the agent cannot bypass the DNS gate by asking a resolver itself", judge: checkDirectDNS},
		{ID: "metadata", Risks: "T3, T6", Title: "cloud metadata unreachable", Proves: "169.254.169.254 cannot be reached", judge: dialsBlocked("metadata", "")},
		{ID: "private-ranges", Risks: "T3", Title: "private ranges unreachable", Proves: "private, loopback, link-local and reserved addresses cannot be reached unless a cidr: entry allows them", judge: checkPrivate},
		{ID: "ipv6", Risks: "T3", Title: "IPv6 egress blocked", Proves: "IPv6 is off inside the sandbox and a v6 connection fails", judge: checkIPv6},
		{ID: "host-ports", Risks: "T3, T12", Title: "host ports unreachable", Proves: "a port listening on every host address cannot be reached from inside", judge: checkHostPorts},
		{ID: "other-sandboxes", Risks: "T3", Title: "other sandboxes unreachable", Proves: "no other running sandbox answers, not even with a reset", judge: dialsBlocked("other-sandboxes", "")},
		{ID: "published", Risks: "T9", Title: "published ports on loopback only", Proves: "(host) each published port listens on a loopback address of the host and nowhere else", judge: checkPublished},
	}
	return append(cs, openClawChecks()...)
}

func checkUser(e Expect, r Report, _ Host) (Status, string, string) {
	id := r.Identity
	want := fmt.Sprintf("uid %d, gid %d, no other groups", e.UID, e.GID)
	seen := fmt.Sprintf("uid %d, gid %d, groups %v", id.UID, id.GID, id.Groups)
	extra := slices.DeleteFunc(slices.Clone(id.Groups), func(g int) bool { return g == int(e.GID) })
	if id.UID == 0 || id.UID != int(e.UID) || id.GID != int(e.GID) || len(extra) > 0 {
		return Fail, want, seen
	}
	return Pass, want, seen
}

func checkCaps(e Expect, r Report, _ Host) (Status, string, string) {
	want, unknown := capMask(e.Capabilities)
	if unknown != "" {
		return Fail, "capabilities the kernel knows", "profile names " + unknown
	}
	sets := []struct{ name, hex string }{
		{"effective", r.Identity.CapEff}, {"permitted", r.Identity.CapPrm}, {"bounding", r.Identity.CapBnd},
		{"ambient", r.Identity.CapAmb}, {"inheritable", r.Identity.CapInh},
	}
	wantText := "none"
	if len(e.Capabilities) > 0 {
		wantText = strings.Join(e.Capabilities, ",")
	}
	var bad []string
	for _, s := range sets {
		got, err := strconv.ParseUint(s.hex, 16, 64)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s unreadable (%q)", s.name, s.hex))
			continue
		}
		// A granted capability is in every set: a non-root agent keeps it
		// across execve only through the ambient set.
		if got != want {
			bad = append(bad, s.name+": "+capNames(got))
		}
	}
	if len(bad) > 0 {
		return Fail, wantText, strings.Join(bad, "; ")
	}
	if len(e.Capabilities) > 0 {
		return Warn, wantText, "the profile grants " + wantText
	}
	return Pass, wantText, "all five sets empty"
}

func checkNNP(_ Expect, r Report, _ Host) (Status, string, string) {
	return equal("NoNewPrivs 1", "NoNewPrivs "+r.Identity.NoNewPrivs, r.Identity.NoNewPrivs == "1")
}

func checkSeccompMode(_ Expect, r Report, _ Host) (Status, string, string) {
	return equal("Seccomp 2 (filter)", "Seccomp "+r.Identity.Seccomp, r.Identity.Seccomp == "2")
}

func checkSyscalls(e Expect, r Report, _ Host) (Status, string, string) {
	var wrong []string
	n := 0
	for _, s := range r.Syscalls {
		want, denied := e.Syscall(s.Name)
		if !denied {
			continue
		}
		n++
		if s.Errno != want {
			wrong = append(wrong, fmt.Sprintf("%s=%s (want %s)", s.Name, s.Errno, want))
		}
	}
	want := fmt.Sprintf("%d denied calls answer the profile's errno", n)
	if n == 0 {
		return Fail, want, "the probe made none of the calls the profile denies"
	}
	if len(wrong) > 0 {
		return Fail, want, limit(wrong, 6)
	}
	return Pass, want, fmt.Sprintf("%d of %d refused as expected", n, n)
}

func checkRootfs(e Expect, r Report, _ Host) (Status, string, string) {
	m, ok := mountAt(r.Mounts, "/")
	want := "/ mounted ro, writes fail with EROFS"
	if !ok {
		return Fail, want, "no mount at / in mountinfo"
	}
	seen := "options " + strings.Join(m.Options, ",") + ", write: " + errOrOK(r.WriteRoot)
	if !e.ReadOnlyRoot {
		return Fail, want, "the profile sets read_only_rootfs: false; " + seen
	}
	if !slices.Contains(m.Options, "ro") || r.WriteRoot != "EROFS" {
		return Fail, want, seen
	}
	return Pass, want, seen
}

func checkWorkspace(e Expect, r Report, _ Host) (Status, string, string) {
	if len(e.Writable) == 0 {
		return Pass, "no writable mounts", "none asked for"
	}
	var bad, good []string
	for _, p := range e.Writable {
		if err, ok := r.Writes[p]; !ok || err != "" {
			bad = append(bad, p+": "+errOrMissing(err, ok))
		} else {
			good = append(good, p)
		}
	}
	want := "writable: " + strings.Join(e.Writable, ", ")
	if len(bad) > 0 {
		return Fail, want, strings.Join(bad, "; ")
	}
	return Pass, want, "wrote a file in " + strings.Join(good, ", ")
}

func checkDisk(e Expect, r Report, _ Host) (Status, string, string) {
	if len(e.Writable) == 0 {
		return Pass, "no writable mounts", "none asked for"
	}
	size := map[string]int64{}
	for _, v := range e.Volumes {
		size[v.Path] = v.SizeBytes
	}
	var want, seen, bad, uncapped []string
	for _, p := range e.Writable {
		d, ok := r.Disks[p]
		capBytes, isVolume := size[p]
		if !isVolume {
			uncapped = append(uncapped, p)
			want = append(want, p+": a host directory (no cap asked for)")
			if ok && d.Err == "" {
				seen = append(seen, fmt.Sprintf("%s: on a filesystem of %s with %s free, shared with the host", p, mib(d.TotalBytes), mib(d.FreeBytes)))
			}
			continue
		}
		want = append(want, fmt.Sprintf("%s: a filesystem of its own of at most %s", p, mib(capBytes)))
		switch {
		case !ok || d.Err != "":
			bad = append(bad, p+": "+errOrMissing(d.Err, ok))
		// The filesystem's own structures take a part of it, never
		// half.
		case d.TotalBytes > capBytes || d.TotalBytes < capBytes/2:
			bad = append(bad, fmt.Sprintf("%s: on a filesystem of %s, not its own volume of %s", p, mib(d.TotalBytes), mib(capBytes)))
		default:
			seen = append(seen, fmt.Sprintf("%s: %s usable, %s free", p, mib(d.TotalBytes), mib(d.FreeBytes)))
		}
	}
	w := strings.Join(want, "; ")
	switch {
	case len(bad) > 0:
		return Fail, w, strings.Join(bad, "; ")
	case len(uncapped) > 0:
		seen = append(seen, fmt.Sprintf("%s can fill the host's disk: make each a volume (volumes: [{name: workspace, target: %s, size: 2G}])", strings.Join(uncapped, ", "), uncapped[0]))
		return Warn, w, strings.Join(seen, "; ")
	}
	return Pass, w, strings.Join(seen, "; ")
}

func checkNameGate(e Expect, r Report, h Host) (Status, string, string) {
	st, want, seen := judgeNameGate(e, r, h)
	if len(e.ByAddress) > 0 {
		seen += "; by address only, as the profile says (tls: false): " + strings.Join(e.ByAddress, ", ")
	}
	return st, want, seen
}

func judgeNameGate(e Expect, r Report, h Host) (Status, string, string) {
	if len(e.TLSPorts) == 0 {
		return Pass, "no port behind the name gate", "none asked for"
	}
	if len(r.Names) == 0 {
		return Warn, "each allowlisted name served under its own name only", "no exact name on a TLS port to try (a wildcard names no host to probe)"
	}
	var bad, unproven, good []string
	for _, n := range r.Names {
		at := net.JoinHostPort(n.Addr, strconv.Itoa(n.Port))
		switch {
		case n.Resolve != "" || n.Addr == "":
			unproven = append(unproven, fmt.Sprintf("%s: does not resolve (%s)", n.Name, n.Resolve))
		case n.Named != "":
			bad = append(bad, fmt.Sprintf("%s at %s refused under its own name: %s", n.Name, at, n.Named))
		case n.Othered == "":
			bad = append(bad, fmt.Sprintf("%s (the address of %s) served %s", at, n.Name, n.Other))
		case h.OtherServed[at] != "":
			unproven = append(unproven, fmt.Sprintf("%s refuses %s itself (%s): its refusal through the gate proves nothing", at, n.Other, h.OtherServed[at]))
		default:
			good = append(good, fmt.Sprintf("%s at %s: its own name served, %s refused (%s)", n.Name, at, n.Other, n.Othered))
		}
	}
	want := "each allowlisted name served under its own name only"
	switch {
	case len(bad) > 0:
		return Fail, want, strings.Join(bad, "; ")
	case len(unproven) > 0:
		return Warn, want, strings.Join(append(unproven, good...), "; ")
	}
	return Pass, want, strings.Join(good, "; ")
}

// mib writes a byte count in MiB, one decimal.
func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }

func checkTmpfs(e Expect, r Report, _ Host) (Status, string, string) {
	if len(e.Tmpfs) == 0 {
		return Pass, "no tmpfs mounts", "none asked for"
	}
	var want, seen []string
	ok := true
	for _, t := range e.Tmpfs {
		want = append(want, fmt.Sprintf("%s tmpfs noexec,nosuid,nodev size=%dk", t.Path, t.SizeBytes/1024))
		m, found := mountAt(r.Mounts, t.Path)
		if !found {
			ok = false
			seen = append(seen, t.Path+": not mounted")
			continue
		}
		size := superOpt(m.Super, "size")
		seen = append(seen, fmt.Sprintf("%s %s %s size=%s", t.Path, m.FSType, strings.Join(m.Options, ","), size))
		if m.FSType != "tmpfs" || !hasAll(m.Options, "noexec", "nosuid", "nodev") || size != fmt.Sprintf("%dk", t.SizeBytes/1024) {
			ok = false
		}
	}
	return verdict(ok, strings.Join(want, "; "), strings.Join(seen, "; "))
}

func checkRunShm(_ Expect, r Report, _ Host) (Status, string, string) {
	ok := true
	var seen []string
	for _, p := range []string{"/run", "/dev/shm"} {
		m, found := mountAt(r.Mounts, p)
		if !found {
			ok = false
			seen = append(seen, p+": not mounted")
			continue
		}
		seen = append(seen, p+" "+strings.Join(m.Options, ","))
		if !hasAll(m.Options, "noexec", "nosuid", "nodev") {
			ok = false
		}
	}
	return verdict(ok, "/run and /dev/shm noexec,nosuid,nodev", strings.Join(seen, "; "))
}

func checkExecWritable(_ Expect, r Report, _ Host) (Status, string, string) {
	var ran, refused []string
	for _, p := range slices.Sorted(maps.Keys(r.Execs)) {
		if r.Execs[p] == "" {
			ran = append(ran, p)
		} else {
			refused = append(refused, p+" ("+r.Execs[p]+")")
		}
	}
	want := "exec fails on every writable mount"
	if len(ran) > 0 {
		return Fail, want, "executed from " + strings.Join(ran, ", ")
	}
	if len(refused) == 0 {
		return Pass, want, "no path is writable"
	}
	return Pass, want, "refused in " + strings.Join(refused, ", ")
}

func checkMemfdExec(_ Expect, r Report, _ Host) (Status, string, string) {
	const want = "memfd_create or the exec from it refused"
	switch {
	case r.MemfdExec == "":
		return Fail, want, "a binary copied into a memfd executed"
	case strings.HasPrefix(r.MemfdExec, "memfd_create: "), strings.HasPrefix(r.MemfdExec, "exec: "):
		return Pass, want, r.MemfdExec
	}
	// The probe could not even try (no memory to copy itself, say).
	return Warn, want, "not tried: " + r.MemfdExec
}

func checkProcSys(_ Expect, r Report, _ Host) (Status, string, string) {
	m, found := mountAt(r.Mounts, "/proc/sys")
	seen := "write: " + errOrOK(r.WriteProcSys)
	if found {
		seen = "options " + strings.Join(m.Options, ",") + ", " + seen
	}
	return verdict(found && slices.Contains(m.Options, "ro") && r.WriteProcSys != "", "/proc/sys mounted ro, writes fail", seen)
}

// MaskedPaths are hidden from the sandbox (a /dev/null or empty read-only
// tmpfs over them); ReadOnlyPaths are visible but read-only.
var (
	MaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	ReadOnlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

func checkMasked(_ Expect, r Report, _ Host) (Status, string, string) {
	var open []string
	n := 0
	for _, p := range MaskedPaths {
		if slices.Contains(r.Missing, p) {
			continue
		}
		n++
		if _, ok := mountAt(r.Mounts, p); !ok {
			open = append(open, p)
		}
	}
	for _, p := range ReadOnlyPaths {
		if slices.Contains(r.Missing, p) {
			continue
		}
		n++
		if m, ok := mountAt(r.Mounts, p); !ok || !slices.Contains(m.Options, "ro") {
			open = append(open, p+" (writable)")
		}
	}
	want := fmt.Sprintf("%d masked, %d read-only (where they exist)", len(MaskedPaths), len(ReadOnlyPaths))
	if len(open) > 0 {
		return Fail, want, "not masked: " + strings.Join(open, ", ")
	}
	return Pass, want, fmt.Sprintf("%d present, all covered", n)
}

func checkRuntimeSockets(_ Expect, r Report, _ Host) (Status, string, string) {
	if len(r.RuntimeSockets) > 0 {
		return Fail, "none", limit(r.RuntimeSockets, 5)
	}
	return Pass, "none", "none by path or in the abstract namespace"
}

func checkNamespaces(_ Expect, _ Report, h Host) (Status, string, string) {
	want := "net, pid, ipc, uts, mnt, cgroup differ from the host's"
	if len(h.Namespaces) == 0 {
		return Fail, want, "the task's namespaces could not be read"
	}
	var shared []string
	for _, n := range h.Namespaces {
		if n.Sandbox == 0 || n.Host == 0 {
			shared = append(shared, n.Kind+" unreadable")
		} else if n.Sandbox == n.Host {
			shared = append(shared, n.Kind+" shared with the host")
		} else if n.Want != 0 && n.Sandbox != n.Want {
			shared = append(shared, n.Kind+" is not clawguard's namespace")
		}
	}
	if len(shared) > 0 {
		return Fail, want, strings.Join(shared, "; ")
	}
	return Pass, want, fmt.Sprintf("%d namespaces, none shared", len(h.Namespaces))
}

func checkPids(e Expect, r Report, _ Host) (Status, string, string) {
	want := strconv.FormatInt(e.Pids, 10)
	return equal("pids.max "+want, "pids.max "+orNone(r.Limits.PidsMax), r.Limits.PidsMax == want)
}

func checkMemory(e Expect, r Report, _ Host) (Status, string, string) {
	want := strconv.FormatInt(e.MemoryBytes, 10)
	return equal("memory.max "+want, "memory.max "+orNone(r.Limits.MemoryBytes), r.Limits.MemoryBytes == want)
}

func checkCPU(e Expect, r Report, _ Host) (Status, string, string) {
	const period = 100000
	quota := strconv.FormatInt(int64(e.CPUs*period+0.5), 10)
	want := quota + " " + strconv.Itoa(period)
	// cgroup v2 reads "QUOTA PERIOD"; v1's cfs_quota_us has the quota alone
	// (its period is the kernel default the spec also uses).
	got, _, _ := strings.Cut(r.Limits.CPUQuota, " ")
	return equal("cpu.max "+want, "cpu.max "+orNone(r.Limits.CPUQuota), got == quota)
}

func checkSecrets(e Expect, r Report, _ Host) (Status, string, string) {
	if len(e.Secrets) == 0 {
		return Pass, "no secrets", "none asked for"
	}
	got := map[string]Secret{}
	for _, s := range r.Secrets {
		got[s.Name] = s
	}
	var bad []string
	for _, n := range e.Secrets {
		s, ok := got[n]
		m, mounted := mountAt(r.Mounts, "/run/secrets/"+n)
		switch {
		case !ok:
			bad = append(bad, n+": missing")
		case !s.Readable:
			bad = append(bad, n+": not readable by the agent")
		case s.Mode != "0400":
			bad = append(bad, n+": mode "+s.Mode)
		case !mounted || !hasAll(m.Options, "ro", "noexec"):
			bad = append(bad, n+": not a read-only noexec mount")
		}
	}
	want := fmt.Sprintf("%d files in /run/secrets, mode 0400, ro,noexec", len(e.Secrets))
	if len(bad) > 0 {
		return Fail, want, strings.Join(bad, "; ")
	}
	return Pass, want, strings.Join(e.Secrets, ", ")
}

func checkSecretLeaks(e Expect, _ Report, h Host) (Status, string, string) {
	want := "no secret value in the environment or the spec"
	if len(e.Secrets) == 0 {
		return Pass, want, "no secrets"
	}
	var bad []string
	for _, n := range h.EnvLeaks {
		bad = append(bad, n+" in the task environment")
	}
	for _, n := range h.SpecLeaks {
		bad = append(bad, n+" in the container spec")
	}
	for _, e := range h.LeakSearchErrors {
		bad = append(bad, "could not search "+e)
	}
	if len(bad) > 0 {
		return Fail, want, strings.Join(bad, "; ")
	}
	return Pass, want, fmt.Sprintf("%d secret values searched for, none found", len(e.Secrets))
}

func checkRawSockets(_ Expect, r Report, _ Host) (Status, string, string) {
	seen := "AF_INET raw: " + errOrOK(r.RawSocket) + ", AF_PACKET: " + errOrOK(r.PacketSocket)
	return verdict(r.RawSocket == "EPERM" && r.PacketSocket == "EPERM", "both refused with EPERM", seen)
}

// dialsBlocked judges a check whose dials must all fail. Without dials the
// check is a WARN if ifNone says why, else a PASS with nothing to reach.
func dialsBlocked(check, ifNone string) func(Expect, Report, Host) (Status, string, string) {
	return func(_ Expect, r Report, h Host) (Status, string, string) {
		ds := dialsFor(r, check)
		if len(ds) == 0 {
			if ifNone != "" {
				return Warn, "unreachable", ifNone
			}
			return Pass, "unreachable", "nothing to reach"
		}
		return blocked(ds, h.Silent)
	}
}

// blocked passes when every dial failed and at least one of them went to a
// destination that answers the host: a destination silent to everyone
// proves nothing, so a check with only those is a WARN.
func blocked(ds []DialResult, silent map[string]string) (Status, string, string) {
	var through, held, unproven []string
	for _, d := range ds {
		switch {
		case d.Reachable():
			through = append(through, d.Network+" "+d.Addr+" answered"+refusedNote(d))
		case silent[d.Addr] != "":
			unproven = append(unproven, d.Addr+" (silent to the host too: "+silent[d.Addr]+")")
		default:
			held = append(held, d.Network+" "+d.Addr+": "+d.Err)
		}
	}
	switch {
	case len(through) > 0:
		return Fail, "unreachable", strings.Join(through, "; ")
	case len(held) == 0:
		return Warn, "unreachable", "proves nothing: " + strings.Join(unproven, "; ") + "; pass --blocked-probe with a destination the host reaches"
	}
	return Pass, "unreachable", limit(append(held, unproven...), 4)
}

func refusedNote(d DialResult) string {
	if d.Err == "ECONNREFUSED" {
		return " (reset)"
	}
	return ""
}

func checkAllowlist(_ Expect, r Report, h Host) (Status, string, string) {
	if len(r.Reach) == 0 {
		return Warn, "each name resolves and its ports answer", "no exact name in the allowlist to try"
	}
	var bad, good, guarded []string
	for _, rr := range r.Reach {
		if len(rr.Addrs) == 0 {
			// Not a failure of clawguard's: the gate dropped every
			// answer, as it must for these ranges.
			if rng, ok := h.Guarded[strings.TrimSuffix(strings.ToLower(rr.Name), ".")]; ok {
				guarded = append(guarded, rr.Name+": every answer is in "+rng+", which the DNS gate drops (allow the range with a cidr: entry if the agent must reach it)")
				continue
			}
			bad = append(bad, rr.Name+": resolve: "+orNone(rr.Err))
			continue
		}
		if rr.Err != "" {
			bad = append(bad, rr.Name+": resolve: "+rr.Err)
			continue
		}
		for _, d := range rr.Dials {
			if d.Err != "" {
				bad = append(bad, rr.Name+" "+d.Addr+": "+d.Err)
			} else {
				good = append(good, rr.Name+" "+d.Addr)
			}
		}
	}
	want := "each name resolves and its ports answer"
	if len(bad) > 0 {
		return Fail, want, limit(bad, 4)
	}
	if len(guarded) > 0 {
		return Warn, want, limit(guarded, 4)
	}
	return Pass, want, limit(good, 4)
}

func checkEgressSet(_ Expect, _ Report, h Host) (Status, string, string) {
	if len(h.Unexplained) > 0 {
		return Fail, "only allowlisted addresses", "not from the allowlist: " + limit(h.Unexplained, 5)
	}
	return Pass, "only allowlisted addresses", "every member traced to an allowlist entry"
}

func checkDeniedName(_ Expect, r Report, _ Host) (Status, string, string) {
	l := r.DeniedLookup
	if len(l.Addrs) > 0 {
		return Fail, "no address", "resolved to " + strings.Join(l.Addrs, ", ")
	}
	return Pass, "no address", "refused: " + orNone(l.Err)
}

func checkDirectDNS(_ Expect, r Report, _ Host) (Status, string, string) {
	if len(r.DirectDNS) == 0 {
		return Warn, "no answer", "no outside resolver known to ask"
	}
	var answered, held []string
	for _, s := range slices.Sorted(maps.Keys(r.DirectDNS)) {
		if r.DirectDNS[s] == "" {
			answered = append(answered, s)
		} else {
			held = append(held, s+": "+r.DirectDNS[s])
		}
	}
	if len(answered) > 0 {
		return Fail, "no answer", "answered by " + strings.Join(answered, ", ")
	}
	return Pass, "no answer", strings.Join(held, "; ")
}

func checkPrivate(_ Expect, r Report, h Host) (Status, string, string) {
	if len(h.Forbidden) > 0 {
		return Fail, "no private address allowed", "in the egress set without a cidr: entry: " + limit(h.Forbidden, 5)
	}
	ds := dialsFor(r, "private-ranges")
	if len(ds) == 0 {
		return Pass, "no private address allowed", "the egress set holds none"
	}
	return blocked(ds, h.Silent)
}

func checkIPv6(_ Expect, r Report, _ Host) (Status, string, string) {
	seen := "disable_ipv6=" + r.IPv6.Disabled + ", connect: " + errOrOK(r.IPv6.Dial)
	off := r.IPv6.Disabled == "1" || r.IPv6.Disabled == "absent"
	return verdict(off && r.IPv6.Dial != "", "IPv6 disabled, v6 connect fails", seen)
}

func checkHostPorts(_ Expect, r Report, h Host) (Status, string, string) {
	if h.HostListener == "" {
		return Fail, "unreachable", "could not open a host listener to test against"
	}
	ds := dialsFor(r, "host-ports")
	if len(ds) == 0 {
		return Fail, "unreachable", "no host address to try"
	}
	st, want, seen := blocked(ds, nil)
	return st, want + " (host listener " + h.HostListener + ")", seen
}

func checkPublished(e Expect, _ Report, h Host) (Status, string, string) {
	if len(e.Publish) == 0 {
		return Pass, "loopback only", "nothing published"
	}
	var bad, good []string
	for _, spec := range e.Publish {
		i := slices.IndexFunc(h.Published, func(p Published) bool { return p.Spec == spec })
		if i < 0 {
			bad = append(bad, spec+": not examined on the host")
			continue
		}
		p := h.Published[i]
		if !isLoopback(p.HostIP) {
			bad = append(bad, p.Spec+": host address "+p.HostIP+" is not loopback")
			continue
		}
		if len(p.Listeners) == 0 {
			bad = append(bad, p.Spec+": nothing listens on port "+strconv.Itoa(p.Port))
			continue
		}
		for _, l := range p.Listeners {
			host, _, _ := strings.Cut(l, "|")
			if !isLoopback(host) {
				bad = append(bad, fmt.Sprintf("%s: port %d also listens on %s", p.Spec, p.Port, host))
			}
		}
		good = append(good, p.Spec)
	}
	if len(bad) > 0 {
		return Fail, "loopback only", strings.Join(bad, "; ")
	}
	return Pass, "loopback only", strings.Join(good, ", ")
}

// Document renders the checks as the Markdown reference in docs/verify.md.
func Document() string {
	var b strings.Builder
	b.WriteString("# `clawguard verify`: the checks\n\n")
	b.WriteString("Generated from `verify.Checks()` by `go test ./verify -run Documented -update`; do not edit by hand.\n\n")
	b.WriteString("Each check runs against a live sandbox: from inside, by the probe clawguard mounts read-only\n")
	b.WriteString("at `" + ProbePath + "` and runs as the agent's own user under the sandbox's seccomp profile,\n")
	b.WriteString("capabilities and network; or from the host, marked (host). Risks are the\n")
	b.WriteString("threat model's (T1-T12). The OpenClaw checks run for profiles with `agent: openclaw`.\n\n")
	b.WriteString("| check | title | a PASS proves | risks |\n|---|---|---|---|\n")
	for _, c := range Checks() {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", c.ID, c.Title, c.Proves, c.Risks)
	}
	return b.String()
}

func checkSecondLayer(_ Expect, _ Report, h Host) (Status, string, string) {
	want := "OUTPUT jumps first to CG-OUT, which drops all but the gate's DNS and the allowlist sets"
	l := h.SecondLayer
	switch {
	case l.Err != "":
		return Fail, want, "unreadable: " + l.Err
	case !l.Read:
		return Fail, want, "not read"
	case len(l.Missing) > 0:
		return Fail, want, "missing or out of place: " + strings.Join(l.Missing, "; ")
	}
	return Pass, want, "in place"
}

func checkCredentials(e Expect, r Report, h Host) (Status, string, string) {
	want := "keys outside the sandbox; its own CA; foreign keys refused"
	if len(e.BoundHosts) == 0 {
		return Pass, "no credential bound", "none asked for"
	}
	c := h.Credentials
	var bad []string
	for _, f := range c.Found {
		bad = append(bad, "a bound key in "+f)
	}
	for _, e := range c.Errors {
		bad = append(bad, "could not search "+e)
	}
	switch {
	case c.CAErr != "":
		bad = append(bad, "the sandbox's CA: "+c.CAErr)
	case len(c.CASharedBy) > 0:
		bad = append(bad, "the sandbox's CA is trusted by "+strings.Join(c.CASharedBy, ", ")+" too")
	case !slices.Equal(sortedCopy(c.CAHosts), sortedCopy(e.BoundHosts)):
		bad = append(bad, fmt.Sprintf("the sandbox's CA may sign for %v, not its bound hosts %v", c.CAHosts, e.BoundHosts))
	}
	var good []string
	for _, f := range r.Foreign {
		switch {
		case f.Err != "":
			bad = append(bad, fmt.Sprintf("%s with a foreign %s: %s", f.URL, f.Header, f.Err))
		case f.Status != 403 || !strings.HasPrefix(f.Body, "clawguard:"):
			bad = append(bad, fmt.Sprintf("%s with a foreign %s: %d %q, not the broker's refusal", f.URL, f.Header, f.Status, f.Body))
		default:
			good = append(good, fmt.Sprintf("%s with a foreign %s: 403 from the broker", f.URL, f.Header))
		}
	}
	if len(r.Foreign) == 0 {
		bad = append(bad, "no foreign key was tried")
	}
	if len(bad) > 0 {
		return Fail, want, strings.Join(bad, "; ")
	}
	return Pass, want, fmt.Sprintf("no bound key in %d places searched; CA %q for %s; %s", c.Searched, c.CAName, strings.Join(c.CAHosts, ", "), strings.Join(good, "; "))
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
