// Package dnsproxy is the DNS gate in front of a sandbox: it forwards only
// allowlisted names upstream, has every answered address installed before it
// releases the answer, and refuses everything else without asking upstream,
// so no data leaves through DNS. It talks to the rest of clawguard only
// through the Gate it is given.
package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Gate is the proxy's only view of policy and enforcement.
type Gate interface {
	// Allowed reports whether a name may be resolved at all.
	Allowed(name string) bool
	// Admit installs the addresses an answer for name carries, for ttl, and
	// returns only when they are in force. It may drop addresses (private
	// ranges); it returns the ones it admitted. An error means the answer
	// must not be released.
	Admit(ctx context.Context, name string, addrs []netip.Addr, ttl time.Duration) ([]netip.Addr, error)
	// Forward is asked just before a query for an allowed name goes
	// upstream, and may still refuse it, saying why: a wildcard lets only
	// so many new names through, each of them data sent to its zone's
	// nameservers. A query it lets through counts against those bounds.
	Forward(name string) (refusal string, ok bool)
	// Refused is told about every query answered without upstream.
	Refused(name string, qtype string, reason string)
}

// Config tunes the proxy. A zero cap or timeout picks its default.
type Config struct {
	Upstreams []string      // host:port, tried in order
	Timeout   time.Duration // per upstream exchange
	MaxTTL    time.Duration // answers are never cached longer than this
	RateLimit float64       // queries per second a sandbox may have forwarded upstream
	Burst     int
	Log       *slog.Logger

	// What one sandbox can make the gate take on. RateLimit bounds how
	// often a sandbox reaches upstream, but neither how much is waiting
	// there (with a slow upstream every forwarded query is a goroutine
	// and a socket for seconds) nor the queries the gate answers itself.
	MaxInFlight   int           // queries being handled, UDP and TCP together
	QueryRate     float64       // queries a second the gate takes in, UDP and TCP together
	QueryBurst    int           // how far QueryRate may be exceeded in a burst
	MaxTCPConns   int           // TCP connections open
	TCPConnRate   float64       // TCP connections a second the gate accepts
	MaxTCPQueries int           // answered on one TCP connection before it is closed, so none holds one of the few places for good
	TCPIdle       time.Duration // for a TCP client to send its next query whole, and to take each answer
}

// Proxy serves one sandbox.
type Proxy struct {
	cfg    Config
	gate   Gate
	udp    *dns.Client
	tcp    *dns.Client
	limit  *bucket
	intake *intake
	shed   shed
	// reportEvery is how often at most the gate logs what it shed.
	reportEvery time.Duration
}

// New returns a proxy for one sandbox.
func New(cfg Config, gate Gate) (*Proxy, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("dns proxy: no upstream servers")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.RateLimit <= 0 {
		cfg.RateLimit, cfg.Burst = 2000, 4000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.QueryRate <= 0 {
		cfg.QueryRate = DefaultQueryRate
	}
	if cfg.QueryBurst <= 0 {
		cfg.QueryBurst = int(cfg.QueryRate)
	}
	if cfg.MaxTCPConns <= 0 {
		cfg.MaxTCPConns = DefaultMaxTCPConns
	}
	if cfg.TCPConnRate <= 0 {
		cfg.TCPConnRate = DefaultTCPConnRate
	}
	if cfg.MaxTCPQueries <= 0 {
		cfg.MaxTCPQueries = DefaultMaxTCPQueries
	}
	if cfg.TCPIdle <= 0 {
		cfg.TCPIdle = DefaultTCPIdle
	}
	return &Proxy{
		cfg:         cfg,
		gate:        gate,
		udp:         &dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: dns.DefaultMsgSize},
		tcp:         &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		limit:       newBucket(cfg.RateLimit, cfg.Burst),
		intake:      &intake{max: int64(cfg.MaxInFlight), rate: newBucket(cfg.QueryRate, cfg.QueryBurst)},
		reportEvery: reportEvery,
	}, nil
}

// ServeDNS answers one query. It holds no cap of its own: Serve runs it
// under the gate's.
func (p *Proxy) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := p.answer(context.Background(), req)
	if err := w.WriteMsg(resp); err != nil {
		p.cfg.Log.Debug("dns: write answer", "error", err)
	}
}

