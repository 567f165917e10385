package verify

import (
	"slices"
	"strings"
	"testing"
)

const goodConfig = `{
  // comments are fine
  "tools": {"exec": {"host": "gateway", "security": "allowlist", "ask": "always", "strictInlineEval": true}},
  "browser": {"enabled": false},
  "skills": {"allowBundled": []},
  "security": {"installPolicy": {"enabled": true}},
  "channels": {},
  "logging": {"level": "debug", "file": "/home/node/.openclaw/logs/openclaw.jsonl"},
}`

const goodApprovals = `{
  "version": 1,
  "defaults": {"security": "allowlist", "ask": "always", "askFallback": "deny", "autoAllowSkills": false},
  "agents": {"*": {"allowlist": [{"pattern": "ls"}, {"pattern": "cat"}]}}
}`

// good returns observations of a sandbox where every control holds.
func good() (Expect, Report, Host) {
	e := Expect{
		UID: 1000, GID: 1000, ReadOnlyRoot: true, Writable: []string{"/workspace"}, Volumes: []Volume{{Path: "/workspace", SizeBytes: 32 << 20}},
		TLSPorts: []int{443},
		Tmpfs:    []Tmpfs{{Path: "/tmp", SizeBytes: 100 << 20}}, Secrets: []string{"api-key"},
		MemoryBytes: 1 << 30, CPUs: 1, Pids: 100, Publish: []string{"127.0.0.1:18789:18789"},
		Syscall: func(call string) (string, bool) {
			if call == "clone3" {
				return "ENOSYS", true
			}
			return "EPERM", call != "read"
		},
		Agent: "openclaw",
		AgentConfig: AgentConfig{ConfigPath: "/etc/openclaw/openclaw.json", ApprovalsPath: "/etc/openclaw/exec-approvals.json",
			Allowed: []string{"ls", "cat", "head"}},
	}
	tmpfs := func(target string, opts ...string) Mount {
		return Mount{Target: target, FSType: "tmpfs", Options: append([]string{"rw"}, opts...), Super: []string{"size=102400k"}}
	}
	r := Report{
		Identity: Identity{UID: 1000, GID: 1000, Groups: []int{1000}, CapEff: "0000000000000000", CapPrm: "0000000000000000",
			CapBnd: "0000000000000000", CapAmb: "0000000000000000", CapInh: "0000000000000000", NoNewPrivs: "1", Seccomp: "2"},
		Mounts: []Mount{
			{Target: "/", FSType: "overlay", Options: []string{"ro", "relatime"}},
			{Target: "/proc", FSType: "proc", Options: []string{"rw", "nosuid", "nodev", "noexec"}},
			tmpfs("/tmp", "nosuid", "nodev", "noexec"),
			tmpfs("/run", "nosuid", "nodev", "noexec"),
			tmpfs("/dev/shm", "nosuid", "nodev", "noexec"),
			{Target: "/workspace", FSType: "ext4", Options: []string{"rw", "nosuid", "nodev", "noexec"}},
			{Target: "/etc/openclaw", FSType: "ext4", Options: []string{"ro", "nosuid", "nodev"}},
			{Target: "/run/secrets/api-key", FSType: "tmpfs", Options: []string{"ro", "nosuid", "nodev", "noexec"}},
		},
		Writes:       map[string]string{"/": "EROFS", "/tmp": "", "/workspace": "", "/etc/openclaw": "EROFS"},
		Execs:        map[string]string{"/tmp": "EACCES", "/workspace": "EACCES"},
		MemfdExec:    "memfd_create: ENOSYS",
		WriteRoot:    "EROFS",
		WriteProcSys: "EROFS",
		Limits:       Limits{MemoryBytes: "1073741824", PidsMax: "100", CPUQuota: "100000 100000"},
		Secrets:      []Secret{{Name: "api-key", Mode: "0400", UID: 1000, GID: 1000, Readable: true, Bytes: 20}},
		Syscalls:     []Syscall{{Name: "ptrace", Errno: "EPERM"}, {Name: "clone3", Errno: "ENOSYS"}, {Name: "socket(AF_PACKET)", Errno: "EPERM"}},
		RawSocket:    "EPERM", PacketSocket: "EPERM",
		IPv6: IPv6{Disabled: "1", Dial: "ENETUNREACH"},
		Dials: []DialResult{
			{Dial: Dial{Check: "egress-blocked", Network: "tcp", Addr: "198.51.100.7:80"}, Err: "timeout"},
			{Dial: Dial{Check: "metadata", Network: "tcp", Addr: "169.254.169.254:80"}, Err: "timeout"},
			{Dial: Dial{Check: "host-ports", Network: "tcp", Addr: "10.89.0.1:40000"}, Err: "timeout"},
		},
		Reach:        []ReachResult{{Name: "api.example.com", Addrs: []string{"198.51.100.10"}, Dials: []DialResult{{Dial: Dial{Addr: "198.51.100.10:443"}}}}},
		DeniedLookup: Lookup{Err: "no such host"},
		DirectDNS:    map[string]string{"198.51.100.53:53": "timeout"},
		Files:        map[string]File{"/etc/openclaw/openclaw.json": {Content: goodConfig}, "/etc/openclaw/exec-approvals.json": {Content: goodApprovals}},
		Disks:        map[string]Disk{"/workspace": {TotalBytes: 24 << 20, FreeBytes: 20 << 20}},
		Names: []NameResult{{NameProbe: NameProbe{Name: "api.example.com", Port: 443, Other: "clawguard-verify.invalid"},
			Addr: "198.51.100.10", Othered: "read: connection reset by peer"}},
	}
	for _, p := range MaskedPaths {
		r.Mounts = append(r.Mounts, Mount{Target: p, FSType: "tmpfs", Options: []string{"ro"}})
	}
	for _, p := range ReadOnlyPaths {
		r.Mounts = append(r.Mounts, Mount{Target: p, FSType: "proc", Options: []string{"ro"}})
	}
	h := Host{
		Namespaces:   []Namespace{{Kind: "net", Sandbox: 2, Host: 1, Want: 2}, {Kind: "pid", Sandbox: 3, Host: 4}},
		Published:    []Published{{Spec: "127.0.0.1:18789:18789", HostIP: "127.0.0.1", Port: 18789, Listeners: []string{"127.0.0.1"}}},
		HostListener: "0.0.0.0:40000",
		SecondLayer:  Layer{Read: true},
		OtherServed:  map[string]string{"198.51.100.10:443": ""},
		Credentials:  Credentials{Searched: 9, CAName: "clawguard sandbox a", CAHosts: []string{"api.anthropic.com"}},
	}
	e.BoundHosts = []string{"api.anthropic.com"}
	r.Foreign = []ForeignResult{{ForeignProbe: ForeignProbe{URL: "https://api.anthropic.com/", Header: "x-api-key", Value: "k"},
		Status: 403, Body: "clawguard: a credential in X-Api-Key that is not this sandbox's"}}
	return e, r, h
}

