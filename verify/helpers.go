package verify

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

func verdict(ok bool, want, seen string) (Status, string, string) {
	if ok {
		return Pass, want, seen
	}
	return Fail, want, seen
}

func equal(want, seen string, ok bool) (Status, string, string) { return verdict(ok, want, seen) }

// mountAt returns the last mount at target: later lines of mountinfo are
// stacked on top of earlier ones, and the top one is what the agent sees.
func mountAt(ms []Mount, target string) (Mount, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Target == target {
			return ms[i], true
		}
	}
	return Mount{}, false
}

func superOpt(opts []string, key string) string {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return v
		}
	}
	return ""
}

func hasAll(opts []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(opts, w) {
			return false
		}
	}
	return true
}

func errOrOK(err string) string {
	if err == "" {
		return "succeeded"
	}
	return err
}

func errOrMissing(err string, ok bool) string {
	if !ok {
		return "not tried"
	}
	return err
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// limit joins at most n items and says how many more there were.
func limit(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:n], "; ") + fmt.Sprintf("; and %d more", len(items)-n)
}

func dialsFor(r Report, check string) []DialResult {
	var out []DialResult
	for _, d := range r.Dials {
		if d.Check == check {
			out = append(out, d)
		}
	}
	return out
}

func isLoopback(host string) bool {
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.IsLoopback()
}

// capabilityNames are the Linux capabilities by number (capability.h).
var capabilityNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
	"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// capMask is the bit mask of the named capabilities, or the first unknown
// name.
func capMask(names []string) (uint64, string) {
	var m uint64
	for _, n := range names {
		i := slices.Index(capabilityNames, strings.ToUpper(n))
		if i < 0 {
			return 0, n
		}
		m |= 1 << i
	}
	return m, ""
}

// capNames lists the capabilities in a mask, or "none".
func capNames(m uint64) string {
	var out []string
	for i := range 64 {
		if m&(1<<i) == 0 {
			continue
		}
		if i < len(capabilityNames) {
			out = append(out, capabilityNames[i])
		} else {
			out = append(out, fmt.Sprintf("cap%d", i))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}