func (p *Proxy) answer(ctx context.Context, req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	if req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		return m.SetRcode(req, dns.RcodeFormatError)
	}
	q := req.Question[0]
	qtype := dns.TypeToString[q.Qtype]
	if q.Qclass != dns.ClassINET {
		p.gate.Refused(q.Name, qtype, "class "+dns.ClassToString[q.Qclass])
		return m.SetRcode(req, dns.RcodeRefused)
	}
	if !p.gate.Allowed(q.Name) {
		p.gate.Refused(q.Name, qtype, "not allowlisted")
		return m.SetRcode(req, dns.RcodeNameError)
	}
	switch q.Qtype {
	case dns.TypeA, dns.TypeCNAME:
	case dns.TypeAAAA:
		// IPv6 is denied: an empty answer makes clients fall back to IPv4
		// at once instead of timing out.
		m.SetReply(req)
		m.RecursionAvailable = true
		return m
	default:
		p.gate.Refused(q.Name, qtype, "only A, AAAA and CNAME are served")
		return m.SetRcode(req, dns.RcodeRefused)
	}
	// A bound refusal is REFUSED, as the rate limit's is, not NXDOMAIN:
	// the name may exist, and a resolver must not cache it as absent.
	// It is asked before the rate limit so that a flood of new names
	// refused here does not use up the tokens of the names still served.
	if why, ok := p.gate.Forward(q.Name); !ok {
		p.gate.Refused(q.Name, qtype, why)
		return m.SetRcode(req, dns.RcodeRefused)
	}
	// Only what goes upstream is limited: everything else is answered here.
	if !p.limit.take(time.Now()) {
		p.gate.Refused(q.Name, qtype, "rate limit")
		return m.SetRcode(req, dns.RcodeRefused)
	}
	// One spelling of the name goes upstream: its letter case would
	// otherwise carry a bit a letter to the zone's servers.
	up, err := p.exchange(ctx, dns.Question{Name: dns.CanonicalName(q.Name), Qtype: q.Qtype, Qclass: q.Qclass})
	if err != nil {
		p.cfg.Log.Warn("dns: upstream failed", "name", q.Name, "error", err)
		return m.SetRcode(req, dns.RcodeServerFailure)
	}
	return p.filter(ctx, req, up)
}

// filter keeps the CNAME chain from the question and the A records at its
// end, has those addresses admitted, and builds the reply from what was.
func (p *Proxy) filter(ctx context.Context, req, up *dns.Msg) *dns.Msg {
	q := req.Question[0]
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	m.Rcode = up.Rcode
	chain, cnames := cnameChain(q.Name, up.Answer)
	var as []*dns.A
	var addrs []netip.Addr
	minTTL := uint32(0)
	for _, rr := range up.Answer {
		a, ok := rr.(*dns.A)
		if !ok || !chain[dns.CanonicalName(a.Hdr.Name)] {
			continue
		}
		addr, ok := netip.AddrFromSlice(a.A.To4())
		if !ok {
			continue
		}
		as, addrs = append(as, a), append(addrs, addr)
		if minTTL == 0 || a.Hdr.Ttl < minTTL {
			minTTL = a.Hdr.Ttl
		}
	}
	admitted := map[netip.Addr]bool{}
	if len(addrs) > 0 {
		ok, err := p.gate.Admit(ctx, q.Name, addrs, time.Duration(minTTL)*time.Second)
		if err != nil {
			p.cfg.Log.Error("dns: could not install answer; refusing it", "name", q.Name, "error", err)
			return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
		}
		for _, a := range ok {
			admitted[a] = true
		}
	}
	maxTTL := uint32(p.cfg.MaxTTL / time.Second)
	clamp := func(rr dns.RR) dns.RR {
		rr = dns.Copy(rr)
		if maxTTL > 0 && rr.Header().Ttl > maxTTL {
			rr.Header().Ttl = maxTTL
		}
		return rr
	}
	for _, c := range cnames {
		m.Answer = append(m.Answer, clamp(c))
	}
	for i, a := range as {
		if admitted[addrs[i]] {
			m.Answer = append(m.Answer, clamp(a))
		}
	}
	return m
}

// cnameChain returns the names reachable from qname through the answer's
// CNAMEs (qname included) and those CNAME records. CNAMEs may come in any
// order, so it follows them until the chain stops growing; a record outside
// the chain (glue an upstream added) is never part of it.
func cnameChain(qname string, answer []dns.RR) (map[string]bool, []dns.RR) {
	chain := map[string]bool{dns.CanonicalName(qname): true}
	var cnames []dns.RR
	for grew := true; grew; {
		grew = false
		for _, rr := range answer {
			if c, ok := rr.(*dns.CNAME); ok && chain[dns.CanonicalName(c.Hdr.Name)] && !chain[dns.CanonicalName(c.Target)] {
				chain[dns.CanonicalName(c.Target)] = true
				cnames = append(cnames, c)
				grew = true
			}
		}
	}
	return chain, cnames
}