// The credentials check fails on each way a key could be exposed or a
// foreign one let through.
func TestTheCredentialsCheckFailsOnEachWayTheKeyOrAForeignOneGetsThrough(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(*Expect, *Report, *Host)
		seen  string
	}{
		{"the key in a process's environment", func(_ *Expect, _ *Report, h *Host) {
			h.Credentials.Found = []string{"process 7's environ (the key of api_key)"}
		}, "a bound key in process 7"},
		{"the search could not look", func(_ *Expect, _ *Report, h *Host) { h.Credentials.Errors = []string{"process 7's environ (EACCES)"} }, "could not search"},
		{"a CA another sandbox trusts too", func(_ *Expect, _ *Report, h *Host) { h.Credentials.CASharedBy = []string{"b"} }, "trusted by b too"},
		{"a CA for other hosts", func(_ *Expect, _ *Report, h *Host) { h.Credentials.CAHosts = []string{"example.com"} }, "may sign for"},
		{"no CA", func(_ *Expect, _ *Report, h *Host) { h.Credentials.CAErr = "no such file" }, "the sandbox's CA: no such file"},
		{"a foreign key served", func(_ *Expect, r *Report, _ *Host) { r.Foreign[0].Status, r.Foreign[0].Body = 200, "{}" }, "not the broker's refusal"},
		{"the broker not trusted", func(_ *Expect, r *Report, _ *Host) {
			r.Foreign[0].Status, r.Foreign[0].Err = 0, "x509: unknown authority"
		}, "unknown authority"},
		{"nothing tried", func(_ *Expect, r *Report, _ *Host) { r.Foreign = nil }, "no foreign key was tried"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, r, h := good()
			if res := result(Judge(e, r, h), "credentials"); res.Status != Pass {
				t.Fatalf("control: %s %s", res.Status, res.Seen)
			}
			tc.spoil(&e, &r, &h)
			if res := result(Judge(e, r, h), "credentials"); res.Status != Fail || !strings.Contains(res.Seen, tc.seen) {
				t.Errorf("%s %q, want FAIL with %q", res.Status, res.Seen, tc.seen)
			}
		})
	}
}

