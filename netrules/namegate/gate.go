package namegate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Decider judges one connection: the server name the agent asked for and
// the address it was going to. why says why not, for the audit log, the
// metrics and status.
type Decider interface {
	Decide(now time.Time, serverName string, dst netip.AddrPort) (ok bool, why Refusal)
	// Refused reports a connection turned away, with what was seen of it.
	Refused(serverName string, dst netip.AddrPort, why Refusal)
}

// Reason is why a connection was refused, in one word: what connections
// are counted by. Refusal.Detail says the rest.
type Reason string

const (
	NotAllowlisted Reason = "not_allowlisted" // the name, or the name on that port
	NotResolved    Reason = "not_resolved"    // the name was not resolved to that address by this sandbox
	Expired        Reason = "expired"         // it was, but that binding has expired
	NoName         Reason = "no_name"
	EncryptedHello Reason = "ech"
	NotTLS         Reason = "not_tls"
	HelloTooLarge  Reason = "too_large"
	HelloTimeout   Reason = "timeout"
	BadName        Reason = "bad_name"
	RetryRenamed   Reason = "retry_renamed" // the ClientHello after a HelloRetryRequest names another server
	GateFull       Reason = "gate_full"
	LeakAttempt    Reason = "credential_leak_attempt" // a bound secret's placeholder in the server name
	NotRedirected  Reason = "not_redirected"          // made to the gate's own address
	NoDestination  Reason = "no_destination"          // the original destination could not be read
)

// Refusal is why one connection was refused.
type Refusal struct {
	Reason Reason
	Detail string
}

func (r Refusal) String() string { return r.Detail }

// helloRefusal is the refusal for a ClientHello that could not be judged.
func helloRefusal(err error) Refusal {
	for _, c := range []struct {
		err    error
		reason Reason
	}{
		{ErrNoName, NoName}, {ErrECH, EncryptedHello}, {ErrTooLarge, HelloTooLarge},
		{ErrTimeout, HelloTimeout}, {ErrBadName, BadName},
	} {
		if errors.Is(err, c.err) {
			return Refusal{c.reason, err.Error()}
		}
	}
	return Refusal{NotTLS, err.Error()}
}

// Config is one gate.
type Config struct {
	// OriginalDst is where the agent's connection was going before it was
	// redirected to the gate (SO_ORIGINAL_DST on the accepted socket).
	OriginalDst func(c net.Conn) (netip.AddrPort, error)
	// Dial connects to the original destination on the agent's behalf, so
	// that what leaves is subject to the sandbox's own rules.
	Dial func(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// HelloTimeout bounds the wait for a whole ClientHello.
	HelloTimeout time.Duration
	// MaxConns caps the connections the gate holds at once (default
	// 512): each is a socket pair and a ClientHello's buffer, and an agent
	// decides how many it opens.
	MaxConns int
	// MaxDials caps the dials in progress at once (default 32): a dial
	// made inside a network namespace holds an OS thread until it ends,
	// and a destination that drops SYNs makes each take its whole timeout.
	MaxDials int
	// Broker, if set, takes over the connections to the hosts it is bound
	// to once they have passed: they are decrypted there, never spliced.
	Broker Broker
	Log    *slog.Logger
}

// Broker serves a host's connections itself (netrules/broker).
type Broker interface {
	Bound(host string) bool
	// Serve takes c, whose ClientHello hello was read already, until
	// the agent hangs up or ctx ends.
	Serve(ctx context.Context, c net.Conn, hello []byte, host string, dst netip.AddrPort) error
}

// Gate accepts the redirected connections of one sandbox.
type Gate struct {
	cfg   Config
	d     Decider
	wg    sync.WaitGroup
	slots chan struct{}
	dials chan struct{}
}

// New returns a gate; zero fields of cfg get safe defaults.
func New(cfg Config, d Decider) (*Gate, error) {
	if cfg.OriginalDst == nil || cfg.Dial == nil {
		return nil, errors.New("namegate: OriginalDst and Dial are required")
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 512
	}
	if cfg.MaxDials <= 0 {
		cfg.MaxDials = 32
	}
	return &Gate{cfg: cfg, d: d, slots: make(chan struct{}, cfg.MaxConns), dials: make(chan struct{}, cfg.MaxDials)}, nil
}

// Serve accepts on ln until ctx ends or ln fails, and waits for every
// connection it accepted to end before it returns.
func (g *Gate) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	defer g.wg.Wait()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Out of descriptors or buffers, or a connection that went
			// before it was taken: wait and go on, as net/http does. A gate
			// that stopped here would refuse the sandbox's TLS until a
			// restart.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
				errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ECONNABORTED) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				g.cfg.Log.Warn("namegate: accept", "error", err, "retry_in", backoff)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				continue
			}
			return fmt.Errorf("namegate: accept: %w", err)
		}
		backoff = 0
		select {
		case g.slots <- struct{}{}:
		default:
			g.refuse(c, "", netip.AddrPort{}, Refusal{GateFull, fmt.Sprintf("the gate holds %d connections already", g.cfg.MaxConns)})
			c.Close()
			continue
		}
		g.wg.Add(1)
		go func() {
			defer func() { <-g.slots; g.wg.Done() }()
			g.handle(ctx, c)
		}()
	}
}