// exchange asks the upstreams in order, over TCP when UDP comes back truncated.
func (p *Proxy) exchange(ctx context.Context, q dns.Question) (*dns.Msg, error) {
	req := new(dns.Msg)
	req.SetQuestion(q.Name, q.Qtype)
	req.RecursionDesired = true
	var errs []error
	for _, up := range p.cfg.Upstreams {
		r, _, err := p.udp.ExchangeContext(ctx, req, up)
		if err == nil && r.Truncated {
			r, _, err = p.tcp.ExchangeContext(ctx, req, up)
		}
		if err == nil {
			if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
				errs = append(errs, fmt.Errorf("%s: %s", up, dns.RcodeToString[r.Rcode]))
				continue
			}
			return r, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
	}
	return nil, errors.Join(errs...)
}

// Resolve looks name up upstream (A records, CNAMEs followed) for the
// proactive refresh, and returns its addresses and the smallest TTL.
func (p *Proxy) Resolve(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	up, err := p.exchange(ctx, dns.Question{Name: dns.Fqdn(name), Qtype: dns.TypeA, Qclass: dns.ClassINET})
	if err != nil {
		return nil, 0, err
	}
	if up.Rcode != dns.RcodeSuccess {
		return nil, 0, fmt.Errorf("resolve %s: %s", name, dns.RcodeToString[up.Rcode])
	}
	chain, _ := cnameChain(name, up.Answer)
	var addrs []netip.Addr
	var ttl uint32
	for _, rr := range up.Answer {
		if a, ok := rr.(*dns.A); ok && chain[dns.CanonicalName(a.Hdr.Name)] {
			if addr, ok := netip.AddrFromSlice(a.A.To4()); ok {
				addrs = append(addrs, addr)
				if ttl == 0 || a.Hdr.Ttl < ttl {
					ttl = a.Hdr.Ttl
				}
			}
		}
	}
	return addrs, time.Duration(ttl) * time.Second, nil
}

// Gate ports are taken from the privileged range, below the kernel's
// ip_unprivileged_port_start (1024 unless an admin lowered it): while the
// daemon is down (a restart, a crash), no local user can bind the port a
// sandbox's DNS rules point at and answer its queries.
const (
	GatePortFirst = 512
	GatePortLast  = 1023
)

// Listen opens the gate's UDP and TCP sockets on addr:port; port 0 picks a
// free one from the privileged gate range, starting at a random place so
// that sandboxes spread over it. Ports other services hold are skipped.
func Listen(addr netip.Addr, port int) (net.PacketConn, net.Listener, error) {
	if port != 0 {
		return listenPair(addr, port)
	}
	last := GatePortLast
	if start, ok := UnprivilegedPortStart(); ok && start-1 < last {
		last = start - 1
	}
	if last < GatePortFirst {
		return nil, nil, fmt.Errorf("dns proxy: net.ipv4.ip_unprivileged_port_start is %d, so no gate port is safe from other users; set it to 1024", last+1)
	}
	known := servicePorts("/etc/services")
	n := last - GatePortFirst + 1
	first := rand.IntN(n)
	var lastErr error
	for i := 0; i < n; i++ {
		port := GatePortFirst + (first+i)%n
		if known[port] {
			// Left to the service that owns it: a gate bound on the
			// gateway address would make its later wildcard bind fail.
			continue
		}
		pc, ln, err := listenPair(addr, port)
		if err == nil {
			return pc, ln, nil
		}
		lastErr = err
	}
	return nil, nil, fmt.Errorf("dns proxy: no port free on %s in %d-%d for both UDP and TCP (last: %v)", addr, GatePortFirst, last, lastErr)
}

// UnprivilegedPortStart is net.ipv4.ip_unprivileged_port_start: ports below
// it need CAP_NET_BIND_SERVICE.
func UnprivilegedPortStart() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}

// servicePorts are the ports services(5) names: "domain 53/tcp".
func servicePorts(path string) map[int]bool {
	out := map[int]bool{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		port, _, _ := strings.Cut(f[1], "/")
		if n, err := strconv.Atoi(port); err == nil {
			out[n] = true
		}
	}
	return out
}

func listenPair(addr netip.Addr, port int) (net.PacketConn, net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	ctx := context.Background()
	hostport := net.JoinHostPort(addr.String(), strconv.Itoa(port))
	pc, err := lc.ListenPacket(ctx, "udp4", hostport)
	if err != nil {
		return nil, nil, fmt.Errorf("dns proxy: listen udp %s: %w", hostport, err)
	}
	// The same port for TCP (port 0 lets the kernel pick UDP's).
	hostport = pc.LocalAddr().String()
	ln, err := lc.Listen(ctx, "tcp4", hostport)
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("dns proxy: listen tcp %s: %w", hostport, err)
	}
	return pc, ln, nil
}

