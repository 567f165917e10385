package dnsproxy

import (
	"context"
	"net"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Defaults for the caps a gate holds its sandbox to. One daemon serves every
// sandbox's gate, so each is sized for one agent's lookups and their bursts,
// not for a resolver: an agent that needs more than 64 answers in flight, or
// 4000 a second (twice what it may have forwarded upstream), is flooding.
const (
	DefaultMaxInFlight   = 64
	DefaultQueryRate     = 4000
	DefaultMaxTCPConns   = 16
	DefaultTCPConnRate   = 200
	DefaultMaxTCPQueries = 32
	DefaultTCPIdle       = 5 * time.Second
)

// reportEvery is how often at most a gate logs the load it shed.
const reportEvery = 10 * time.Second

// intake is what a gate takes in: at most max queries in hand at once, and
// at most rate a second. The first bounds what waits on upstream (memory,
// goroutines, sockets); the second bounds the CPU a flood can take from
// every other gate in the daemon, which no cap on concurrency does: queries
// the gate answers itself (a refused name) are done in microseconds, so a
// few places serve any number of them a second.
type intake struct {
	max  int64
	busy atomic.Int64
	rate *bucket
}

// place claims one of the places without waiting; false means the gate is
// full. A place is given back with done.
func (in *intake) place() bool {
	for {
		n := in.busy.Load()
		if n >= in.max {
			return false
		}
		if in.busy.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (in *intake) done() { in.busy.Add(-1) }

// take claims a place and the rate's next token without waiting.
func (in *intake) take(now time.Time) bool {
	if !in.rate.take(now) {
		return false
	}
	return in.place()
}

// shed counts what a gate turned away; report logs it.
type shed struct {
	dropped atomic.Uint64 // queries read and dropped, or TCP connections closed, over the intake
	reset   atomic.Uint64 // TCP connections reset over MaxTCPConns
}

// admitReader is the UDP server's read loop, the one place that runs before
// miekg/dns starts a goroutine for a packet: it starts one for every packet
// it reads, with no bound. A packet leaves here holding a place in the
// intake, given back when its goroutine is done (see Serve).
//
// Over the rate, the loop stops reading until the next token is due: what
// comes meanwhile waits in the socket's buffer (the default 208 KiB holds
// about 250 queries, some 60 ms at 4000 a second) and what does not fit is
// dropped by the kernel, at no cost to the daemon. Reading a flood only to
// drop it would cost a system call per packet, at the flood's rate, on the
// CPUs every other gate answers from. Measured with
// BenchmarkOtherGateLatencyDuringFlood (one CPU flooding, two-CPU host, six
// runs), another gate's p99 had medians of 2.7-7.6 ms with the flood read
// and dropped, 0.9-3.0 ms with it left to the kernel, 0.5 ms with no flood.
//
// With no place free, a packet is dropped at once rather than kept until
// one frees: the places are held by queries waiting on upstream, for up to
// seconds, and a query kept that long would be forwarded for a client that
// has given up on it. The rate still bounds how many are read to be dropped.
//
// It sets no read deadline. miekg/dns sets one only to look for a shutdown
// now and then, under a lock this reader cannot take (an unlocked one could
// overwrite the past deadline Shutdown sets); Serve ends the loop by closing
// the socket instead.
type admitReader struct {
	dns.Reader // ReadTCP, which the UDP server never calls
	intake     *intake
	dropped    *atomic.Uint64
	buf        []byte // only the server's single read loop uses it
}

func newAdmitReader(next dns.Reader, in *intake, dropped *atomic.Uint64) *admitReader {
	return &admitReader{Reader: next, intake: in, dropped: dropped, buf: make([]byte, dns.DefaultMsgSize)}
}

// ReadUDP implements dns.Reader.
func (r *admitReader) ReadUDP(conn *net.UDPConn, _ time.Duration) ([]byte, *dns.SessionUDP, error) {
	for {
		n, s, err := dns.ReadFromSessionUDP(conn, r.buf)
		if err != nil {
			return nil, nil, err
		}
		if r.admit() {
			return slices.Clone(r.buf[:n]), s, nil
		}
	}
}

// ReadPacketConn implements dns.PacketConnReader, for a PacketConn that is
// not a *net.UDPConn.
func (r *admitReader) ReadPacketConn(conn net.PacketConn, _ time.Duration) ([]byte, net.Addr, error) {
	for {
		n, addr, err := conn.ReadFrom(r.buf)
		if err != nil {
			return nil, nil, err
		}
		if r.admit() {
			return slices.Clone(r.buf[:n]), addr, nil
		}
	}
}

// admit waits for the rate's next token, then claims a place for the packet
// just read, or counts it dropped.
func (r *admitReader) admit() bool {
	for wait := r.intake.rate.reserve(time.Now()); wait > 0; wait = r.intake.rate.reserve(time.Now()) {
		time.Sleep(wait)
	}
	if r.intake.place() {
		return true
	}
	r.dropped.Add(1)
	return false
}

// capListener accepts at most rate connections a second and holds at most
// max open.
//
// Over max open, a connection is reset as soon as it is accepted, rather
// than left waiting as x/net/netutil.LimitListener does: while its
// connections are held the gate could not accept at all, and every client
// would hang in the backlog until its own timeout. A reset tells the
// client at once and leaves nothing behind, not even a TIME_WAIT entry.
//
// Over the rate it stops accepting, as the UDP read loop stops reading:
// the kernel queues a few connections in the short backlog (setBacklog)
// and refuses the handshakes of the rest. Most of a connection flood ends
// there; the rate bounds what the daemon spends on the rest however many
// clients dial at once.
type capListener struct {
	net.Listener
	max     int64
	rate    *bucket
	timeout time.Duration // for each answer to be taken by the client
	open    atomic.Int64
	reset   *atomic.Uint64
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		for wait := l.rate.reserve(time.Now()); wait > 0; wait = l.rate.reserve(time.Now()) {
			time.Sleep(wait)
		}
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &cappedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close with a reset
		}
		_ = c.Close()
		l.reset.Add(1)
	}
}

// setBacklog shortens ln's queue of connections the kernel has completed
// and the gate not yet accepted, from the host's somaxconn (4096 here) to
// n. Over it the kernel drops a client's SYN, and the client sends it again
// after 1 s, then 2, then 4: TCP's own back-off, which a client without raw
// sockets (a sandbox has none) cannot skip, instead of thousands of sockets
// held for one sandbox.
// Measured with BenchmarkOtherGateLatencyDuringFlood, a connection flood
// fell from 13000 connections a second to about 100 with a backlog of 16,
// and another gate's p99 from a median of 4.7 ms to 0.4 ms. Linux takes a
// second listen(2) on a listening socket as a change of its backlog.
func setBacklog(ln net.Listener, n int) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) { _ = unix.Listen(int(fd), n) })
}

