package netrules

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The second layer. The host's chains are shared with every firewall tool
// of the host: a reload flushes FORWARD and INPUT (or restores a saved
// file over every table), and until the guard has put the hooks back
// (milliseconds, but not zero) nothing of ours filters. So each sandbox's
// own network namespace holds the whole decision again, against a mirror
// of its sets: the host's tools never look there, and the agent, with no
// capability in that namespace, cannot change it. A packet leaves the
// sandbox only if both layers let it, and one comes in only as a reply or
// from the host to a published port.

// Chains of the second layer, in the sandbox's namespace.
const (
	innerOut = "CG-OUT" // filter OUTPUT
	innerIn  = "CG-IN"  // filter INPUT
	// nat OUTPUT: the gateway's port 53 to the DNS gate, TLS ports to the
	// name gate (one chain: a hook must be first in its built-in chain).
	innerDNS = "CG-DNS"
	innerNew = "CG-NEW" // filter: the rate of new flows
)

// The name gate listens in each sandbox's own namespace, on loopback, on a
// port below 1024 (the agent, without capabilities, cannot bind it while
// the daemon restarts). Its sockets carry NameGateMark: its own dials to the
// original destinations are not sent back to it, and the connections it
// accepted are tracked (their replies must be translated back to the
// address the agent asked for), where other loopback traffic is not.
const (
	NameGatePort = 943
	NameGateMark = 0x4347
)

// DNSPacketsPerSecond is how many UDP queries a sandbox may send its DNS
// gate a second, with bursts of twice that: far above what an agent
// resolving names needs (a lookup is a query or two), far below the tens of
// thousands a flooding one writes.
const DNSPacketsPerSecond = 1000

// dnsConnsPerSecond is how many TCP connections to its gate a sandbox may
// open a second (bursts of twice that): resolvers fall back to TCP only
// for answers too long for UDP.
const dnsConnsPerSecond = 50

func innerChains() []chainRef {
	return []chainRef{
		{v4, "filter", innerOut}, {v4, "filter", innerIn}, {v4, "filter", innerNew}, {v4, "nat", innerDNS},
		{v6, "filter", innerOut}, {v6, "filter", innerIn},
	}
}

