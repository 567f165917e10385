package netrules

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The second layer. The host's chains are shared with every firewall tool
// of the host: a reload flushes FORWARD and INPUT, and until the guard has
// put the hooks back (milliseconds, but not zero) nothing of ours filters.
// So each sandbox's own network namespace holds the same decision again, in
// its OUTPUT chain, against a mirror of its sets: the host's tools never
// look there, and the agent, with no capability in that namespace, cannot
// change it. A packet leaves the sandbox only if both layers let it.

// innerChain is the chain of the second layer, in the sandbox's namespace.
const innerChain = "CG-OUT"

// DNSPacketsPerSecond is how many UDP queries a sandbox may send its DNS
// gate a second, with bursts of twice that: far above what an agent
// resolving names needs (a lookup is a query or two), far below the tens of
// thousands a flooding one writes.
const DNSPacketsPerSecond = 1000

func innerChains() []chainRef {
	return []chainRef{{v4, "filter", innerChain}, {v6, "filter", innerChain}}
}

// innerRules mirror the sandbox chain from inside: loopback and the DNS
// gate go on to OUTPUT (they are the host's concern: its INPUT rules and
// the gate's limits), established flows and the set's destinations are
// accepted, the rest logged and dropped. IPv6 leaves by no way at all.
// The connection cap stays outside, where the host's table is.
func innerRules(sb Sandbox) []rule {
	own := []string{"-m", "comment", "--comment", comment(sb.Name)}
	with := func(pre []string, post ...string) []string { return slices.Concat(pre, own, post) }
	r := func(fam family, spec []string) rule {
		return rule{fam: fam, table: "filter", chain: innerChain, spec: spec}
	}
	gw := sb.Gateway.String() + "/32"
	udpDNS := []string{"-d", gw, "-p", "udp", "-m", "udp", "--dport", "53"}
	rules := []rule{
		r(v4, with([]string{"-o", "lo"}, "-j", "RETURN")),
		// The gate answers every sandbox from one daemon: a flood of
		// queries is cut here, in the flooder's own namespace, before it
		// costs the daemon anything. Ahead of the established rule: a
		// socket's queries are one flow, established after its first
		// answer.
		r(v4, with(slices.Concat(udpDNS, []string{"-m", "limit", "--limit", strconv.Itoa(DNSPacketsPerSecond) + "/sec", "--limit-burst", strconv.Itoa(2 * DNSPacketsPerSecond)}), "-j", "RETURN")),
		r(v4, with(udpDNS, "-j", "DROP")),
		r(v4, with([]string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, "-j", "ACCEPT")),
		r(v4, with([]string{"-d", gw, "-p", "tcp", "-m", "tcp", "--dport", "53"}, "-j", "RETURN")),
	}
	rules = append(rules,
		r(v4, with([]string{"-m", "set", "--match-set", SetName(sb.Name), "dst,dst"}, "-j", "ACCEPT")),
		r(v4, with([]string{"-m", "set", "--match-set", NetSetName(sb.Name), "dst,dst"}, "-j", "ACCEPT")),
	)
	if sb.LogDenied {
		rules = append(rules, r(v4, with([]string{"-m", "limit", "--limit", "50/sec", "--limit-burst", "100"},
			"-j", "NFLOG", "--nflog-prefix", setPrefix+ShortID(sb.Name), "--nflog-group", strconv.Itoa(int(sb.LogGroup)))))
	}
	hook := func(fam family) rule {
		return rule{fam: fam, table: "filter", chain: "OUTPUT", spec: []string{"-m", "comment", "--comment", "clawguard", "-j", innerChain}, top: true}
	}
	return append(rules,
		r(v4, with(nil, "-j", "DROP")),
		r(v6, with([]string{"-o", "lo"}, "-j", "RETURN")),
		r(v6, with(nil, "-j", "DROP")),
		hook(v4), hook(v6),
	)
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
	if err := in.sets.ensureSet(SetName(sb.Name)); err != nil {
		return fmt.Errorf("second layer: %w", err)
	}
	if err := in.sets.ensureNetSet(NetSetName(sb.Name)); err != nil {
		return fmt.Errorf("second layer: %w", err)
	}
	if err := in.sets.addNetEntries(NetSetName(sb.Name), static); err != nil {
		return fmt.Errorf("second layer: %w", err)
	}
	if _, err := in.t.ensure(innerChains(), innerRules(sb)); err != nil {
		return fmt.Errorf("second layer of %s: %w", sb.Name, err)
	}
	return nil
}

// InnerMissing lists what of the sandbox's second layer is not as wanted,
// as the restore lines that would put it back: none when it is in place.
func (h *Host) InnerMissing(sb Sandbox) ([]string, error) {
	sb.Gateway = h.Gateway()
	sb.LogGroup = LogGroup(h.cfg.Subnet, sb.IP)
	t := tables{r: execRunner{netns: NetNSPath(sb.Name)}}
	var missing []string
	for _, f := range []family{v4, v6} {
		rs, err := t.load(f)
		if err != nil {
			return nil, fmt.Errorf("second layer of %s: %w", sb.Name, err)
		}
		p := planEnsure(rs, f, innerChains(), innerRules(sb))
		for _, l := range p.add["filter"] {
			missing = append(missing, f.String()+" "+l)
		}
	}
	return missing, nil
}

// allowInner mirrors entries into the sandbox's own set. A namespace that
// is gone (the sandbox is being detached) is not an error: nothing is left
// in it to let through.
func (h *Host) allowInner(sandbox string, entries []Entry) error {
	if h.cfg.NoInnerLayer {
		return nil
	}
	in, err := openInner(NetNSPath(sandbox))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	return in.sets.addEntries(SetName(sandbox), entries)
}

// innerDrops counts the packets the second layer dropped: for their
// destination, and DNS queries over the rate.
func innerDrops(sandbox string) (denied, dnsRate uint64, _ error) {
	packets, err := execRunner{netns: NetNSPath(sandbox)}.packets(v4, "filter", innerChain)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range packets {
		switch {
		case strings.Contains(p.line, "--dport 53 ") && strings.HasSuffix(p.line, "-j DROP"):
			dnsRate += p.packets
		case strings.HasSuffix(p.line, "-j DROP"):
			denied += p.packets
		}
	}
	return denied, dnsRate, nil
}