func result(rs []Result, id string) Result {
	for _, r := range rs {
		if r.ID == id {
			return r
		}
	}
	return Result{}
}

func failing(rs []Result) []string {
	var out []string
	for _, r := range rs {
		if r.Status == Fail {
			out = append(out, r.ID)
		}
	}
	return out
}

func TestAHealthySandboxPassesEveryCheck(t *testing.T) {
	e, r, h := good()
	rs := Judge(e, r, h)
	for _, res := range rs {
		if res.Status != Pass {
			t.Errorf("%s: %s (expected %s, seen %s)", res.ID, res.Status, res.Expected, res.Seen)
		}
	}
	if len(rs) != len(Checks()) {
		t.Errorf("%d results for %d checks", len(rs), len(Checks()))
	}
}

// A destination that refuses the other name itself proves nothing by
// refusing it through the gate: a warning, with the reason.
func TestANameGateRefusalTheDestinationWouldMakeAnywayIsAWarning(t *testing.T) {
	e, r, h := good()
	h.OtherServed["198.51.100.10:443"] = "remote error: tls: unrecognized name"
	for _, res := range Judge(e, r, h) {
		if res.ID == "name-gate" && (res.Status != Warn || !strings.Contains(res.Seen, "proves nothing")) {
			t.Fatalf("name-gate: %s, %s", res.Status, res.Seen)
		}
	}
}

// An entry that opted out of the name gate is said to be checked by
// address only, beside the gate's own proof for the others.
func TestAnEntryOutsideTheNameGateIsNamedAsCheckedByAddress(t *testing.T) {
	e, r, h := good()
	e.ByAddress = []string{"legacy.example.com:443"}
	for _, res := range Judge(e, r, h) {
		if res.ID == "name-gate" && (res.Status != Pass || !strings.Contains(res.Seen, "by address only, as the profile says (tls: false): legacy.example.com:443")) {
			t.Fatalf("name-gate: %s, %s", res.Status, res.Seen)
		}
	}
}

// A writable host directory is the profile's own choice: reported as
// uncapped, with the fix, not failed.
func TestAnUncappedWritableMountIsAWarningThatNamesTheFix(t *testing.T) {
	e, r, h := good()
	e.Volumes = nil
	r.Disks["/workspace"] = Disk{TotalBytes: 250 << 30, FreeBytes: 80 << 30}
	for _, res := range Judge(e, r, h) {
		if res.ID != "disk" {
			continue
		}
		if res.Status != Warn || !strings.Contains(res.Seen, "volumes: [{name: workspace, target: /workspace, size: 2G}]") || !strings.Contains(res.Seen, "81920.0 MiB free") {
			t.Fatalf("disk: %s, seen %q", res.Status, res.Seen)
		}
		return
	}
	t.Fatal("no disk check")
}

func TestEachWeakeningFailsItsOwnCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		weaken func(e *Expect, r *Report, h *Host)
		fails  []string
	}{
		{"root user", func(_ *Expect, r *Report, _ *Host) { r.Identity.UID = 0 }, []string{"user"}},
		{"extra group", func(_ *Expect, r *Report, _ *Host) { r.Identity.Groups = []int{1000, 27} }, []string{"user"}},
		{"a capability", func(_ *Expect, r *Report, _ *Host) { r.Identity.CapEff = "0000000000000001" }, []string{"capabilities"}},
		{"a bounding capability", func(_ *Expect, r *Report, _ *Host) { r.Identity.CapBnd = "0000000000002000" }, []string{"capabilities"}},
		{"no_new_privs off", func(_ *Expect, r *Report, _ *Host) { r.Identity.NoNewPrivs = "0" }, []string{"no-new-privs"}},
		{"seccomp off", func(_ *Expect, r *Report, _ *Host) {
			r.Identity.Seccomp = "0"
			r.Syscalls = []Syscall{{Name: "ptrace", Errno: "ESRCH"}, {Name: "clone3", Errno: "EINVAL"}}
		}, []string{"seccomp", "syscalls"}},
		{"writable rootfs", func(_ *Expect, r *Report, _ *Host) {
			r.Mounts[0].Options = []string{"rw"}
			r.WriteRoot = "EACCES"
		}, []string{"rootfs"}},
		{"profile asks for a writable rootfs", func(e *Expect, _ *Report, _ *Host) { e.ReadOnlyRoot = false }, []string{"rootfs"}},
		{"another name served at an allowlisted name's address", func(_ *Expect, r *Report, _ *Host) { r.Names[0].Othered = "" }, []string{"name-gate"}},
		{"the allowlisted name refused by the name gate", func(_ *Expect, r *Report, _ *Host) {
			r.Names[0].Named = "read: connection reset by peer"
		}, []string{"name-gate"}},
		{"a volume on the host's filesystem", func(_ *Expect, r *Report, _ *Host) {
			r.Disks["/workspace"] = Disk{TotalBytes: 250 << 30, FreeBytes: 80 << 30}
		}, []string{"disk"}},
		{"a volume's filesystem unread", func(_ *Expect, r *Report, _ *Host) { r.Disks = nil }, []string{"disk"}},
		{"workspace read-only", func(_ *Expect, r *Report, _ *Host) { r.Writes["/workspace"] = "EROFS" }, []string{"workspace"}},
		{"/tmp exec", func(_ *Expect, r *Report, _ *Host) {
			r.Mounts[2].Options = []string{"rw", "nosuid", "nodev"}
			r.Execs["/tmp"] = ""
		}, []string{"tmpfs", "exec-writable"}},
		{"/tmp too big", func(_ *Expect, r *Report, _ *Host) { r.Mounts[2].Super = []string{"size=1048576k"} }, []string{"tmpfs"}},
		{"/dev/shm exec", func(_ *Expect, r *Report, _ *Host) { r.Mounts[4].Options = []string{"rw", "nosuid", "nodev"} }, []string{"run-shm"}},
		{"a binary ran from a memfd", func(_ *Expect, r *Report, _ *Host) { r.MemfdExec = "" }, []string{"memfd-exec"}},
		{"/proc/sys writable", func(_ *Expect, r *Report, _ *Host) {
			for i := range r.Mounts {
				if r.Mounts[i].Target == "/proc/sys" {
					r.Mounts[i].Options = []string{"rw"}
				}
			}
		}, []string{"proc-sys", "masked-paths"}},
		{"kcore visible", func(_ *Expect, r *Report, _ *Host) {
			r.Mounts = slices.DeleteFunc(r.Mounts, func(m Mount) bool { return m.Target == "/proc/kcore" })
		}, []string{"masked-paths"}},
		{"docker socket", func(_ *Expect, r *Report, _ *Host) { r.RuntimeSockets = []string{"/run/docker.sock"} }, []string{"runtime-sockets"}},
		{"host pid namespace", func(_ *Expect, _ *Report, h *Host) { h.Namespaces[1].Sandbox = h.Namespaces[1].Host }, []string{"namespaces"}},
		{"foreign netns", func(_ *Expect, _ *Report, h *Host) { h.Namespaces[0].Sandbox = 9 }, []string{"namespaces"}},
		{"no pids limit", func(_ *Expect, r *Report, _ *Host) { r.Limits.PidsMax = "max" }, []string{"pids"}},
		{"no memory limit", func(_ *Expect, r *Report, _ *Host) { r.Limits.MemoryBytes = "max" }, []string{"memory"}},
		{"no cpu limit", func(_ *Expect, r *Report, _ *Host) { r.Limits.CPUQuota = "max 100000" }, []string{"cpu"}},
		{"secret missing", func(_ *Expect, r *Report, _ *Host) { r.Secrets = nil }, []string{"secrets"}},
		{"secret world-readable", func(_ *Expect, r *Report, _ *Host) { r.Secrets[0].Mode = "0444" }, []string{"secrets"}},
		{"secret in env", func(_ *Expect, _ *Report, h *Host) { h.EnvLeaks = []string{"api-key"} }, []string{"secrets-env"}},
		{"environment unreadable", func(_ *Expect, _ *Report, h *Host) {
			h.LeakSearchErrors = []string{"the task environment: permission denied"}
		}, []string{"secrets-env"}},
		{"raw socket", func(_ *Expect, r *Report, _ *Host) { r.RawSocket = "" }, []string{"raw-sockets"}},
		{"blocked host answers", func(_ *Expect, r *Report, _ *Host) { r.Dials[0].Err = "" }, []string{"egress-blocked"}},
		{"a reset counts as reached", func(_ *Expect, r *Report, _ *Host) { r.Dials[0].Err = "ECONNREFUSED" }, []string{"egress-blocked"}},
		{"allowlisted name unreachable", func(_ *Expect, r *Report, _ *Host) { r.Reach[0].Dials[0].Err = "timeout" }, []string{"allowlist"}},
		{"unexplained set member", func(_ *Expect, _ *Report, h *Host) { h.Unexplained = []string{"198.51.100.7 tcp/80"} }, []string{"egress-set"}},
		{"second layer missing", func(_ *Expect, _ *Report, h *Host) {
			h.SecondLayer.Missing = []string{"iptables -I OUTPUT 1 -m comment --comment clawguard -j CG-OUT"}
		}, []string{"second-layer"}},
		{"second layer unreadable", func(_ *Expect, _ *Report, h *Host) { h.SecondLayer = Layer{Err: "nsenter: no such file"} }, []string{"second-layer"}},
		{"denied name resolves", func(_ *Expect, r *Report, _ *Host) { r.DeniedLookup = Lookup{Addrs: []string{"1.2.3.4"}} }, []string{"dns-denied"}},
		{"outside resolver answers", func(_ *Expect, r *Report, _ *Host) { r.DirectDNS["198.51.100.53:53"] = "" }, []string{"dns-direct"}},
		{"metadata answers", func(_ *Expect, r *Report, _ *Host) { r.Dials[1].Err = "" }, []string{"metadata"}},
		{"private member", func(_ *Expect, _ *Report, h *Host) { h.Forbidden = []string{"10.0.0.5 tcp/80"} }, []string{"private-ranges"}},
		{"ipv6 on", func(_ *Expect, r *Report, _ *Host) { r.IPv6 = IPv6{Disabled: "0", Dial: ""} }, []string{"ipv6"}},
		{"host port answers", func(_ *Expect, r *Report, _ *Host) { r.Dials[2].Err = "ECONNREFUSED" }, []string{"host-ports"}},
		{"other sandbox answers", func(_ *Expect, r *Report, _ *Host) {
			r.Dials = append(r.Dials, DialResult{Dial: Dial{Check: "other-sandboxes", Network: "tcp", Addr: "10.89.0.3:1"}, Err: "ECONNREFUSED"})
		}, []string{"other-sandboxes"}},
		{"published on all addresses", func(_ *Expect, _ *Report, h *Host) { h.Published[0].Listeners = []string{"0.0.0.0"} }, []string{"published"}},
		{"config writable", func(_ *Expect, r *Report, _ *Host) { r.Mounts[6].Options = []string{"rw"} }, []string{"openclaw-config"}},
		{"ask off", func(_ *Expect, r *Report, _ *Host) {
			r.Files["/etc/openclaw/openclaw.json"] = File{Content: strings.Replace(goodConfig, `"ask": "always"`, `"ask": "off"`, 1)}
		}, []string{"openclaw-exec"}},
		{"mode replaces the pair", func(_ *Expect, r *Report, _ *Host) {
			r.Files["/etc/openclaw/openclaw.json"] = File{Content: strings.Replace(goodConfig, `"host": "gateway"`, `"mode": "full"`, 1)}
		}, []string{"openclaw-exec"}},
		{"approvals fall back to running", func(_ *Expect, r *Report, _ *Host) {
			r.Files["/etc/openclaw/exec-approvals.json"] = File{Content: strings.Replace(goodApprovals, `"askFallback": "deny"`, `"askFallback": "full"`, 1)}
		}, []string{"openclaw-exec"}},
		{"an allowlist entry that is not an object", func(_ *Expect, r *Report, _ *Host) {
			r.Files["/etc/openclaw/exec-approvals.json"] = File{Content: strings.Replace(goodApprovals, `{"pattern": "cat"}`, `"cat"`, 1)}
		}, []string{"openclaw-allowlist"}},
		{"unrecorded command", func(_ *Expect, r *Report, _ *Host) {
			r.Files["/etc/openclaw/exec-approvals.json"] = File{Content: strings.Replace(goodApprovals, `{"pattern": "cat"}`, `{"pattern": "curl"}`, 1)}
		}, []string{"openclaw-allowlist"}},
		{"a channel", func(_ *Expect, r *Report, _ *Host) {
			r.Files["/etc/openclaw/openclaw.json"] = File{Content: strings.Replace(goodConfig, `"channels": {}`, `"channels": {"telegram": {"botToken": "x"}}`, 1)}
		}, []string{"openclaw-channels"}},
		{"browser on", func(_ *Expect, r *Report, _ *Host) {
			r.Files["/etc/openclaw/openclaw.json"] = File{Content: strings.Replace(goodConfig, `"enabled": false`, `"enabled": true`, 1)}
		}, []string{"openclaw-browser"}},
		{"skills installable", func(_ *Expect, r *Report, _ *Host) {
			r.Files["/etc/openclaw/openclaw.json"] = File{Content: strings.Replace(goodConfig, `"installPolicy": {"enabled": true}`, `"installPolicy": {"enabled": false}`, 1)}
		}, []string{"openclaw-skills"}},
		{"transcripts off", func(_ *Expect, r *Report, _ *Host) {
			r.Files["/etc/openclaw/openclaw.json"] = File{Content: strings.Replace(goodConfig, `"level": "debug"`, `"level": "warn"`, 1)}
		}, []string{"openclaw-transcripts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, r, h := good()
			tc.weaken(&e, &r, &h)
			if got := failing(Judge(e, r, h)); !slices.Equal(got, tc.fails) {
				t.Errorf("failing checks %v, want %v", got, tc.fails)
			}
		})
	}
}