// innerRules are the second layer. Out: loopback goes on; the gateway's
// DNS port is sent to the gate by the namespace's own NAT, so a host reload
// that takes the host's redirect away sends no query to whatever else
// listens on the host's port 53; queries are rate-limited and the gate's
// flows capped; then established flows and the set's destinations are
// accepted (new flows within the connection cap), the rest logged and
// dropped. In: replies, and the host's forwarders of published ports.
// IPv6 comes and goes by no way at all. Loopback is not tracked, so an
// agent's local traffic fills no connection table.
func innerRules(sb Sandbox) []rule {
	own := []string{"-m", "comment", "--comment", comment(sb.Name)}
	with := func(pre []string, post ...string) []string { return slices.Concat(pre, own, post) }
	in := func(table, chain string, fam family, spec []string) rule {
		return rule{fam: fam, table: table, chain: chain, spec: spec}
	}
	out := func(fam family, spec []string) rule { return in("filter", innerOut, fam, spec) }
	gw, port := sb.Gateway.String()+"/32", strconv.Itoa(sb.DNSPort)
	toGate := func(proto string) []string { return []string{"-d", gw, "-p", proto, "-m", proto, "--dport", port} }
	newFlow := []string{"-m", "conntrack", "--ctstate", "NEW"}
	reject := []string{"-j", "REJECT", "--reject-with", "icmp-port-unreachable"}
	connlimit := func(n int) []string {
		return []string{"-m", "connlimit", "--connlimit-above", strconv.Itoa(n), "--connlimit-mask", "32", "--connlimit-saddr"}
	}
	limit := func(perSec int) []string {
		// The kernel takes bursts of at most 10000.
		return []string{"-m", "limit", "--limit", strconv.Itoa(perSec) + "/sec", "--limit-burst", strconv.Itoa(min(2*perSec, 10000))}
	}
	var rules []rule
	for _, proto := range []string{"udp", "tcp"} {
		rules = append(rules, in("nat", innerDNS, v4, with([]string{"-d", gw, "-p", proto, "-m", proto, "--dport", "53"},
			"-j", "DNAT", "--to-destination", sb.Gateway.String()+":"+port)))
	}
	gate := len(sb.TLSPorts) > 0
	if gate {
		// Only what a name behind the gate resolved to goes there: the
		// rest of the set is checked by address alone, what is in no set
		// is dropped below, and the gate checks the name on top.
		rules = append(rules,
			in("nat", innerDNS, v4, with([]string{"-m", "mark", "--mark", gateMark}, "-j", "RETURN")),
			in("nat", innerDNS, v4, with([]string{"-p", "tcp", "-m", "set", "--match-set", TLSSetName(sb.Name), "dst,dst"},
				"-j", "REDIRECT", "--to-ports", strconv.Itoa(NameGatePort))),
		)
	}
	rules = append(rules, out(v4, with([]string{"-o", "lo"}, "-j", "RETURN")))
	if gate {
		// The gate's own connections, one for each of the agent's that it
		// let through (counted and capped below, as the agent's), to
		// destinations the set allows.
		rules = append(rules, out(v4, with([]string{"-m", "mark", "--mark", gateMark, "-m", "set", "--match-set", SetName(sb.Name), "dst,dst"}, "-j", "ACCEPT")))
	}
	if sb.MaxConns > 0 {
		rules = append(rules, out(v4, with(slices.Concat([]string{"-d", gw}, newFlow, connlimit(sb.MaxConns*dnsFlowsPerConn)), reject...)))
	}
	rules = append(rules,
		// The gate answers every sandbox from one daemon: a flood of
		// queries is cut here, in the flooder's own namespace, before it
		// costs the daemon anything. Ahead of the established rule: a
		// socket's queries are one flow, established after its first
		// answer.
		out(v4, with(slices.Concat(toGate("udp"), limit(DNSPacketsPerSecond)), "-j", "RETURN")),
		out(v4, with(toGate("udp"), "-j", "DROP")),
		out(v4, with(slices.Concat(toGate("tcp"), newFlow, limit(dnsConnsPerSecond)), "-j", "RETURN")),
		out(v4, with(slices.Concat(toGate("tcp"), newFlow), reject...)),
		out(v4, with([]string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, "-j", "ACCEPT")),
	)
	if sb.MaxConns > 0 {
		rules = append(rules, out(v4, with(slices.Concat(newFlow, connlimit(sb.MaxConns)), reject...)))
	}
	if sb.NewConns > 0 {
		// The cap above counts open flows only; one closed stays tracked
		// (TIME_WAIT) for two minutes, here and on the host, so the rate
		// of new ones is what bounds the tables.
		rules = append(rules,
			out(v4, with(newFlow, "-j", innerNew)),
			in("filter", innerNew, v4, with(limit(sb.NewConns), "-j", "RETURN")),
			in("filter", innerNew, v4, with(nil, reject...)),
		)
	}
	if gate {
		// The agent's connections sent to the gate. -o lo above does not
		// see them: OUTPUT matches the route a packet had before nat
		// OUTPUT redirected it.
		rules = append(rules, out(v4, with([]string{"-d", "127.0.0.1/32", "-p", "tcp", "-m", "tcp", "--dport", strconv.Itoa(NameGatePort),
			"-m", "conntrack", "--ctstate", "DNAT"}, "-j", "ACCEPT")))
	}
	rules = append(rules,
		out(v4, with([]string{"-m", "set", "--match-set", SetName(sb.Name), "dst,dst"}, "-j", "ACCEPT")),
		out(v4, with([]string{"-m", "set", "--match-set", NetSetName(sb.Name), "dst,dst"}, "-j", "ACCEPT")),
	)
	if sb.LogDenied {
		rules = append(rules, out(v4, with(limit(50),
			"-j", "NFLOG", "--nflog-prefix", setPrefix+ShortID(sb.Name), "--nflog-group", strconv.Itoa(int(sb.LogGroup)))))
	}
	rules = append(rules,
		out(v4, with(nil, "-j", "DROP")),
		out(v6, with([]string{"-o", "lo"}, "-j", "RETURN")),
		out(v6, with(nil, "-j", "DROP")),
	)
	inRule := func(fam family, spec []string) rule { return in("filter", innerIn, fam, spec) }
	if gate {
		// Straight to the gate, not redirected: the gate would refuse it,
		// but only after taking one of its slots for it.
		rules = append(rules, inRule(v4, with([]string{"-i", "lo", "-p", "tcp", "-m", "tcp", "--dport", strconv.Itoa(NameGatePort),
			"-m", "conntrack", "!", "--ctstate", "DNAT"}, "-j", "DROP")))
	}
	rules = append(rules,
		inRule(v4, with([]string{"-i", "lo"}, "-j", "RETURN")),
		inRule(v4, with([]string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, "-j", "RETURN")),
	)
	for _, p := range sb.Published {
		rules = append(rules, inRule(v4, with([]string{"-s", gw, "-p", "tcp", "-m", "tcp", "--dport", strconv.Itoa(int(p))}, "-j", "RETURN")))
	}
	rules = append(rules,
		inRule(v4, with(nil, "-j", "DROP")),
		inRule(v6, with([]string{"-i", "lo"}, "-j", "RETURN")),
		inRule(v6, with(nil, "-j", "DROP")),
	)
	hook := func(fam family, table, builtin, ours string) rule {
		return rule{fam: fam, table: table, chain: builtin, spec: []string{"-m", "comment", "--comment", "clawguard", "-j", ours}, top: true}
	}
	notrack := func(builtin string, spec ...string) rule {
		return rule{fam: v4, table: "raw", chain: builtin, spec: slices.Concat(spec, []string{"-m", "comment", "--comment", "clawguard", "-j", "CT", "--notrack"}), top: true}
	}
	return append(rules,
		hook(v4, "filter", "OUTPUT", innerOut), hook(v6, "filter", "OUTPUT", innerOut),
		hook(v4, "filter", "INPUT", innerIn), hook(v6, "filter", "INPUT", innerIn),
		hook(v4, "nat", "OUTPUT", innerDNS),
		// The name gate's sockets are the exception (see NameGateMark);
		// loopback packets the agent sends arrive tracked or not as they
		// left, so PREROUTING needs none.
		notrack("OUTPUT", "-o", "lo", "-m", "mark", "!", "--mark", gateMark), notrack("PREROUTING", "-i", "lo"),
	)
}

