// Package netrules owns host networking for sandboxes: network namespaces
// now; bridge, veths, address allocation, iptables, ip sets and the DNS gate
// as enforcement grows. It knows nothing of containerd.
package netrules

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNSDir is where named network namespaces are bind-mounted (as iproute2
// does, so `ip netns` lists ours).
const NetNSDir = "/var/run/netns"

// nsPrefix marks every network namespace clawguard creates.
const nsPrefix = "cg-"

// NetNSName is the namespace name of a sandbox.
func NetNSName(sandbox string) string { return nsPrefix + sandbox }

// NetNSPath is where the namespace of a sandbox is mounted.
func NetNSPath(sandbox string) string { return filepath.Join(NetNSDir, NetNSName(sandbox)) }

// EnsureNetNS creates the sandbox's network namespace with loopback up and
// nothing else: no route leaves it. It is idempotent: an existing namespace
// of that name is reused (and its loopback brought up).
func EnsureNetNS(sandbox string) (string, error) {
	name := NetNSName(sandbox)
	path := NetNSPath(sandbox)
	h, err := netns.GetFromName(name)
	if err != nil {
		h, err = newNamed(name)
		if err != nil {
			return "", fmt.Errorf("create netns %s: %w", name, err)
		}
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return "", fmt.Errorf("netns %s: netlink: %w", name, err)
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err != nil {
		return "", fmt.Errorf("netns %s: find lo: %w", name, err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		return "", fmt.Errorf("netns %s: bring lo up: %w", name, err)
	}
	return path, nil
}

// newNamed creates a namespace and bind-mounts it under NetNSDir without
// leaving the calling thread inside it.
func newNamed(name string) (netns.NsHandle, error) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return netns.None(), err
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if restore := netns.Set(orig); restore != nil {
		// The thread is stuck in the new namespace; never hand it back to the
		// scheduler. LockOSThread without unlock makes the runtime kill it.
		goruntime.LockOSThread()
		return netns.None(), fmt.Errorf("restore namespace: %w", restore)
	}
	return h, err
}

// DeleteNetNS unmounts and removes a sandbox's namespace. A missing one is
// not an error.
func DeleteNetNS(sandbox string) error {
	path := NetNSPath(sandbox)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// ListNetNS returns the sandboxes that have a namespace of ours, for cleanup.
func ListNetNS() ([]string, error) {
	entries, err := os.ReadDir(NetNSDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", NetNSDir, err)
	}
	var out []string
	for _, e := range entries {
		if s, ok := strings.CutPrefix(e.Name(), nsPrefix); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// InNetNSAt is InNetNS for the namespace mounted at path: an NFLOG reader
// of a sandbox's second layer is opened so.
func InNetNSAt(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	return InNetNS(ns, fn)
}

// ListenNameGate opens the name gate's listener inside the network
// namespace at nsPath: 127.0.0.1:NameGatePort, with NameGateMark on it and
// so on every connection it accepts.
func ListenNameGate(nsPath string) (ln net.Listener, err error) {
	lc := net.ListenConfig{Control: markSocket}
	err = InNetNSAt(nsPath, func() error {
		ln, err = lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), NameGatePort).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("name gate: listen in %s: %w", nsPath, err)
	}
	return ln, nil
}

// NameGateDialer dials from inside the network namespace at nsPath, with
// NameGateMark, so the connection is not sent back to the gate and passes
// the sandbox's own rules like any of its connections.
func NameGateDialer(nsPath string) func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Control: markSocket}
	return func(ctx context.Context, dst netip.AddrPort) (c net.Conn, err error) {
		// One address, so the dial is made on this locked thread: the
		// socket is created in the namespace and stays there.
		err = InNetNSAt(nsPath, func() error {
			c, err = d.DialContext(ctx, "tcp4", dst.String())
			return err
		})
		return c, err
	}
}

func markSocket(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, NameGateMark)
	}); err != nil {
		return err
	}
	return serr
}