// handle judges one connection and, if it passes, splices it to its
// original destination with the ClientHello replayed.
func (g *Gate) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	// The gate's end ends its connections: a sandbox being torn down must
	// not wait for its agent to hang up.
	defer context.AfterFunc(ctx, func() { c.Close() })()
	dst, err := g.cfg.OriginalDst(c)
	if err != nil {
		g.refuse(c, "", netip.AddrPort{}, Refusal{NoDestination, fmt.Sprintf("original destination unknown: %v", err)})
		return
	}
	// Only connections redirected on their way out come here; one made
	// straight to the gate's own address has nowhere to go.
	if local, ok := c.LocalAddr().(*net.TCPAddr); ok && local.AddrPort() == dst {
		g.refuse(c, "", dst, Refusal{NotRedirected, "made to the gate itself, not redirected to it"})
		return
	}
	h, err := ReadHello(c, g.cfg.HelloTimeout)
	if err != nil {
		g.refuse(c, h.ServerName, dst, helloRefusal(err))
		return
	}
	if ok, why := g.d.Decide(time.Now(), h.ServerName, dst); !ok {
		g.refuse(c, h.ServerName, dst, why)
		return
	}
	if b := g.cfg.Broker; b != nil && b.Bound(h.ServerName) {
		if err := b.Serve(ctx, c, h.Raw, h.ServerName, dst); err != nil {
			g.cfg.Log.Debug("namegate: broker", "server_name", h.ServerName, "destination", dst, "error", err)
		}
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	var up net.Conn
	select {
	case g.dials <- struct{}{}:
		up, err = g.cfg.Dial(dctx, dst)
		<-g.dials
	case <-dctx.Done():
		err = dctx.Err()
	}
	cancel()
	if err != nil {
		g.cfg.Log.Debug("namegate: dial", "server_name", h.ServerName, "destination", dst, "error", err)
		reset(c)
		return
	}
	defer up.Close()
	defer context.AfterFunc(ctx, func() { up.Close() })()
	if _, err := up.Write(h.Raw[:h.Len]); err != nil {
		reset(c)
		return
	}
	switch why, err := g.sameNameOnRetry(c, up, h); {
	case err != nil:
		g.cfg.Log.Debug("namegate: first answer", "server_name", h.ServerName, "destination", dst, "error", err)
		reset(c)
		return
	case why != nil:
		g.refuse(c, h.ServerName, dst, *why)
		return
	}
	splice(c, up)
}