func TestAnUnreadableConfigFailsEveryOpenClawCheck(t *testing.T) {
	e, r, h := good()
	r.Files["/etc/openclaw/openclaw.json"] = File{Err: "ENOENT"}
	got := failing(Judge(e, r, h))
	if len(got) != 7 || !strings.HasPrefix(got[0], "openclaw-") {
		t.Errorf("failing %v", got)
	}
}

func TestAGrantedCapabilityIsAWarningWhenItIsExactlyWhatTheProfileAsked(t *testing.T) {
	e, r, h := good()
	e.Capabilities = []string{"CAP_NET_BIND_SERVICE"}
	const bit = "0000000000000400"
	id := &r.Identity
	id.CapEff, id.CapPrm, id.CapBnd, id.CapAmb, id.CapInh = bit, bit, bit, bit, bit
	for _, res := range Judge(e, r, h) {
		if res.ID == "capabilities" && res.Status != Warn {
			t.Errorf("capabilities: %s %s", res.Status, res.Seen)
		}
	}
	id.CapAmb = "0000000000002400" // CAP_NET_RAW too
	for _, res := range Judge(e, r, h) {
		if res.ID == "capabilities" && (res.Status != Fail || !strings.Contains(res.Seen, "CAP_NET_RAW")) {
			t.Errorf("capabilities with an extra one: %s %s", res.Status, res.Seen)
		}
	}
}

