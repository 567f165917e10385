package netrules

import (
	"net/netip"
	"slices"
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
	// Specs are written in the form iptables-save prints them (flag order,
	// /32 masks, "50/sec"), so an installed rule compares equal as text.
	own := []string{"-m", "comment", "--comment", bridgeOwner(bridge)}
	r := func(fam family, table, chain string, spec ...string) rule {
		return rule{fam: fam, table: table, chain: chain, spec: spec}
	}
	with := func(pre []string, post ...string) []string { return slices.Concat(pre, own, post) }
	in, out := []string{"-i", bridge}, []string{"-o", bridge}
	nflog := []string{"-j", "NFLOG", "--nflog-prefix", "cg-base", "--nflog-group", strconv.Itoa(NFLOGGroup)}
	return []rule{
		// Replies to connections a sandbox was allowed to open.
		r(v4, "filter", chainForward, with(append(out, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"), "-j", "ACCEPT")...),
		// Each sandbox's traffic goes to its own chain, which accepts or drops.
		r(v4, "filter", chainForward, with(in, "-j", chainForwardSB)...),
		// Whatever no sandbox chain took (spoofed sources, unknown sandboxes).
		r(v4, "filter", chainForward, with(in, nflog...)...),
		r(v4, "filter", chainForward, with(in, "-j", "DROP")...),
		// Nothing new enters a sandbox: no inbound connections, no sandbox-to-sandbox.
		r(v4, "filter", chainForward, with(out, "-j", "DROP")...),
		// Replies to connections the host opened into a sandbox (a sandbox
		// cannot create that state by itself).
		r(v4, "filter", chainInput, with(append(in, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"), "-j", "ACCEPT")...),
		// The host itself: only each sandbox's DNS port on the gateway is open.
		r(v4, "filter", chainInput, with(in, "-j", chainInputSB)...),
		r(v4, "filter", chainInput, with(in, nflog...)...),
		r(v4, "filter", chainInput, with(in, "-j", "DROP")...),
		r(v4, "nat", chainPostrouting, with([]string{"-s", subnet.String(), "!", "-o", bridge}, "-j", "MASQUERADE")...),
		// IPv6 is never allowed, in either direction.
		r(v6, "filter", chainForward, with(in, "-j", "DROP")...),
		r(v6, "filter", chainForward, with(out, "-j", "DROP")...),
		r(v6, "filter", chainInput, with(in, "-j", "DROP")...),
	}
}

// bridgeOwner is the comment on a bridge's base rules.
func bridgeOwner(bridge string) string { return "clawguard bridge " + bridge }

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

// dnsFlowsPerConn is how many flows to the DNS gate a sandbox may have
// tracked per connection of its cap.
const dnsFlowsPerConn = 8

// Sandbox is what the rules of one sandbox are built from.
type Sandbox struct {
	Name      string
	IP        netip.Addr
	Gateway   netip.Addr
	DNSPort   int    // the supervisor's DNS proxy port on the gateway
	LogDenied bool   // NFLOG before drop
	LogGroup  uint16 // the sandbox's own NFLOG group (one reader per group)
	MaxConns  int    // new flows are refused while this many are tracked (0: no cap)
	NewConns  int    // new flows a second, bursts of twice that (0: no cap)
	// Published are the sandbox's TCP ports the host forwards to: the
	// only new connections its second layer lets in.
	Published []uint16
	// TLSPorts are the TCP ports on which the sandbox's connections to
	// its allowlisted destinations go to the name gate instead.
	TLSPorts []uint16
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
	chain, set, veth := ChainName(sb.Name), SetName(sb.Name), VethName(sb.Name)
	own := []string{"-m", "comment", "--comment", comment(sb.Name)}
	with := func(pre []string, post ...string) []string { return slices.Concat(pre, own, post) }
	src, gw := sb.IP.String()+"/32", sb.Gateway.String()
	physdev := []string{"-m", "physdev", "--physdev-in", veth}
	port := strconv.Itoa(sb.DNSPort)
	r := func(table, chain string, spec []string) rule {
		return rule{fam: v4, table: table, chain: chain, spec: spec}
	}
	rules := []rule{
		r("filter", chain, with([]string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, "-j", "ACCEPT")),
	}
	if sb.MaxConns > 0 {
		// At the cap a new flow is refused at once (an ICMP error, so the
		// agent's connect fails instead of hanging), and only this
		// sandbox's: the host's table keeps room for everyone else.
		rules = append(rules, r("filter", chain, with([]string{"-m", "conntrack", "--ctstate", "NEW", "-m", "connlimit",
			"--connlimit-above", strconv.Itoa(sb.MaxConns), "--connlimit-mask", "32", "--connlimit-saddr"},
			"-j", "REJECT", "--reject-with", "icmp-port-unreachable")))
	}
	rules = append(rules,
		r("filter", chain, with([]string{"-m", "set", "--match-set", set, "dst,dst"}, "-j", "ACCEPT")),
		r("filter", chain, with([]string{"-m", "set", "--match-set", NetSetName(sb.Name), "dst,dst"}, "-j", "ACCEPT")),
	)
	if sb.LogDenied {
		// Rate-limited: a flood of drops must not flood the log.
		rules = append(rules, r("filter", chain, with([]string{"-m", "limit", "--limit", "50/sec", "--limit-burst", "100"},
			"-j", "NFLOG", "--nflog-prefix", setPrefix+ShortID(sb.Name), "--nflog-group", strconv.Itoa(int(sb.LogGroup)))))
	}
	rules = append(rules,
		r("filter", chain, with(nil, "-j", "DROP")),
		r("filter", chainForwardSB, with(slices.Concat([]string{"-s", src}, physdev), "-j", chain)),
	)
	if sb.MaxConns > 0 {
		// A cap on the way to the DNS gate too: each query from a fresh
		// source port is a flow the host tracks for 30 s, and the gate's
		// TCP connections are descriptors of the daemon that serves every
		// sandbox's gate. It is dnsFlowsPerConn times the connection cap:
		// resolvers open a flow per lookup, and an agent that resolves
		// 20 names a second already holds 600 such flows.
		rules = append(rules, r("filter", chainInputSB, with(slices.Concat([]string{"-s", src}, physdev, []string{"-m", "conntrack", "--ctstate", "NEW",
			"-m", "connlimit", "--connlimit-above", strconv.Itoa(sb.MaxConns * dnsFlowsPerConn), "--connlimit-mask", "32", "--connlimit-saddr"}),
			"-j", "REJECT", "--reject-with", "icmp-port-unreachable")))
	}
	for _, proto := range []string{"udp", "tcp"} {
		rules = append(rules,
			r("nat", chainPrerouting, with(slices.Concat([]string{"-s", src, "-d", gw + "/32", "-i", bridge, "-p", proto}, physdev, []string{"-m", proto, "--dport", "53"}),
				"-j", "DNAT", "--to-destination", gw+":"+port)),
			r("filter", chainInputSB, with(slices.Concat([]string{"-s", src, "-d", gw + "/32", "-p", proto}, physdev, []string{"-m", proto, "--dport", port}), "-j", "ACCEPT")),
		)
	}
	return rules
}
