package netrules

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	goruntime "runtime"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ensureBridge creates the bridge with the gateway address and brings it up;
// an existing bridge is reused.
func ensureBridge(name string, gw netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return fmt.Errorf("find bridge %s: %w", name, err)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("find bridge %s: %w", name, err)
		}
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return fmt.Errorf("%s exists and is a %s, not a bridge: choose another --bridge", name, link.Type())
	}
	addr := &netlink.Addr{IPNet: prefixToIPNet(gw)}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", gw, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	return nil
}

// deleteBridge removes the bridge; a missing one is not an error.
func deleteBridge(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// ensureVeth connects a sandbox's namespace to the bridge: the host side
// (cg<id>) becomes an isolated bridge port, so sandboxes cannot reach each
// other at layer 2 whatever the firewall says; the namespace side is eth0
// with the sandbox's address and a default route via the gateway, and IPv6
// is switched off inside.
func ensureVeth(sandbox, bridge, nsPath string, addr netip.Prefix, gw netip.Addr) error {
	host := VethName(sandbox)
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", bridge, err)
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	nsHandle, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer nsHandle.Close()

	if _, err := netlink.LinkByName(host); err != nil {
		peer := "cgp" + ShortID(sandbox)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MTU: br.Attrs().MTU}, PeerName: peer}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth %s: %w", host, err)
		}
		p, err := netlink.LinkByName(peer)
		if err != nil {
			return fmt.Errorf("find veth peer %s: %w", peer, err)
		}
		if err := netlink.LinkSetNsFd(p, int(ns)); err != nil {
			return fmt.Errorf("move %s into %s: %w", peer, nsPath, err)
		}
		p, err = nsHandle.LinkByName(peer)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", peer, nsPath, err)
		}
		if err := nsHandle.LinkSetName(p, "eth0"); err != nil {
			return fmt.Errorf("rename %s to eth0: %w", peer, err)
		}
	}
	hostLink, err := netlink.LinkByName(host)
	if err != nil {
		return fmt.Errorf("find veth %s: %w", host, err)
	}
	if err := netlink.LinkSetMaster(hostLink, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", host, bridge, err)
	}
	if err := netlink.LinkSetIsolated(hostLink, true); err != nil {
		return fmt.Errorf("isolate bridge port %s: %w", host, err)
	}
	if err := netlink.LinkSetUp(hostLink); err != nil {
		return fmt.Errorf("bring %s up: %w", host, err)
	}

	if err := lockDownNS(ns); err != nil {
		return fmt.Errorf("netns %s: %w", nsPath, err)
	}
	eth0, err := nsHandle.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0 in %s: %w", nsPath, err)
	}
	if err := nsHandle.AddrReplace(eth0, &netlink.Addr{IPNet: prefixToIPNet(addr)}); err != nil {
		return fmt.Errorf("address %s on eth0: %w", addr, err)
	}
	if err := nsHandle.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("bring eth0 up: %w", err)
	}
	route := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.IP(gw.AsSlice())}
	if err := nsHandle.RouteReplace(route); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// deleteVeth removes the host side; the kernel removes its peer with it.
func deleteVeth(sandbox string) error {
	link, err := netlink.LinkByName(VethName(sandbox))
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete veth %s: %w", VethName(sandbox), err)
	}
	return nil
}

// lockDownNS turns IPv6 off for every interface of the namespace, so the
// sandbox has no IPv6 address, not even link-local, and its IPv4 forwards
// nothing and follows no source route.
func lockDownNS(ns netns.NsHandle) error {
	return InNetNS(ns, func() error {
		for _, f := range []string{"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"} {
			if err := os.WriteFile(f, []byte("1"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("disable IPv6 (%s): %w", f, err)
			}
		}
		// A new namespace inherits the host's IPv4 settings, forwarding
		// (which clawguard turns on for the host) among them. The sandbox
		// routes for nobody and honours no source route.
		for f, v := range map[string]string{
			"/proc/sys/net/ipv4/ip_forward":                       "0",
			"/proc/sys/net/ipv4/conf/all/accept_source_route":     "0",
			"/proc/sys/net/ipv4/conf/default/accept_source_route": "0",
			"/proc/sys/net/ipv4/conf/all/route_localnet":          "0",
			"/proc/sys/net/ipv4/conf/all/accept_local":            "0",
		} {
			if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
				return fmt.Errorf("set %s=%s: %w", f, v, err)
			}
		}
		return nil
	})
}

// InNetNS runs fn on an OS thread inside ns and returns its error. Sockets
// fn opens stay in ns; /proc/sys/net is ns's. The thread is handed back to
// the scheduler only if it could return to its own namespace; otherwise it
// dies with its goroutine.
func InNetNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			goruntime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// sysctl writes a host sysctl, if it differs.
func sysctl(path, value string) error {
	cur, err := os.ReadFile(path)
	if err == nil && string(trimNL(cur)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set %s=%s: %w", path, value, err)
	}
	return nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
