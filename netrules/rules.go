package netrules

import (
	"net/netip"
	"strconv"
)

// family selects iptables or ip6tables.
type family int

const (
	v4 family = iota
	v6
)

func (f family) String() string {
	if f == v6 {
		return "ip6tables"
	}
	return "iptables"
}

// chainRef names one chain of ours.
type chainRef struct {
	fam          family
	table, chain string
}

// rule is one rule of ours. top rules are inserted at position 1 (the hooks
// from the built-in chains, which must run before anything else); the rest
// are appended in order.
type rule struct {
	fam          family
	table, chain string
	spec         []string
	top          bool
}

// Base chains: hooked once from the built-in chains, shared by all sandboxes.
const (
	chainForward     = "CG-FORWARD"
	chainForwardSB   = "CG-FORWARD-SANDBOXES"
	chainInput       = "CG-INPUT"
	chainInputSB     = "CG-INPUT-SANDBOXES"
	chainPrerouting  = "CG-PREROUTING"
	chainPostrouting = "CG-POSTROUTING"
)

// NFLOGGroup is the netlink log group every denied packet is copied to.
const NFLOGGroup = 1729

// baseChains and baseRules are the host-wide part of enforcement: default
// deny for everything from the bridge, replies let back in, NAT out.
// Creation order is chains, then rules, then hooks; removal is the reverse.
func baseChains() []chainRef {
	return []chainRef{
		{v4, "filter", chainForward}, {v4, "filter", chainForwardSB},
		{v4, "filter", chainInput}, {v4, "filter", chainInputSB},
		{v4, "nat", chainPrerouting}, {v4, "nat", chainPostrouting},
		{v6, "filter", chainForward}, {v6, "filter", chainInput},
	}
}