// cappedConn gives its place back once closed, and bounds every write:
// miekg/dns sets no write deadline (Server.WriteTimeout is never read), so a
// client that stops reading its answers would otherwise hold the
// connection's goroutine for good once the socket's buffers are full.
type cappedConn struct {
	net.Conn
	l      *capListener
	closed atomic.Bool
}

func (c *cappedConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.l.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *cappedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}

// report logs what the gate shed, at most once every p.reportEvery and only
// when there is something new, and once more when ctx ends: a flood must be
// visible, and must not become a flood of log lines. What the kernel
// dropped for the UDP socket is there too: over the rate that is most of a
// flood, never read by the gate.
func (p *Proxy) report(ctx context.Context, pc net.PacketConn) {
	var last struct{ dropped, reset, kernel uint64 }
	line := func() {
		dropped, reset, kernel := p.shed.dropped.Load(), p.shed.reset.Load(), socketDrops(pc)
		if dropped == last.dropped && reset == last.reset && kernel <= last.kernel {
			return
		}
		p.cfg.Log.Warn("dns gate: over its caps, queries dropped",
			"dropped", dropped-last.dropped, "dropped_by_kernel", kernel-min(kernel, last.kernel), "tcp_reset", reset-last.reset,
			"max_in_flight", p.cfg.MaxInFlight, "per_second", p.cfg.QueryRate, "max_tcp_conns", p.cfg.MaxTCPConns)
		last.dropped, last.reset, last.kernel = dropped, reset, kernel
	}
	t := time.NewTicker(p.reportEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			line()
			return
		case <-t.C:
			line()
		}
	}
}

// skMeminfoDrops is SK_MEMINFO_DROPS (linux/sock_diag.h): the index of the
// socket's drop count in what SO_MEMINFO returns.
const skMeminfoDrops = 8

// socketDrops is how many packets the kernel dropped for pc's socket, its
// buffer full (or short of memory); 0 if it cannot tell.
func socketDrops(pc net.PacketConn) uint64 {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var drops uint64
	_ = raw.Control(func(fd uintptr) {
		// x/sys has no getsockopt for an array of u32 (GetsockoptString
		// cuts off the last byte), so the call is made directly, with
		// room for fields newer kernels add.
		var mem [32]uint32
		n := uint32(unsafe.Sizeof(mem))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&n)), 0)
		if errno == 0 && n >= 4*(skMeminfoDrops+1) {
			drops = uint64(mem[skMeminfoDrops])
		}
	})
	return drops
}
