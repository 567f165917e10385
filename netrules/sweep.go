package netrules

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// ourComment finds the sandbox a rule belongs to.
var ourComment = regexp.MustCompile(`--comment "clawguard sandbox ([^"]+)"`)

// isShortID reports whether s looks like ShortID's output.
func isShortID(s string) bool {
	if len(s) != 8 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Sweep removes every kernel object of a sandbox that is not in keep: rules
// found by their comment, CG-<id> chains, cg-<id>-v4 sets, cg<id> veths,
// cg-<name> namespaces and address leases. It returns what it removed.
//
// Object names are host-wide, but another clawguard (another state
// directory, another bridge) may share the host: an id whose veth is a port
// of a different bridge is left alone.
func (h *Host) Sweep(keep []string) ([]string, error) {
	unlock, err := h.lock()
	if err != nil {
		return nil, fmt.Errorf("network lock: %w", err)
	}
	defer unlock()
	keepID := map[string]bool{}
	for _, n := range keep {
		keepID[ShortID(n)] = true
	}
	foreign, err := h.foreignIDs()
	if err != nil {
		return nil, err
	}
	mine := func(id string) bool { return !keepID[id] && !foreign[id] }
	var removed []string
	var errs []error

	// Rules and chains first: a set cannot go while a rule uses it.
	for _, f := range []family{v4, v6} {
		rs, err := h.t.load(f)
		if err != nil {
			return removed, err
		}
		owners := map[string]bool{}
		for _, c := range sandboxRuleChains {
			for _, l := range rs[c.table][c.chain] {
				if m := ourComment.FindStringSubmatch(l); m != nil && mine(ShortID(m[1])) {
					owners[m[1]] = true
				}
			}
		}
		var drop []chainRef
		for table, chains := range rs {
			for chain := range chains {
				if id, ok := strings.CutPrefix(chain, chainPrefix); ok && isShortID(id) && mine(id) {
					drop = append(drop, chainRef{f, table, chain})
					removed = append(removed, fmt.Sprintf("chain %s/%s", table, chain))
				}
			}
		}
		p := newPlan()
		for o := range owners {
			q := planRemoveOwner(rs, f, comment(o), sandboxRuleChains, nil)
			for t, l := range q.del {
				p.del[t] = append(p.del[t], l...)
			}
			removed = append(removed, fmt.Sprintf("rules of sandbox %s", o))
		}
		q := planRemoveOwner(rs, f, "", nil, drop)
		for t, l := range q.drop {
			p.drop[t] = append(p.drop[t], l...)
		}
		if err := h.t.apply(f, p); err != nil {
			errs = append(errs, err)
		}
	}
	sets, err := hostSets().listOurSets()
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range sets {
		if id, _ := setID(s); isShortID(id) && mine(id) {
			if err := hostSets().destroySet(s); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, "ip set "+s)
			}
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		errs = append(errs, fmt.Errorf("list links: %w", err))
	}
	for _, l := range links {
		name := l.Attrs().Name
		if id, ok := strings.CutPrefix(name, vethPrefix); ok && isShortID(id) && mine(id) {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("delete veth %s: %w", name, err))
			} else {
				removed = append(removed, "veth "+name)
			}
		}
	}
	spaces, err := ListNetNS()
	if err != nil {
		errs = append(errs, err)
	}
	for _, sb := range spaces {
		if mine(ShortID(sb)) {
			if err := DeleteNetNS(sb); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, "netns "+NetNSName(sb))
			}
		}
	}
	leases, err := h.ipam.list()
	if err != nil {
		errs = append(errs, err)
	}
	for sb, addr := range leases {
		if !slices.Contains(keep, sb) {
			if err := h.ipam.release(sb); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, fmt.Sprintf("address lease %s of %s", addr, sb))
			}
		}
	}
	if len(keep) == 0 && len(errs) == 0 {
		if err := h.removeBase(); err != nil {
			errs = append(errs, err)
		}
	}
	slices.Sort(removed)
	return removed, errors.Join(errs...)
}

// foreignIDs are the ids whose veth is a port of another bridge.
func (h *Host) foreignIDs() (map[string]bool, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	ours := -1
	for _, l := range links {
		if l.Attrs().Name == h.cfg.Bridge {
			ours = l.Attrs().Index
		}
	}
	foreign := map[string]bool{}
	for _, l := range links {
		id, ok := strings.CutPrefix(l.Attrs().Name, vethPrefix)
		if ok && isShortID(id) && l.Attrs().MasterIndex != 0 && l.Attrs().MasterIndex != ours {
			foreign[id] = true
		}
	}
	return foreign, nil
}