func baseRules(bridge string, subnet netip.Prefix) []rule {
	logDrop := func(fam family, chain, dir string) []rule {
		return []rule{
			{fam: fam, table: "filter", chain: chain, spec: []string{dir, bridge, "-j", "NFLOG", "--nflog-group", strconv.Itoa(NFLOGGroup), "--nflog-prefix", "cg-base"}},
			{fam: fam, table: "filter", chain: chain, spec: []string{dir, bridge, "-j", "DROP"}},
		}
	}
	rules := []rule{
		// Replies to connections a sandbox was allowed to open.
		{fam: v4, table: "filter", chain: chainForward, spec: []string{"-o", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"}},
		// Each sandbox's traffic goes to its own chain, which accepts or drops.
		{fam: v4, table: "filter", chain: chainForward, spec: []string{"-i", bridge, "-j", chainForwardSB}},
	}
	// Whatever no sandbox chain took (spoofed sources, unknown sandboxes).
	rules = append(rules, logDrop(v4, chainForward, "-i")...)
	rules = append(rules,
		// Nothing new enters a sandbox: no inbound connections, no sandbox-to-sandbox.
		rule{fam: v4, table: "filter", chain: chainForward, spec: []string{"-o", bridge, "-j", "DROP"}},
		// Replies to connections the host opened into a sandbox (a sandbox
		// cannot create that state by itself).
		rule{fam: v4, table: "filter", chain: chainInput, spec: []string{"-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"}},
		rule{fam: v4, table: "filter", chain: chainInput, spec: []string{"-i", bridge, "-j", chainInputSB}},
	)
	// The host itself: only each sandbox's DNS port on the gateway is open.
	rules = append(rules, logDrop(v4, chainInput, "-i")...)
	rules = append(rules,
		rule{fam: v4, table: "nat", chain: chainPostrouting, spec: []string{"-s", subnet.String(), "!", "-o", bridge, "-j", "MASQUERADE"}},
		// IPv6 is never allowed, in either direction.
		rule{fam: v6, table: "filter", chain: chainForward, spec: []string{"-i", bridge, "-j", "DROP"}},
		rule{fam: v6, table: "filter", chain: chainForward, spec: []string{"-o", bridge, "-j", "DROP"}},
		rule{fam: v6, table: "filter", chain: chainInput, spec: []string{"-i", bridge, "-j", "DROP"}},
	)
	return rules
}

// hookRules jump from the built-in chains into ours, at the top.
func hookRules() []rule {
	hook := func(fam family, table, builtin, ours string) rule {
		return rule{fam: fam, table: table, chain: builtin, spec: []string{"-m", "comment", "--comment", "clawguard", "-j", ours}, top: true}
	}
	return []rule{
		hook(v4, "filter", "FORWARD", chainForward),
		hook(v4, "filter", "INPUT", chainInput),
		hook(v4, "nat", "PREROUTING", chainPrerouting),
		hook(v4, "nat", "POSTROUTING", chainPostrouting),
		hook(v6, "filter", "FORWARD", chainForward),
		hook(v6, "filter", "INPUT", chainInput),
	}
}

// Sandbox is what the rules of one sandbox are built from.
type Sandbox struct {
	Name      string
	IP        netip.Addr
	Gateway   netip.Addr
	DNSPort   int    // the supervisor's DNS proxy port on the gateway
	LogDenied bool   // NFLOG before drop
	LogGroup  uint16 // the sandbox's own NFLOG group (one reader per group)
}

// LogGroup is the NFLOG group of the sandbox at addr: one per address, so
// each supervisor can read its own sandbox's drops. Base drops go to
// NFLOGGroup.
func LogGroup(subnet netip.Prefix, addr netip.Addr) uint16 {
	offset := addrOffset(subnet, addr)
	return uint16(2000 + offset%60000)
}

func addrOffset(subnet netip.Prefix, addr netip.Addr) int {
	a, b := subnet.Masked().Addr().As4(), addr.As4()
	n := func(x [4]byte) int { return int(x[0])<<24 | int(x[1])<<16 | int(x[2])<<8 | int(x[3]) }
	return n(b) - n(a)
}

func sandboxChains(sb Sandbox) []chainRef {
	return []chainRef{{v4, "filter", ChainName(sb.Name)}}
}

// sandboxRules are the per-sandbox chain and the rules that lead into it. A
// packet reaches the chain only if it comes from the sandbox's own veth with
// the sandbox's own address (anti-spoofing); the chain accepts established
// flows and destinations in the sandbox's set, and drops the rest. Its DNS
// to the gateway is redirected to its supervisor's proxy port.
func sandboxRules(bridge string, sb Sandbox) []rule {
	chain, set, veth, cmt := ChainName(sb.Name), SetName(sb.Name), VethName(sb.Name), comment(sb.Name)
	from := []string{"-s", sb.IP.String(), "-m", "physdev", "--physdev-in", veth}
	tagged := func(spec ...string) []string {
		return append(append([]string{}, spec...), "-m", "comment", "--comment", cmt)
	}
	port := strconv.Itoa(sb.DNSPort)
	gw := sb.Gateway.String()
	rules := []rule{
		{fam: v4, table: "filter", chain: chain, spec: tagged("-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")},
		{fam: v4, table: "filter", chain: chain, spec: tagged("-m", "set", "--match-set", set, "dst,dst", "-j", "ACCEPT")},
	}
	if sb.LogDenied {
		// Rate-limited: a flood of drops must not flood the log.
		rules = append(rules, rule{fam: v4, table: "filter", chain: chain, spec: tagged("-m", "limit", "--limit", "50/second", "--limit-burst", "100",
			"-j", "NFLOG", "--nflog-group", strconv.Itoa(int(sb.LogGroup)), "--nflog-prefix", setPrefix+ShortID(sb.Name))})
	}
	rules = append(rules,
		rule{fam: v4, table: "filter", chain: chain, spec: tagged("-j", "DROP")},
		rule{fam: v4, table: "filter", chain: chainForwardSB, spec: tagged(append(from, "-j", chain)...)},
	)
	for _, proto := range []string{"udp", "tcp"} {
		rules = append(rules,
			rule{fam: v4, table: "nat", chain: chainPrerouting, spec: tagged(append([]string{"-i", bridge}, append(from, "-d", gw, "-p", proto, "--dport", "53", "-j", "DNAT", "--to-destination", gw+":"+port)...)...)},
			rule{fam: v4, table: "filter", chain: chainInputSB, spec: tagged(append(from, "-d", gw, "-p", proto, "--dport", port, "-j", "ACCEPT")...)},
		)
	}
	return rules
}
