package netrules

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// forgetFlows deletes the host's connection-tracking entries of addr: the
// flows a sandbox at addr opened (original source) and those opened to it
// (original destination: the forwarders of published ports). Every
// sandbox chain accepts ESTABLISHED first, so an entry that outlived its
// sandbox would let the next sandbox given the same address continue a
// flow its own allowlist does not grant. It returns how many went.
func forgetFlows(addr netip.Addr) (uint, error) {
	var filters []netlink.CustomConntrackFilter
	for _, tp := range []netlink.ConntrackFilterType{netlink.ConntrackOrigSrcIP, netlink.ConntrackOrigDstIP} {
		f := &netlink.ConntrackFilter{}
		if err := f.AddIP(tp, addr.AsSlice()); err != nil {
			return 0, fmt.Errorf("conntrack filter for %s: %w", addr, err)
		}
		filters = append(filters, f)
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		return n, fmt.Errorf("delete the connection-tracking entries of %s: %w", addr, err)
	}
	return n, nil
}