// sameNameOnRetry passes the server's first record to the client and, if
// it is a HelloRetryRequest, the client's second ClientHello to the server
// only if it names the same server as the first: a server that routes by
// the second would otherwise serve a site the gate never judged. What the
// client sent after a ClientHello is held back until the server has
// answered it, so a second ClientHello sent early is judged too. A
// refusal is returned as why; err is a connection that failed.
func (g *Gate) sameNameOnRetry(c, up net.Conn, h Hello) (why *Refusal, err error) {
	deadline := time.Now().Add(g.cfg.HelloTimeout)
	_ = up.SetReadDeadline(deadline)
	defer up.SetReadDeadline(time.Time{}) //nolint:errcheck // best effort: the splice sets none
	_ = c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{}) //nolint:errcheck // as above
	pending := h.Raw[h.Len:]
	for round := 0; ; round++ {
		typ, rec, err := readRecord(up)
		if err != nil {
			return nil, fmt.Errorf("the server's first record: %w", err)
		}
		if _, err := c.Write(rec); err != nil {
			return nil, err
		}
		if !helloRetry(typ, rec) {
			_, err := up.Write(pending)
			return nil, err
		}
		if round > 0 {
			return &Refusal{NotTLS, "a second HelloRetryRequest"}, nil
		}
		next, why, err := g.secondHello(&prefixed{Conn: c, prefix: pending}, up, deadline)
		if why != nil || err != nil {
			return why, err
		}
		if next.ServerName != h.ServerName {
			return &Refusal{RetryRenamed, fmt.Sprintf("the ClientHello after a HelloRetryRequest names %s, the first %s", next.ServerName, h.ServerName)}, nil
		}
		if _, err := up.Write(next.Raw[:next.Len]); err != nil {
			return nil, err
		}
		pending = next.Raw[next.Len:]
	}
}

// secondHello reads the client's ClientHello after a HelloRetryRequest,
// passing on the ChangeCipherSpec it may send first (middlebox
// compatibility).
func (g *Gate) secondHello(c net.Conn, up net.Conn, deadline time.Time) (Hello, *Refusal, error) {
	for range 2 {
		typ, hdr, err := readHeader(c)
		if err != nil {
			r := helloRefusal(err)
			return Hello{}, &r, nil
		}
		if typ != recordChangeCipherSpec {
			h, err := ReadHello(&prefixed{Conn: c, prefix: hdr}, time.Until(deadline))
			if err != nil {
				r := helloRefusal(err)
				r.Detail = "the second ClientHello: " + r.Detail
				return Hello{}, &r, nil
			}
			return h, nil, nil
		}
		rest := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if len(rest) > 1 {
			return Hello{}, &Refusal{NotTLS, "a ChangeCipherSpec record of more than one byte"}, nil
		}
		if _, err := io.ReadFull(c, rest); err != nil {
			r := helloRefusal(err)
			return Hello{}, &r, nil
		}
		if _, err := up.Write(append(hdr, rest...)); err != nil {
			return Hello{}, nil, err
		}
	}
	return Hello{}, &Refusal{NotTLS, "ChangeCipherSpec records where the second ClientHello belongs"}, nil
}

// refuse reports and resets: an RST tells the agent at once, where a plain
// close would look like a server that hung up.
func (g *Gate) refuse(c net.Conn, name string, dst netip.AddrPort, why Refusal) {
	g.d.Refused(name, dst, why)
	reset(c)
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}

// splice copies both ways until both are done. Each direction's end is
// passed on as a half-close, so a client that shuts its writing side
// still gets the rest of the answer. io.Copy between two TCP connections
// uses splice(2): the bytes never enter this process.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if tc, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
			_ = tc.CloseWrite()
			return
		}
		// An error one way ends both; a reset is passed on as one, so
		// neither end takes it for a server that finished.
		if errors.Is(err, syscall.ECONNRESET) {
			reset(a)
			reset(b)
		}
		a.Close()
		b.Close()
	}
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
}

// OriginalDst reads where a redirected connection was going: the
// conntrack entry of the namespace the socket lives in (SO_ORIGINAL_DST).
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var dst netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		// A sockaddr_in, read through the one getsockopt wrapper of the
		// right size (20 bytes).
		m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			serr = fmt.Errorf("SO_ORIGINAL_DST: %w", err)
			return
		}
		b := m.Multiaddr
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), uint16(b[2])<<8|uint16(b[3]))
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return dst, serr
}
