package netrules

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Kernel object names are short (interface names 15 bytes, iptables chains
// 28, ip set names 31), so each sandbox gets an 8-hex-digit id derived from
// its name; the full name goes in comments where the object allows one.

// ShortID is the id every kernel object of a sandbox is named after.
func ShortID(sandbox string) string {
	sum := sha256.Sum256([]byte(sandbox))
	return hex.EncodeToString(sum[:4])
}

// Prefixes that mark our objects, so cleanup can find them by name.
const (
	chainPrefix = "CG-"
	setPrefix   = "cg-"
	vethPrefix  = "cg"
)

// ChainName is the sandbox's filter chain.
func ChainName(sandbox string) string { return chainPrefix + ShortID(sandbox) }

// SetName is the sandbox's IPv4 allowlist set: addresses from its gate.
func SetName(sandbox string) string { return setPrefix + ShortID(sandbox) + setSuffix }

// NetSetName is the sandbox's set of allowed ranges: its cidr entries, one
// member each whatever their size.
func NetSetName(sandbox string) string { return setPrefix + ShortID(sandbox) + netSetSuffix }

// TLSSetName is the set, in the sandbox's own namespace only, of the
// members of its set that are behind the name gate: addresses and ports a
// name asked to be checked by name resolved to.
func TLSSetName(sandbox string) string { return setPrefix + ShortID(sandbox) + tlsSetSuffix }

const (
	setSuffix    = "-v4"
	netSetSuffix = "-net4"
	tlsSetSuffix = "-tls4"
)

// VethName is the host side of the sandbox's veth pair.
func VethName(sandbox string) string { return vethPrefix + ShortID(sandbox) }

// comment is the -m comment text that names a rule's sandbox.
func comment(sandbox string) string { return "clawguard sandbox " + sandbox }

// IsOurSet reports whether an ip set name is one of ours.
func IsOurSet(name string) bool {
	_, ok := setID(name)
	return ok
}

// setID is the sandbox id in one of our set names.
func setID(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, setPrefix)
	if !ok {
		return "", false
	}
	for _, suffix := range []string{setSuffix, netSetSuffix, tlsSetSuffix} {
		if id, ok := strings.CutSuffix(rest, suffix); ok {
			return id, true
		}
	}
	return "", false
}
