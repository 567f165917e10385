package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstream is a real DNS server on loopback with a fixed zone; it records
// every question it is asked.
type upstream struct {
	addr string
	mu   sync.Mutex
	seen []string
	raw  []string // the names as asked, case and all
	zone map[string][]dns.RR
}

func startUpstream(t *testing.T, records ...string) *upstream {
	t.Helper()
	u := &upstream{zone: map[string][]dns.RR{}}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		u.zone[dns.CanonicalName(rr.Header().Name)] = append(u.zone[dns.CanonicalName(rr.Header().Name)], rr)
	}
	u.addr = serveUDP(t, u)
	return u
}

// serveUDP serves DNS with h on a loopback UDP port until the test ends,
// and returns its address.
func serveUDP(t testing.TB, h dns.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe() //nolint:errcheck
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func (u *upstream) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	u.mu.Lock()
	u.seen = append(u.seen, dns.TypeToString[q.Qtype]+" "+dns.CanonicalName(q.Name))
	u.raw = append(u.raw, q.Name)
	u.mu.Unlock()
	m := new(dns.Msg).SetReply(r)
	// Answer like a recursive resolver: follow CNAMEs inside the zone.
	name := dns.CanonicalName(q.Name)
	for i := 0; i < 8; i++ {
		rrs := u.zone[name]
		if len(rrs) == 0 {
			break
		}
		next := ""
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok {
				m.Answer = append(m.Answer, c)
				next = dns.CanonicalName(c.Target)
			} else if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	if len(m.Answer) == 0 && len(u.zone[dns.CanonicalName(q.Name)]) == 0 {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

func (u *upstream) questions() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

// gate allows names by suffix, drops 10.x answers, and records admissions.
type gate struct {
	mu       sync.Mutex
	allow    []string
	admitted []netip.Addr
	ttls     []time.Duration
	refused  []string
	asked    []string // names Forward was asked about
	full     string   // if set, Forward refuses with it
	fail     error
	release  chan struct{} // if set, Admit waits for it
	inAdmit  chan struct{}
}

func (g *gate) Allowed(name string) bool {
	for _, a := range g.allow {
		if strings.TrimSuffix(strings.ToLower(name), ".") == a {
			return true
		}
	}
	return false
}

func (g *gate) Forward(name string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked = append(g.asked, strings.TrimSuffix(name, "."))
	return g.full, g.full == ""
}

func (g *gate) Admit(_ context.Context, name string, addrs []netip.Addr, ttl time.Duration) ([]netip.Addr, error) {
	if g.inAdmit != nil {
		close(g.inAdmit)
	}
	if g.release != nil {
		<-g.release
	}
	if g.fail != nil {
		return nil, g.fail
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var ok []netip.Addr
	for _, a := range addrs {
		if !netip.MustParsePrefix("10.0.0.0/8").Contains(a) {
			ok = append(ok, a)
		}
	}
	g.admitted = append(g.admitted, ok...)
	g.ttls = append(g.ttls, ttl)
	return ok, nil
}

// seen copies what the proxy told the gate, under its lock: the proxy calls
// it on a server goroutine, and the reply reaching the test does not order
// that for the race detector.
func (g *gate) seen() (admitted []netip.Addr, ttls []time.Duration, refused []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.admitted), slices.Clone(g.ttls), slices.Clone(g.refused)
}

func (g *gate) Refused(name, qtype, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refused = append(g.refused, qtype+" "+strings.TrimSuffix(name, ".")+": "+reason)
}

// loopbackPair is a UDP and a TCP socket on one free loopback port: the
// gate's range needs root, these tests do not.
func loopbackPair(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for try := 0; ; try++ {
		pc, ln, err := listenPair(netip.MustParseAddr("127.0.0.1"), 0)
		if err == nil {
			return pc, ln
		}
		if try == 20 {
			t.Fatal(err)
		}
	}
}

// serve starts the proxy on loopback and returns its address.
func serve(t *testing.T, cfg Config, g Gate) string {
	t.Helper()
	_, addr := start(t, cfg, g)
	return addr
}

// start starts the proxy on loopback and returns it and its address (the
// same port for UDP and TCP).
func start(t testing.TB, cfg Config, g Gate) (*Proxy, string) {
	t.Helper()
	p, err := New(cfg, g)
	if err != nil {
		t.Fatal(err)
	}
	pc, _ := run(t, p)
	return p, pc.LocalAddr().String()
}

// run serves p on loopback until the test ends and returns its sockets.
func run(t testing.TB, p *Proxy) (net.PacketConn, net.Listener) {
	t.Helper()
	pc, ln := loopbackPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Serve(ctx, pc, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return pc, ln
}

func query(t *testing.T, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, server)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func answerAddrs(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

var zone = []string{
	"api.example.com. 300 IN A 198.51.100.10",
	"api.example.com. 300 IN A 198.51.100.11",
	"cdn.example.com. 60 IN CNAME edge.cdn.test.",
	"edge.cdn.test. 20 IN A 198.51.100.20",
	"mixed.example.com. 300 IN A 198.51.100.30",
	"mixed.example.com. 300 IN A 10.1.2.3",
	"long.example.com. 86400 IN A 198.51.100.40",
	"api.example.com. 300 IN TXT \"hello\"",
	"evil.test. 300 IN A 198.51.100.66",
}

func TestAllowedNameIsForwardedAndItsAddressesAdmitted(t *testing.T) {
	up := startUpstream(t, zone...)
	g := &gate{allow: []string{"api.example.com"}}
	srv := serve(t, Config{Upstreams: []string{up.addr}}, g)
	r := query(t, srv, "api.example.com", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || !slices.Equal(answerAddrs(r), []string{"198.51.100.10", "198.51.100.11"}) {
		t.Fatalf("answer %v", r)
	}
	if admitted, ttls, _ := g.seen(); len(admitted) != 2 || ttls[0] != 300*time.Second {
		t.Fatalf("admitted %v ttls %v", admitted, ttls)
	}
}

// TestUpstreamIsAskedInLowerCase: the letter case of a name is 2^n
// spellings of one name, each a message to the zone's servers (0x20
// encoding). The upstream gets one spelling; the agent still gets its own
// question back, answered.
func TestUpstreamIsAskedInLowerCase(t *testing.T) {
	up := startUpstream(t, zone...)
	g := &gate{allow: []string{"api.example.com"}}
	srv := serve(t, Config{Upstreams: []string{up.addr}}, g)
	r := query(t, srv, "ApI.eXaMpLe.CoM", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(answerAddrs(r)) != 2 || r.Question[0].Name != "ApI.eXaMpLe.CoM." {
		t.Fatalf("answer %v", r)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if !slices.Equal(up.raw, []string{"api.example.com."}) {
		t.Fatalf("the upstream was asked %v", up.raw)
	}
}

func TestAnswerIsReleasedOnlyAfterAdmitReturns(t *testing.T) {
	up := startUpstream(t, zone...)
	g := &gate{allow: []string{"api.example.com"}, release: make(chan struct{}), inAdmit: make(chan struct{})}
	srv := serve(t, Config{Upstreams: []string{up.addr}}, g)
	got := make(chan *dns.Msg, 1)
	go func() { got <- query(t, srv, "api.example.com", dns.TypeA) }()
	<-g.inAdmit
	select {
	case r := <-got:
		t.Fatalf("answer released while addresses were still being installed: %v", r)
	case <-time.After(300 * time.Millisecond):
	}
	close(g.release)
	if r := <-got; len(answerAddrs(r)) != 2 {
		t.Fatalf("answer %v", r)
	}
}

func TestFailedInstallAnswersServfail(t *testing.T) {
	up := startUpstream(t, zone...)
	g := &gate{allow: []string{"api.example.com"}, fail: errors.New("set full")}
	srv := serve(t, Config{Upstreams: []string{up.addr}}, g)
	if r := query(t, srv, "api.example.com", dns.TypeA); r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Fatalf("answer %v", r)
	}
}

func TestRefusedQueriesNeverReachUpstream(t *testing.T) {
	tests := []struct {
		name  string
		qname string
		qtype uint16
		rcode int
	}{
		{"name not allowlisted", "evil.test", dns.TypeA, dns.RcodeNameError},
		{"subdomain of an allowlisted name", "x.api.example.com", dns.TypeA, dns.RcodeNameError},
		{"TXT for an allowlisted name", "api.example.com", dns.TypeTXT, dns.RcodeRefused},
		{"ANY", "api.example.com", dns.TypeANY, dns.RcodeRefused},
		{"MX", "api.example.com", dns.TypeMX, dns.RcodeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, zone...)
			g := &gate{allow: []string{"api.example.com"}}
			srv := serve(t, Config{Upstreams: []string{up.addr}}, g)
			r := query(t, srv, tt.qname, tt.qtype)
			if r.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			if q := up.questions(); len(q) != 0 {
				t.Fatalf("upstream was asked %v", q)
			}
			if _, _, refused := g.seen(); len(refused) != 1 {
				t.Fatalf("refusals recorded: %v", refused)
			}
		})
	}
}

// A wildcard with no room left refuses a name the policy allows: REFUSED
// (the name may exist; it must not be cached as absent), with the gate's
// reason, and nothing asked upstream. Queries answered here (AAAA, names not
// allowlisted) are never put to Forward, so they use up none of its room.
func TestABoundRefusalNeverReachesUpstream(t *testing.T) {
	up := startUpstream(t, zone...)
	g := &gate{allow: []string{"api.example.com"}, full: "wildcard *.example.com holds 1000 names (max_names)"}
	srv := serve(t, Config{Upstreams: []string{up.addr}}, g)
	if r := query(t, srv, "api.example.com", dns.TypeA); r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
		t.Fatalf("answer %v", r)
	}
	query(t, srv, "api.example.com", dns.TypeAAAA)
	query(t, srv, "evil.test", dns.TypeA)
	if q := up.questions(); len(q) != 0 {
		t.Fatalf("upstream was asked %v", q)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !slices.Equal(g.asked, []string{"api.example.com"}) {
		t.Errorf("Forward was asked about %v, want only the A query", g.asked)
	}
	if len(g.refused) != 2 || g.refused[0] != "A api.example.com: "+g.full {
		t.Errorf("refusals %v, want the gate's reason first", g.refused)
	}
}

func TestAAAAIsAnsweredEmptyWithoutUpstream(t *testing.T) {
	up := startUpstream(t, zone...)
	srv := serve(t, Config{Upstreams: []string{up.addr}}, &gate{allow: []string{"api.example.com"}})
	r := query(t, srv, "api.example.com", dns.TypeAAAA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(up.questions()) != 0 {
		t.Fatalf("answer %v, upstream asked %v", r, up.questions())
	}
}

func TestCNAMEChainIsFollowedAndTTLsClamped(t *testing.T) {
	up := startUpstream(t, zone...)
	g := &gate{allow: []string{"cdn.example.com", "long.example.com"}}
	srv := serve(t, Config{Upstreams: []string{up.addr}, MaxTTL: time.Hour}, g)
	r := query(t, srv, "cdn.example.com", dns.TypeA)
	if !slices.Equal(answerAddrs(r), []string{"198.51.100.20"}) || len(r.Answer) != 2 {
		t.Fatalf("answer %v", r)
	}
	if _, ttls, _ := g.seen(); ttls[0] != 20*time.Second {
		t.Fatalf("ttl passed to Admit %v, want the A record's 20s", ttls[0])
	}
	r = query(t, srv, "long.example.com", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 3600 {
		t.Fatalf("ttl not clamped to max_ttl: %v", r)
	}
}

func TestAddressesTheGateDropsAreRemovedFromTheAnswer(t *testing.T) {
	up := startUpstream(t, zone...)
	srv := serve(t, Config{Upstreams: []string{up.addr}}, &gate{allow: []string{"mixed.example.com"}})
	if got := answerAddrs(query(t, srv, "mixed.example.com", dns.TypeA)); !slices.Equal(got, []string{"198.51.100.30"}) {
		t.Fatalf("answer addresses %v", got)
	}
}

func TestRateLimitRefusesFloods(t *testing.T) {
	up := startUpstream(t, zone...)
	g := &gate{allow: []string{"api.example.com"}}
	srv := serve(t, Config{Upstreams: []string{up.addr}, RateLimit: 1, Burst: 3}, g)
	refused := 0
	for i := 0; i < 10; i++ {
		if query(t, srv, "api.example.com", dns.TypeA).Rcode == dns.RcodeRefused {
			refused++
		}
	}
	if refused < 6 {
		t.Fatalf("only %d of 10 queries refused with a burst of 3", refused)
	}
}

func TestUnreachableUpstreamAnswersServfail(t *testing.T) {
	// Nothing listens on port 9 of loopback.
	srv := serve(t, Config{Upstreams: []string{"127.0.0.1:9"}, Timeout: 300 * time.Millisecond}, &gate{allow: []string{"api.example.com"}})
	if r := query(t, srv, "api.example.com", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
}

func TestResolveFollowsCNAMEs(t *testing.T) {
	up := startUpstream(t, zone...)
	p, err := New(Config{Upstreams: []string{up.addr}}, &gate{})
	if err != nil {
		t.Fatal(err)
	}
	addrs, ttl, err := p.Resolve(context.Background(), "cdn.example.com")
	if err != nil || len(addrs) != 1 || addrs[0].String() != "198.51.100.20" || ttl != 20*time.Second {
		t.Fatalf("%v %v %v", addrs, ttl, err)
	}
}

// A gate stopped before its servers have started must not start serving
// afterwards: Serve returns with both sockets closed, so the ports are free
// again and nothing answers for a sandbox that is gone. Repeated, since the
// window is the scheduler's.
func TestAGateStoppedDuringStartUpNeverServes(t *testing.T) {
	up := startUpstream(t, zone...)
	p, err := New(Config{Upstreams: []string{up.addr}}, &gate{allow: []string{"api.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		pc, ln := loopbackPair(t)
		ctx, cancel := context.WithCancel(context.Background())
		if i%2 == 0 {
			cancel() // before Serve: nothing has started
		} else {
			time.AfterFunc(time.Duration(i)*10*time.Microsecond, cancel)
		}
		done := make(chan error, 1)
		go func() { done <- p.Serve(ctx, pc, ln) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: Serve did not return after its context ended", i)
		}
		cancel()
		// Closed: the very addresses can be bound again.
		pc2, err := net.ListenPacket("udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatalf("round %d: the UDP socket is still open after Serve returned: %v", i, err)
		}
		pc2.Close()
		ln2, err := net.Listen("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("round %d: the TCP socket is still open after Serve returned: %v", i, err)
		}
		ln2.Close()
	}
}
