// Package nflog reads packets the kernel copies to an NFLOG group (the
// iptables NFLOG target) over a netfilter netlink socket, so that every
// packet a sandbox's chain drops can be reported with its destination.
package nflog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Netfilter netlink constants (linux/netfilter/nfnetlink_log.h).
const (
	subsysULOG   = 4
	msgPacket    = 0
	msgConfig    = 1
	cfgCmd       = 1
	cfgMode      = 2
	cmdBind      = 1
	copyPacket   = 2
	attrPayload  = 9
	attrPrefix   = 10
	copyRange    = 64 // the IPv4 header and the ports are all we read
	nlmsgHdrLen  = 16
	nfgenmsgLen  = 4
	recvBufBytes = 16 << 10 // ~100 logged packets of 64 copied bytes each
)

// Packet is one logged packet: where it was going.
type Packet struct {
	Time    time.Time
	Prefix  string
	Src     netip.Addr
	Dst     netip.Addr
	Proto   uint8
	DstPort uint16
}

// ProtoName is the protocol's usual name.
func (p Packet) ProtoName() string {
	switch p.Proto {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	}
	return fmt.Sprint(p.Proto)
}

// Reader is bound to one NFLOG group.
type Reader struct {
	fd    int
	group uint16
}

// Listen binds an NFLOG group. Only one socket may bind a group: a second
// one fails with EBUSY.
func Listen(group uint16) (*Reader, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nflog: socket: %w", err)
	}
	r := &Reader{fd: fd, group: group}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("nflog: bind: %w", err)
	}
	// Configuration replies are read blocking, but only for a moment.
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("nflog: timeout: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	if err := r.config(attr(cfgCmd, []byte{cmdBind})); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("nflog: bind group %d: %w", group, err)
	}
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, copyRange)
	mode[4] = copyPacket
	if err := r.config(attr(cfgMode, mode)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("nflog: copy mode for group %d: %w", group, err)
	}
	return r, nil
}

// config sends one configuration request and waits for its acknowledgement.
func (r *Reader) config(attrs []byte) error {
	msg := make([]byte, nlmsgHdrLen+nfgenmsgLen, nlmsgHdrLen+nfgenmsgLen+len(attrs))
	msg = append(msg, attrs...)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], subsysULOG<<8|msgConfig)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	msg[16] = unix.AF_UNSPEC
	binary.BigEndian.PutUint16(msg[18:], r.group)
	if err := unix.Sendto(r.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			return err
		}
		for b := buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < nlmsgHdrLen || l > len(b) {
				return errors.New("malformed netlink reply")
			}
			if binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_ERROR && l >= nlmsgHdrLen+4 {
				if code := int32(binary.NativeEndian.Uint32(b[nlmsgHdrLen:])); code != 0 {
					return unix.Errno(-code)
				}
				return nil
			}
			b = b[align(l):]
		}
	}
}

// Run calls fn for each logged packet until ctx ends, then closes the socket.
// The socket is read through Go's poller: an idle reader costs nothing, and
// closing the file (when ctx ends) wakes it.
func (r *Reader) Run(ctx context.Context, fn func(Packet)) error {
	if err := unix.SetNonblock(r.fd, true); err != nil {
		unix.Close(r.fd)
		return fmt.Errorf("nflog: %w", err)
	}
	f := os.NewFile(uintptr(r.fd), "nflog")
	defer f.Close()
	raw, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("nflog: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	buf := make([]byte, recvBufBytes)
	for ctx.Err() == nil {
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil { // the file was closed
			return nil
		}
		if rerr != nil {
			if errors.Is(rerr, unix.EINTR) || errors.Is(rerr, unix.ENOBUFS) {
				continue // ENOBUFS: the kernel dropped some logs under load; keep reading
			}
			return fmt.Errorf("nflog: read group %d: %w", r.group, rerr)
		}
		now := time.Now()
		for b := buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < nlmsgHdrLen || l > len(b) {
				break
			}
			if binary.NativeEndian.Uint16(b[4:]) == subsysULOG<<8|msgPacket && l >= nlmsgHdrLen+nfgenmsgLen {
				if p, ok := parsePacket(b[nlmsgHdrLen+nfgenmsgLen : l]); ok {
					p.Time = now
					fn(p)
				}
			}
			b = b[min(align(l), len(b)):]
		}
	}
	return nil
}

// parsePacket reads the prefix and the IPv4 header (and ports) of one
// packet message's attributes.
func parsePacket(attrs []byte) (Packet, bool) {
	var p Packet
	ok := false
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs))
		typ := binary.NativeEndian.Uint16(attrs[2:]) & 0x3fff
		if l < 4 || l > len(attrs) {
			break
		}
		val := attrs[4:l]
		switch typ {
		case attrPrefix:
			for i, c := range val {
				if c == 0 {
					val = val[:i]
					break
				}
			}
			p.Prefix = string(val)
		case attrPayload:
			ok = parseIPv4(val, &p)
		}
		attrs = attrs[min(align(l), len(attrs)):]
	}
	return p, ok
}

func parseIPv4(b []byte, p *Packet) bool {
	if len(b) < 20 || b[0]>>4 != 4 {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	p.Proto = b[9]
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	if (p.Proto == unix.IPPROTO_TCP || p.Proto == unix.IPPROTO_UDP) && len(b) >= ihl+4 {
		p.DstPort = binary.BigEndian.Uint16(b[ihl+2:])
	}
	return true
}

func attr(typ uint16, val []byte) []byte {
	b := make([]byte, align(4+len(val)))
	binary.NativeEndian.PutUint16(b, uint16(4+len(val)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], val)
	return b
}

func align(n int) int { return (n + 3) &^ 3 }
