package netrules

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Config is the host-wide network of clawguard.
type Config struct {
	Bridge   string       // clawguard0
	Subnet   netip.Prefix // 10.89.0.0/24
	StateDir string       // where the address leases live
	// KeepFlows leaves a sandbox's connection-tracking entries behind at
	// detach and attach: only the end-to-end suite's control case sets
	// it (weaken builds).
	KeepFlows bool
	// NoInnerLayer leaves out the rules and sets in each sandbox's own
	// namespace: only the end-to-end suite's control case sets it.
	NoInnerLayer bool
	// NoNameGate sends nothing to the name gate: only test builds set it,
	// to prove verify's name-gate check fails without it.
	NoNameGate bool
}

// Host installs and removes the kernel state of enforcement: the bridge and
// base chains shared by all sandboxes, and each sandbox's namespace, veth,
// address, set, chain and rules.
type Host struct {
	cfg  Config
	t    tables
	sets ipsets
	ipam ipam
}

// NewHost checks the configuration and prepares iptables runners.
func NewHost(cfg Config) (*Host, error) {
	if !cfg.Subnet.Addr().Is4() || cfg.Subnet.Bits() > 29 || cfg.Subnet.Bits() < 8 {
		return nil, fmt.Errorf("subnet %s: need an IPv4 prefix from /8 to /29", cfg.Subnet)
	}
	if cfg.Bridge == "" || len(cfg.Bridge) > 15 {
		return nil, fmt.Errorf("bridge name %q: need 1-15 characters", cfg.Bridge)
	}
	cfg.Subnet = cfg.Subnet.Masked()
	return &Host{cfg: cfg, t: tables{r: execRunner{}}, sets: hostSets(), ipam: ipam{path: filepath.Join(cfg.StateDir, "network", "leases.json"), subnet: cfg.Subnet}}, nil
}

// Gateway is the bridge's address: the sandboxes' router and DNS server.
func (h *Host) Gateway() netip.Addr { return Gateway(h.cfg.Subnet) }

// Subnet is the sandboxes' subnet.
func (h *Host) Subnet() netip.Prefix { return h.cfg.Subnet }

// Bridge is the bridge's name.
func (h *Host) Bridge() string { return h.cfg.Bridge }