func TestOpenClawChecksRunOnlyForOpenClaw(t *testing.T) {
	e, r, h := good()
	e.Agent = ""
	for _, res := range Judge(e, r, h) {
		if strings.HasPrefix(res.ID, "openclaw-") {
			t.Errorf("%s ran for a sandbox without an agent", res.ID)
		}
	}
}

func TestADestinationSilentToTheHostTooProvesNothing(t *testing.T) {
	e, r, h := good()
	h.Silent = map[string]string{"198.51.100.7:80": "timeout"}
	for _, res := range Judge(e, r, h) {
		if res.ID == "egress-blocked" && (res.Status != Warn || !strings.Contains(res.Seen, "proves nothing")) {
			t.Errorf("egress-blocked: %s %s", res.Status, res.Seen)
		}
	}
	// One destination the host reaches is enough for a PASS.
	r.Dials = append(r.Dials, DialResult{Dial: Dial{Check: "egress-blocked", Network: "tcp", Addr: "198.51.100.8:80"}, Err: "timeout"})
	for _, res := range Judge(e, r, h) {
		if res.ID == "egress-blocked" && res.Status != Pass {
			t.Errorf("egress-blocked with one proven destination: %s %s", res.Status, res.Seen)
		}
	}
}

func TestNothingToTestAgainstIsAWarningNotAPass(t *testing.T) {
	e, r, h := good()
	r.Dials = slices.DeleteFunc(r.Dials, func(d DialResult) bool { return d.Check == "egress-blocked" })
	r.DirectDNS = nil
	for _, res := range Judge(e, r, h) {
		if (res.ID == "egress-blocked" || res.ID == "dns-direct") && res.Status != Warn {
			t.Errorf("%s: %s, want WARN", res.ID, res.Status)
		}
	}
}