// gateMark is NameGateMark as iptables writes it back.
var gateMark = "0x" + strconv.FormatUint(NameGateMark, 16)

// legacyInner are rules of earlier versions that the current ones replace:
// ensureInner removes them from sandboxes it adopts.
var legacyInner = []rule{
	{fam: v4, table: "raw", chain: "OUTPUT", spec: []string{"-o", "lo", "-m", "comment", "--comment", "clawguard", "-j", "CT", "--notrack"}},
}

// inner is the sandbox namespace's tables and sets. The caller closes it.
type inner struct {
	t    tables
	sets ipsets
}

func (in inner) Close() { in.sets.nl.Close() }

// openInner reaches into the namespace mounted at path. The netlink handle
// holds the namespace itself, not its path: one swapped under the path
// after the open is not written to.
func openInner(path string) (inner, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return inner{}, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	nl, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return inner{}, fmt.Errorf("netns %s: netlink: %w", path, err)
	}
	return inner{t: tables{r: execRunner{netns: path}}, sets: ipsets{nl: nl}}, nil
}

// ensureInner builds the second layer: the mirror sets first, with the
// static ranges, then the rules that match them.
func (h *Host) ensureInner(sb Sandbox, nsPath string, static []NetEntry) error {
	if h.cfg.NoInnerLayer {
		return nil
	}
	in, err := openInner(nsPath)
	if err != nil {
		return err
	}
	defer in.Close()
	for _, set := range []string{SetName(sb.Name), TLSSetName(sb.Name)} {
		if err := in.sets.ensureSet(set); err != nil {
			return fmt.Errorf("second layer: %w", err)
		}
	}
	if err := in.sets.ensureNetSet(NetSetName(sb.Name)); err != nil {
		return fmt.Errorf("second layer: %w", err)
	}
	if err := in.sets.addNetEntries(NetSetName(sb.Name), static); err != nil {
		return fmt.Errorf("second layer: %w", err)
	}
	// A sandbox started before its namespace had a mirror (adopted after
	// an upgrade) keeps the addresses its gate already admitted.
	have, err := h.sets.listEntries(SetName(sb.Name))
	if err != nil {
		return fmt.Errorf("second layer: seed the mirror: %w", err)
	}
	// Which of them a name behind the gate asked for, the host's set does
	// not say: every member on a port the gate checks is taken to be one,
	// the side that fails closed, until the next answer writes it anew.
	var seed []Entry
	for _, m := range have {
		if m.Seconds > 0 {
			seed = append(seed, Entry{Addr: m.Addr, Proto: protoNumber(m.Proto), Port: m.Port, Timeout: m.Timeout,
				TLS: m.Proto == "tcp" && slices.Contains(sb.TLSPorts, m.Port)})
		}
	}
	if err := in.mirror(sb.Name, seed); err != nil {
		return fmt.Errorf("second layer: seed the mirror: %w", err)
	}
	if h.cfg.NoNameGate {
		sb.TLSPorts = nil
	}
	if _, err := in.t.ensure(innerChains(), innerRules(sb)); err != nil {
		return fmt.Errorf("second layer of %s: %w", sb.Name, err)
	}
	if err := in.t.removeRules(legacyInner); err != nil {
		return fmt.Errorf("second layer of %s: %w", sb.Name, err)
	}
	return nil
}