// lock serialises changes to host-wide state between clawguard processes:
// one run must not remove the base chains while another attaches.
func (h *Host) lock() (func(), error) {
	dir := filepath.Join(h.cfg.StateDir, "network")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "host.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flockWithin(f, hostLockWait); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// ensureBase makes the host ready: bridged traffic through iptables, IPv4
// forwarding, the bridge, and the base chains with their default-deny rules
// before the hooks that send traffic into them.
func (h *Host) ensureBase() error {
	for path, v := range map[string]string{
		"/proc/sys/net/bridge/bridge-nf-call-iptables":  "1",
		"/proc/sys/net/bridge/bridge-nf-call-ip6tables": "1",
		"/proc/sys/net/ipv4/ip_forward":                 "1",
	} {
		if err := sysctl(path, v); err != nil {
			return err
		}
	}
	if err := ensureBridge(h.cfg.Bridge, netip.PrefixFrom(h.Gateway(), h.cfg.Subnet.Bits())); err != nil {
		return err
	}
	// A packet from a sandbox to the gateway with a loose source route
	// would be sent on by the host to wherever the route says, past the
	// sandbox's rules, which judged it by its first destination: the
	// kernel follows source routes only where every level allows it.
	if err := sysctl("/proc/sys/net/ipv4/conf/"+h.cfg.Bridge+"/accept_source_route", "0"); err != nil {
		return err
	}
	_, err := h.t.ensure(baseChains(), append(baseRules(h.cfg.Bridge, h.cfg.Subnet), hookRules()...))
	return err
}

// removeBase undoes ensureBase for this bridge. The base chains are shared
// by name with any other bridge clawguard manages on this host, so they and
// their hooks go only once no rule is left in them.
func (h *Host) removeBase() error {
	if err := h.t.removeOwner(bridgeOwner(h.cfg.Bridge), baseChains(), nil); err != nil {
		return err
	}
	if err := deleteBridge(h.cfg.Bridge); err != nil {
		return err
	}
	for _, f := range []family{v4, v6} {
		rs, err := h.t.load(f)
		if err != nil {
			return err
		}
		for _, c := range baseChains() {
			if c.fam == f && len(rs[c.table][c.chain]) > 0 {
				return nil // another bridge still uses the base chains
			}
		}
	}
	var hooked []chainRef
	for _, r := range hookRules() {
		hooked = append(hooked, chainRef{r.fam, r.table, r.chain})
	}
	return h.t.removeOwner("clawguard", hooked, baseChains())
}

// Attachment is a sandbox's place on the network.
type Attachment struct {
	IP        netip.Addr
	Gateway   netip.Addr
	NetNSPath string
	LogGroup  uint16 // where the sandbox's dropped packets are logged
}

// Attach gives a sandbox its network: an address, a namespace joined to the
// bridge, an empty allowlist set, and its chain and rules, all in force when
// Attach returns. Static entries (cidr allowlist entries) are added at once.
// It is idempotent; on error, Detach removes whatever was made.
func (h *Host) Attach(sb Sandbox, static []NetEntry) (Attachment, error) {
	unlock, err := h.lock()
	if err != nil {
		return Attachment{}, fmt.Errorf("network lock: %w", err)
	}
	defer unlock()
	if err := h.ensureBase(); err != nil {
		return Attachment{}, err
	}
	ip, fresh, err := h.ipam.allocate(sb.Name)
	if err != nil {
		return Attachment{}, err
	}
	// A sandbox that went without a detach (a crash) leaves its flows;
	// they must not become this one's. An address this sandbox already
	// holds (adoption, a re-attach) keeps its own flows.
	if fresh && !h.cfg.KeepFlows {
		if _, err := forgetFlows(ip); err != nil {
			return Attachment{}, err
		}
	}
	sb.IP, sb.Gateway, sb.LogGroup = ip, h.Gateway(), LogGroup(h.cfg.Subnet, ip)
	nsPath, err := EnsureNetNS(sb.Name)
	if err != nil {
		return Attachment{}, err
	}
	if err := ensureVeth(sb.Name, h.cfg.Bridge, nsPath, netip.PrefixFrom(ip, h.cfg.Subnet.Bits()), sb.Gateway); err != nil {
		return Attachment{}, err
	}
	if err := h.sets.ensureSet(SetName(sb.Name)); err != nil {
		return Attachment{}, err
	}
	if err := h.sets.ensureNetSet(NetSetName(sb.Name)); err != nil {
		return Attachment{}, err
	}
	if err := h.sets.addNetEntries(NetSetName(sb.Name), static); err != nil {
		return Attachment{}, err
	}
	if err := h.ensureInner(sb, nsPath, static); err != nil {
		return Attachment{}, err
	}
	// One transaction per table: a re-attach (another DNS port after a
	// restart) rewrites the sandbox's rules in place, never duplicates them.
	if _, err := h.t.ensure(sandboxChains(sb), sandboxRules(h.cfg.Bridge, sb)); err != nil {
		return Attachment{}, err
	}
	return Attachment{IP: ip, Gateway: sb.Gateway, NetNSPath: nsPath, LogGroup: sb.LogGroup}, nil
}

// Detach removes everything Attach made for the sandbox, in reverse, and the
// base chains and bridge when no sandbox is left. Missing pieces are skipped.
func (h *Host) Detach(sandbox string) error {
	unlock, err := h.lock()
	if err != nil {
		return fmt.Errorf("network lock: %w", err)
	}
	defer unlock()
	var errs []error
	if err := h.t.removeOwner(comment(sandbox), sandboxRuleChains, sandboxChains(Sandbox{Name: sandbox})); err != nil {
		errs = append(errs, err)
	}
	for _, set := range []string{SetName(sandbox), NetSetName(sandbox)} {
		if err := h.sets.destroySet(set); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteVeth(sandbox); err != nil {
		errs = append(errs, err)
	}
	if err := DeleteNetNS(sandbox); err != nil {
		errs = append(errs, err)
	}
	// Its rules are gone, so no new flow of its address starts; the old
	// ones go before the address can be another sandbox's.
	if leases, err := h.ipam.list(); err == nil && !h.cfg.KeepFlows {
		if ip, ok := leases[sandbox]; ok {
			if _, err := forgetFlows(ip); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		if err := h.ipam.release(sandbox); err != nil {
			errs = append(errs, err)
		}
	}
	if leases, err := h.ipam.list(); err == nil && len(leases) == 0 && len(errs) == 0 {
		if err := h.removeBase(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reassert puts back what a host tool took away: a firewall reload that
// flushes FORWARD and INPUT (ufw, firewalld, netfilter-persistent) removes
// the hooks into our chains, and a rule inserted above them (a VPN's
// "-o tun0 -j ACCEPT") decides before they do. It returns the rules it had
// to put back; none means nothing had changed.
//
// It looks first without the host lock (one read per family): on a quiet
// host, which is nearly every time, the lock stays free for starts and
// stops. To repair, it takes the lock and restores the hooks and base rules
// on their own first, so the bridge is default-deny again whatever else
// fails, then each sandbox that still holds its address on its own: one
// sandbox whose set is gone cannot keep the others, or the hooks, from
// coming back. When the hooks or base rules had to come back, every flow of
// every sandbox is forgotten too: one opened while nothing filtered would
// otherwise go on as ESTABLISHED for as long as it is used.
func (h *Host) Reassert(sbs []Sandbox) ([]string, error) {
	leases, err := h.ipam.read()
	if err != nil || len(leases) == 0 {
		return nil, err // no sandbox: nothing of ours should be there
	}
	groups := h.wanted(sbs, leases)
	if clean, err := h.inPlace(groups); err != nil || clean {
		return nil, err
	}
	unlock, err := h.lock()
	if err != nil {
		return nil, fmt.Errorf("network lock: %w", err)
	}
	defer unlock()
	return h.repair(sbs)
}

// repair is Reassert's repair, under the host lock. The leases are read
// again: a detach that held the lock meanwhile may have removed the last
// sandbox, and with it, on purpose, the base rules and hooks.
func (h *Host) repair(sbs []Sandbox) ([]string, error) {
	leases, err := h.ipam.read()
	if err != nil || len(leases) == 0 {
		return nil, err
	}
	groups := h.wanted(sbs, leases)
	var added []string
	var errs []error
	for i, g := range groups {
		got, err := h.t.ensure(g.chains, g.rules)
		added = append(added, got...)
		if err != nil {
			if i == 0 {
				return added, err
			}
			errs = append(errs, fmt.Errorf("sandbox %s: %w", g.name, err))
			continue
		}
		if i == 0 && len(got) > 0 && !h.cfg.KeepFlows {
			for _, ip := range leases {
				if _, err := forgetFlows(ip); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return added, errors.Join(errs...)
}

// ruleGroup is what one ensure puts in place: the base (first) or one
// sandbox's chains and rules.
type ruleGroup struct {
	name   string
	chains []chainRef
	rules  []rule
}

// wanted is the base group, then one group per sandbox of sbs that still
// holds its address (one being detached is skipped).
func (h *Host) wanted(sbs []Sandbox, leases map[string]netip.Addr) []ruleGroup {
	groups := []ruleGroup{{name: "base", chains: baseChains(), rules: append(baseRules(h.cfg.Bridge, h.cfg.Subnet), hookRules()...)}}
	for _, sb := range sbs {
		if ip, ok := leases[sb.Name]; !ok || ip != sb.IP {
			continue
		}
		sb.Gateway, sb.LogGroup = h.Gateway(), LogGroup(h.cfg.Subnet, sb.IP)
		groups = append(groups, ruleGroup{name: sb.Name, chains: sandboxChains(sb), rules: sandboxRules(h.cfg.Bridge, sb)})
	}
	return groups
}

// inPlace reports whether every group is as wanted, reading each family's
// rules once.
func (h *Host) inPlace(groups []ruleGroup) (bool, error) {
	for _, f := range []family{v4, v6} {
		rs, err := h.t.load(f)
		if err != nil {
			return false, err
		}
		for _, g := range groups {
			p := planEnsure(rs, f, g.chains, g.rules)
			for _, table := range ruleTables() {
				if p.input(table) != "" {
					return false, nil
				}
			}
		}
	}
	return true, nil
}

// sandboxRuleChains are the shared chains that hold rules of every sandbox.
var sandboxRuleChains = []chainRef{
	{v4, "filter", chainForwardSB}, {v4, "filter", chainInputSB}, {v4, "nat", chainPrerouting},
}

// Allow adds or refreshes entries in the sandbox's set, the mirror in its
// own namespace first: a packet the host's layer lets through must not then
// meet an inner set that does not have it yet.
func (h *Host) Allow(sandbox string, entries []Entry) error {
	if err := h.allowInner(sandbox, entries); err != nil {
		return err
	}
	return h.sets.addEntries(SetName(sandbox), entries)
}

// Members lists the sandbox's sets as the kernel has them now: the
// addresses its gate admitted, then its ranges.
func (h *Host) Members(sandbox string) ([]SetMember, error) {
	out, err := h.sets.listEntries(SetName(sandbox))
	if err != nil {
		return nil, err
	}
	nets, err := h.sets.listEntries(NetSetName(sandbox))
	if err != nil {
		return nil, err
	}
	return append(out, nets...), nil
}

// Counters are the packets a sandbox's chain accepted and dropped.
type Counters struct {
	Accepted uint64 `json:"accepted_packets"`
	Denied   uint64 `json:"denied_packets"`
	// DNSRateDropped are queries to the gate over the sandbox's rate.
	DNSRateDropped uint64 `json:"dns_rate_dropped_packets"`
	// NewFlowsRefused are connections refused over the sandbox's rate of
	// new ones (resources.new_connections_per_second).
	NewFlowsRefused uint64 `json:"rate_refused_connections"`
}

// Counters reads the sandbox chain's packet counters. What the second
// layer drops never reaches the host's chain, so its drops are added; what
// it lets through is counted once, outside.
func (h *Host) Counters(sandbox string) (Counters, error) {
	var c Counters
	packets, err := h.t.r.packets(v4, "filter", ChainName(sandbox))
	if err != nil {
		return c, fmt.Errorf("counters of %s: %w", ChainName(sandbox), err)
	}
	for _, p := range packets {
		switch {
		case strings.HasSuffix(p.line, "-j ACCEPT"):
			c.Accepted += p.packets
		case strings.HasSuffix(p.line, "-j DROP"):
			c.Denied += p.packets
		}
	}
	if !h.cfg.NoInnerLayer {
		denied, dnsRate, flowRate, err := innerDrops(sandbox)
		if err != nil {
			return c, fmt.Errorf("counters of the second layer of %s: %w", sandbox, err)
		}
		c.Denied += denied
		c.DNSRateDropped, c.NewFlowsRefused = dnsRate, flowRate
	}
	return c, nil
}

// Rules returns, as iptables-save lines, every rule that enforces the
// sandbox: its own chain and its rules in the shared chains.
func (h *Host) Rules(sandbox string) ([]string, error) {
	rs, err := h.t.load(v4)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range append([]chainRef{{v4, "filter", ChainName(sandbox)}}, sandboxRuleChains...) {
		for _, l := range rs[c.table][c.chain] {
			if c.chain == ChainName(sandbox) || ownedBy(l, comment(sandbox)) {
				out = append(out, "-t "+c.table+" -A "+c.chain+" "+l)
			}
		}
	}
	return out, nil
}