func TestAnEmptyReportFailsInsteadOfPassingOrPanicking(t *testing.T) {
	e, _, _ := good()
	rs := Judge(e, Report{}, Host{})
	for _, res := range rs {
		if res.Status == Pass && !slices.Contains([]string{"workspace", "secrets-env", "runtime-sockets", "exec-writable", "dns-denied",
			"egress-set", "private-ranges", "other-sandboxes", "metadata", "masked-paths"}, res.ID) {
			t.Errorf("%s passes on an empty report: %s", res.ID, res.Seen)
		}
	}
}

// A name whose every answer the gate dropped (a private range) resolves to
// nothing by design: a warning that says how to allow it, not a failure.
// The control: the same empty resolution with no dropped answer fails.
func TestANameWhoseAnswersAreAllGuardedIsAWarning(t *testing.T) {
	e, r, h := good()
	r.Reach = []ReachResult{{Name: "Internal.Example.com.", Err: "no such host"}}
	status := func(h Host) (Status, string) {
		for _, res := range Judge(e, r, h) {
			if res.ID == "allowlist" {
				return res.Status, res.Seen
			}
		}
		return "", ""
	}
	if st, seen := status(h); st != Fail {
		t.Fatalf("control: no dropped answer: %s %s", st, seen)
	}
	h.Guarded = map[string]string{"internal.example.com": "10.0.0.0/8"}
	if st, seen := status(h); st != Warn || !strings.Contains(seen, "cidr:") {
		t.Fatalf("guarded: %s %s", st, seen)
	}
}