// removeRules deletes those of rules that are there.
func (t tables) removeRules(rules []rule) error {
	for _, f := range []family{v4, v6} {
		rs, err := t.load(f)
		if err != nil {
			return err
		}
		p := newPlan()
		for _, r := range rules {
			if line := render(r.spec); r.fam == f && slices.Contains(rs[r.table][r.chain], line) {
				p.del[r.table] = append(p.del[r.table], "-D "+r.chain+" "+line)
			}
		}
		if err := t.apply(f, p); err != nil {
			return err
		}
	}
	return nil
}

// InnerMissing lists what of the sandbox's second layer is not as wanted:
// the restore lines that would put it back, and any rule in its chains
// that is not ours. None when it is in place.
func (h *Host) InnerMissing(sb Sandbox) ([]string, error) {
	if !sb.IP.Is4() {
		return nil, fmt.Errorf("second layer of %s: no IPv4 address known for it", sb.Name)
	}
	sb.Gateway = h.Gateway()
	sb.LogGroup = LogGroup(h.cfg.Subnet, sb.IP)
	if h.cfg.NoNameGate {
		sb.TLSPorts = nil
	}
	t := tables{r: execRunner{netns: NetNSPath(sb.Name)}}
	var missing []string
	for _, f := range []family{v4, v6} {
		rs, err := t.load(f)
		if err != nil {
			return nil, fmt.Errorf("second layer of %s: %w", sb.Name, err)
		}
		p := planEnsure(rs, f, innerChains(), innerRules(sb))
		for _, table := range ruleTables() {
			for _, l := range p.add[table] {
				missing = append(missing, f.String()+" -t "+table+" "+l)
			}
		}
		// Our chains are wholly ours: a rule of anyone else's in one (an
		// ACCEPT on top of CG-OUT) decides before ours do.
		for _, c := range innerChains() {
			if c.fam != f {
				continue
			}
			for _, l := range rs[c.table][c.chain] {
				if !ownedBy(l, comment(sb.Name)) {
					missing = append(missing, fmt.Sprintf("%s -t %s: a rule not ours in %s: %s", f, c.table, c.chain, l))
				}
			}
		}
	}
	return missing, nil
}

// allowInner mirrors entries into the sandbox's own set.
func (h *Host) allowInner(sandbox string, entries []Entry) error {
	if h.cfg.NoInnerLayer {
		return nil
	}
	in, err := openInner(NetNSPath(sandbox))
	if err != nil {
		return fmt.Errorf("second layer of %s: %w", sandbox, err)
	}
	defer in.Close()
	if err := in.mirror(sandbox, entries); err != nil {
		return fmt.Errorf("second layer of %s: %w", sandbox, err)
	}
	return nil
}

// mirror writes entries into the namespace's sets: those behind the name
// gate into its set first, so that no address is allowed by the mirror
// before its connections are sent to the gate.
func (in inner) mirror(sandbox string, entries []Entry) error {
	var tls []Entry
	for _, e := range entries {
		if e.TLS {
			if e.TLSTimeout > 0 {
				e.Timeout = e.TLSTimeout
			}
			tls = append(tls, e)
		}
	}
	if err := in.sets.addEntries(TLSSetName(sandbox), tls); err != nil {
		return err
	}
	return in.sets.addEntries(SetName(sandbox), entries)
}

// innerDrops counts the packets the second layer dropped: for their
// destination, DNS queries over the rate, and new flows over theirs.
func innerDrops(sandbox string) (denied, dnsRate, flowRate uint64, _ error) {
	packets, err := execRunner{netns: NetNSPath(sandbox)}.packets(v4, "filter", innerOut, innerNew)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, p := range packets {
		switch {
		case p.chain == innerNew && strings.Contains(p.line, "-j REJECT"):
			flowRate += p.packets
		case strings.Contains(p.line, "-p udp") && strings.HasSuffix(p.line, "-j DROP"):
			dnsRate += p.packets
		case strings.HasSuffix(p.line, "-j DROP"):
			denied += p.packets
		}
	}
	return denied, dnsRate, flowRate, nil
}