// Serve answers on pc and ln until ctx ends, taking in at most MaxInFlight
// queries at once and QueryRate a second.
//
// Over either cap a UDP query goes unanswered: over the rate it is left to
// the kernel, over MaxInFlight it is dropped as it is read (admitReader
// says why each). An answer (SERVFAIL, REFUSED) would cost a reply and
// invite the next query at once: a client that waits for its answer before
// it asks again, as every stub resolver does, would flood exactly as fast
// as the gate can refuse it. Unanswered, it waits out its timeout (glibc:
// 5 s) before it retries, which is the only back-off DNS clients have.
// Either way the query is turned away before miekg/dns would start a
// goroutine for it, so a flood cannot pile up goroutines either. A TCP
// query over a cap has its connection closed instead: the client learns at
// once and pays a new handshake to ask again.
func (p *Proxy) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	// A UDP packet holds a place from the read loop (admitReader) until
	// miekg/dns is done with it, which is one of: the handler returns, the
	// message is rejected by its header (MsgAcceptFunc says so, and
	// miekg/dns answers or drops it itself), or it does not parse
	// (MsgInvalidFunc). Each packet takes exactly one of these ways;
	// TestEveryUDPPacketGivesBackItsPlace holds miekg/dns to it.
	udp := &dns.Server{
		PacketConn: pc,
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			defer p.intake.done()
			p.ServeDNS(w, r)
		}),
		DecorateReader: func(next dns.Reader) dns.Reader { return newAdmitReader(next, p.intake, &p.shed.dropped) },
		MsgAcceptFunc: func(h dns.Header) dns.MsgAcceptAction {
			action := dns.DefaultMsgAcceptFunc(h)
			if action != dns.MsgAccept {
				p.intake.done()
			}
			return action
		},
		MsgInvalidFunc: func([]byte, error) { p.intake.done() },
	}
	// TCP is bounded by its connections: miekg/dns serves each with one
	// goroutine, one query after the other, so at most MaxTCPConns
	// queries and goroutines; they share the intake with UDP.
	setBacklog(ln, p.cfg.MaxTCPConns)
	tcp := &dns.Server{
		Listener: &capListener{Listener: ln, max: int64(p.cfg.MaxTCPConns), timeout: p.cfg.TCPIdle, reset: &p.shed.reset,
			rate: newBucket(p.cfg.TCPConnRate, max(1, int(p.cfg.TCPConnRate)))},
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			if !p.intake.take(time.Now()) {
				p.shed.dropped.Add(1)
				_ = w.Close()
				return
			}
			defer p.intake.done()
			p.ServeDNS(w, r)
		}),
		// A whole query must arrive within TCPIdle of the connection
		// opening or of the last answer (miekg/dns sets the deadline
		// once per message, so trickling bytes does not extend it): a
		// client that holds connections open and sends nothing, or a
		// byte at a time, holds them that long and no longer.
		ReadTimeout:   p.cfg.TCPIdle,
		IdleTimeout:   func() time.Duration { return p.cfg.TCPIdle },
		MaxTCPQueries: p.cfg.MaxTCPQueries,
	}
	servers := []*dns.Server{udp, tcp}
	reportCtx, stopReport := context.WithCancel(ctx)
	reported := make(chan struct{})
	go func() { p.report(reportCtx, pc); close(reported) }()
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ActivateAndServe() }()
	}
	var err error
	running := len(servers)
	select {
	case <-ctx.Done():
	case err = <-errc:
		running--
		err = fmt.Errorf("dns proxy: %w", err)
	}
	// The last report reads the UDP socket's drops, so it comes before
	// the socket is closed.
	stopReport()
	<-reported
	// Shutdown alone is not enough: on a server that has not started yet
	// it does nothing, and the server would then start and answer for a
	// sandbox that is gone. Closing the sockets ends a server whether it
	// has started or not; Serve returns once every one has.
	pc.Close()
	ln.Close()
	for _, s := range servers {
		_ = s.Shutdown()
	}
	for ; running > 0; running-- {
		<-errc
	}
	return err
}

// bucket is a token bucket: rate tokens a second, up to burst.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// reserve takes a token if there is one and returns 0, or returns how long
// until there is one (never 0).
func (b *bucket) reserve(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return max(time.Nanosecond, time.Duration((1-b.tokens)/b.rate*float64(time.Second)))
	}
	b.tokens--
	return 0
}

// take takes a token if there is one.
func (b *bucket) take(now time.Time) bool { return b.reserve(now) == 0 }
