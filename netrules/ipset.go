package netrules

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// Protocol numbers for set entries.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// Entry is one allowed destination: address, protocol and port, kept for
// Timeout (0 means no timeout: static cidr entries).
type Entry struct {
	Addr    netip.Addr
	Proto   uint8
	Port    uint16
	Timeout time.Duration
	// TLS puts the entry behind the name gate too, for TLSTimeout (or
	// Timeout, if zero): the sandbox's own namespace sends its connections
	// there to be checked by name.
	TLS        bool
	TLSTimeout time.Duration
}

// maxSetTimeout is what the kernel accepts for a set entry (in seconds).
const maxSetTimeout = 2147483

// ipsets changes the ip sets of one network namespace: the host's (a zero
// netlink.Handle) or a sandbox's own, which holds the mirror its second
// layer matches. Set names are per namespace, so both use the same names.
type ipsets struct{ nl *netlink.Handle }

// hostSets are the sets of the namespace clawguard runs in.
func hostSets() ipsets { return ipsets{nl: &netlink.Handle{}} }

// ensureSet creates the sandbox's hash:ip,port set with timeout support. An
// existing set is kept with its entries.
func (s ipsets) ensureSet(name string) error {
	zero := uint32(0)
	err := s.nl.IpsetCreate(name, "hash:ip,port", netlink.IpsetCreateOptions{Timeout: &zero, Comments: true})
	if err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("create ip set %s: %w", name, err)
	}
	return nil
}

// NetEntry is one allowed range: every address of Prefix on Port of Proto,
// for as long as the sandbox runs.
type NetEntry struct {
	Prefix netip.Prefix
	Proto  uint8
	Port   uint16
}

// ensureNetSet creates the sandbox's hash:net,port set of ranges: one
// member per cidr entry and port, whatever the range's size (a /16 expanded
// address by address would be 65536 members per port, each one netlink call
// under the host lock).
func (s ipsets) ensureNetSet(name string) error {
	err := s.nl.IpsetCreate(name, "hash:net,port", netlink.IpsetCreateOptions{Comments: true})
	if err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("create ip set %s: %w", name, err)
	}
	return nil
}

func (s ipsets) addNetEntries(set string, entries []NetEntry) error {
	for _, e := range entries {
		if !e.Prefix.Addr().Is4() {
			return fmt.Errorf("add %s to %s: only IPv4 is allowed", e.Prefix, set)
		}
		proto, port := e.Proto, e.Port
		ent := &netlink.IPSetEntry{IP: net.IP(e.Prefix.Masked().Addr().AsSlice()), CIDR: uint8(e.Prefix.Bits()), Protocol: &proto, Port: &port, Replace: true}
		if err := s.nl.IpsetAdd(set, ent); err != nil {
			return fmt.Errorf("add %s %d/%d to ip set %s: %w", e.Prefix, e.Proto, e.Port, set, err)
		}
	}
	return nil
}

// destroySet removes a set; a missing one is not an error. The set must no
// longer be referenced by a rule.
func (s ipsets) destroySet(name string) error {
	if err := s.nl.IpsetDestroy(name); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("destroy ip set %s: %w", name, err)
	}
	return nil
}

// addEntries adds or refreshes entries; an existing entry gets the new
// timeout (never a shorter one than it has: callers pass the longest).
func (s ipsets) addEntries(set string, entries []Entry) error {
	for _, e := range entries {
		if !e.Addr.Is4() {
			return fmt.Errorf("add %s to %s: only IPv4 is allowed", e.Addr, set)
		}
		proto, port := e.Proto, e.Port
		ent := &netlink.IPSetEntry{IP: net.IP(e.Addr.AsSlice()), Protocol: &proto, Port: &port, Replace: true}
		if e.Timeout > 0 {
			secs := uint32(min(int64(e.Timeout.Round(time.Second)/time.Second), maxSetTimeout))
			if secs == 0 {
				secs = 1
			}
			ent.Timeout = &secs
		}
		if err := s.nl.IpsetAdd(set, ent); err != nil {
			return fmt.Errorf("add %s %d/%d to ip set %s: %w", e.Addr, e.Proto, e.Port, set, err)
		}
	}
	return nil
}

// protoNumber is the protocol number of a SetMember's Proto.
func protoNumber(name string) uint8 {
	switch name {
	case "tcp":
		return ProtoTCP
	case "udp":
		return ProtoUDP
	}
	n, _ := strconv.ParseUint(name, 10, 8)
	return uint8(n)
}

// SetMember is an entry as the kernel reports it, with the time left.
type SetMember struct {
	Addr     netip.Addr    `json:"address"`
	Prefix   netip.Prefix  `json:"prefix,omitzero"` // for a member of the ranges set
	Proto    string        `json:"protocol"`
	Port     uint16        `json:"port"`
	Timeout  time.Duration `json:"-"`
	Seconds  int64         `json:"expires_in_seconds"`
	Infinite bool          `json:"static,omitempty"`
}

// listEntries reads the set's members.
func (s ipsets) listEntries(set string) ([]SetMember, error) {
	res, err := s.nl.IpsetList(set)
	if err != nil {
		return nil, fmt.Errorf("list ip set %s: %w", set, err)
	}
	var out []SetMember
	for _, e := range res.Entries {
		addr, ok := netip.AddrFromSlice(e.IP)
		if !ok {
			continue
		}
		m := SetMember{Addr: addr.Unmap()}
		if e.CIDR != 0 {
			m.Prefix = netip.PrefixFrom(m.Addr, int(e.CIDR))
		}
		if e.Protocol != nil {
			switch *e.Protocol {
			case ProtoTCP:
				m.Proto = "tcp"
			case ProtoUDP:
				m.Proto = "udp"
			default:
				m.Proto = fmt.Sprint(*e.Protocol)
			}
		}
		if e.Port != nil {
			m.Port = *e.Port
		}
		if e.Timeout != nil && *e.Timeout > 0 {
			m.Timeout = time.Duration(*e.Timeout) * time.Second
			m.Seconds = int64(*e.Timeout)
		} else {
			m.Infinite = true
		}
		out = append(out, m)
	}
	return out, nil
}

// listOurSets returns the names of every set of ours.
func (s ipsets) listOurSets() ([]string, error) {
	all, err := s.nl.IpsetListAll()
	if err != nil {
		return nil, fmt.Errorf("list ip sets: %w", err)
	}
	var out []string
	for _, set := range all {
		if IsOurSet(set.SetName) {
			out = append(out, set.SetName)
		}
	}
	return out, nil
}
