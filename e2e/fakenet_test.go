package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/clawguard/clawguard/internal/fakecdn"
	"github.com/clawguard/clawguard/netrules"
)

// fakeNet is the suite's own internet: a network namespace joined to the host
// by a veth pair, holding a DNS server and TCP servers on documentation and
// benchmark addresses. The host routes only those ranges (and one metadata
// and one private test address) there, so nothing a sandbox does can leave the
// machine even if enforcement were broken.
type fakeNet struct {
	ns        netns.NsHandle
	dns       *fakeDNS
	listeners []net.Listener
	discard   net.Listener
	cdn       []net.Listener
	api       *fakeAPI
	apiLn     net.Listener
	servers   []*dns.Server
}

const (
	fakeNSName   = "cge2e-inet"
	fakeHostVeth = "cgeinet0"
	// Addresses inside the fake internet.
	fakeDNSAddr   = "198.51.100.53"
	apiAddr       = "198.51.100.10" // api.example.test
	api2Addr      = "198.51.100.11" // its replacement in the DNS change test
	deniedAddr    = "198.51.100.12" // never allowlisted
	metadataAddr  = "169.254.169.254"
	privateAddr   = "10.77.0.10"
	fakeV6Addr    = "2001:db8:1::10"
	racePoolFirst = 100 // 198.51.100.100 - .199
	racePoolSize  = 100
)

// Ports every fake host serves plain text on ("hello from ADDR");
// discardPort swallows what it is sent.
var fakePorts = []int{80, 8080}

const discardPort = 9000

// cdnPorts are where every fake host is a CDN in miniature (fakecdn): TLS
// for any server name, answering with the name it was asked for, and plain
// text to whatever does not start a TLS handshake: 443, as on the real
// internet, and cdnPort, a TLS port only a profile's tls: true puts behind
// the name gate.
var cdnPorts = []int{443, cdnPort}

const cdnPort = 4443

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func startFakeNet() (*fakeNet, error) {
	_ = run("ip", "netns", "del", fakeNSName) // a crashed earlier run
	in := func(args ...string) error {
		return run(append([]string{"ip", "netns", "exec", fakeNSName}, args...)...)
	}
	steps := [][]string{
		{"ip", "netns", "add", fakeNSName},
		{"ip", "link", "add", fakeHostVeth, "type", "veth", "peer", "name", "cgeinet1"},
		{"ip", "link", "set", "cgeinet1", "netns", fakeNSName},
		{"ip", "addr", "add", "198.18.0.1/30", "dev", fakeHostVeth},
		{"ip", "-6", "addr", "add", "2001:db8:ffff::1/64", "dev", fakeHostVeth, "nodad"},
		{"ip", "link", "set", fakeHostVeth, "up"},
		{"ip", "route", "add", "198.51.100.0/24", "via", "198.18.0.2"},
		{"ip", "route", "add", metadataAddr + "/32", "via", "198.18.0.2"},
		{"ip", "route", "add", "10.77.0.0/24", "via", "198.18.0.2"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return nil, err
		}
	}
	inside := [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "set", "cgeinet1", "name", "eth0"},
		{"ip", "addr", "add", "198.18.0.2/30", "dev", "eth0"},
		{"ip", "-6", "addr", "add", "2001:db8:ffff::2/64", "dev", "eth0", "nodad"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "route", "add", "default", "via", "198.18.0.1"},
		{"ip", "addr", "add", "198.51.100.0/24", "dev", "lo"},
		{"ip", "addr", "add", metadataAddr + "/32", "dev", "lo"},
		{"ip", "addr", "add", privateAddr + "/32", "dev", "lo"},
		{"ip", "-6", "addr", "add", fakeV6Addr + "/128", "dev", "lo"},
	}
	for _, s := range inside {
		if err := in(s...); err != nil {
			return nil, err
		}
	}
	if err := run("ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:ffff::2"); err != nil {
		return nil, err
	}
	ns, err := netns.GetFromName(fakeNSName)
	if err != nil {
		return nil, err
	}
	f := &fakeNet{ns: ns, dns: newFakeDNS()}
	err = f.inNS(func() error {
		for _, port := range fakePorts {
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				return err
			}
			f.listeners = append(f.listeners, ln)
		}
		dl, err := net.Listen("tcp", fmt.Sprintf(":%d", discardPort))
		if err != nil {
			return err
		}
		f.discard = dl
		for _, port := range cdnPorts {
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				return err
			}
			f.cdn = append(f.cdn, ln)
		}
		if f.apiLn, err = net.Listen("tcp", fmt.Sprintf(":%d", apiPort)); err != nil {
			return err
		}
		pc, err := net.ListenPacket("udp", fakeDNSAddr+":53")
		if err != nil {
			return err
		}
		tl, err := net.Listen("tcp", fakeDNSAddr+":53")
		if err != nil {
			return err
		}
		f.servers = []*dns.Server{{PacketConn: pc, Handler: f.dns}, {Listener: tl, Handler: f.dns}}
		return nil
	})
	if err != nil {
		f.close()
		return nil, err
	}
	for _, ln := range f.listeners {
		go serveHello(ln)
	}
	go serveDiscard(f.discard)
	cert, err := fakecdn.Certificate("*.example.test")
	if err != nil {
		f.close()
		return nil, err
	}
	for _, ln := range f.cdn {
		go fakecdn.Serve(ln, cert)
	}
	if f.api, err = startFakeAPI(f.apiLn, filepath.Join(os.TempDir(), fmt.Sprintf("cge2e-api-ca-%d.pem", os.Getpid()))); err != nil {
		f.close()
		return nil, err
	}
	for _, s := range f.servers {
		go s.ActivateAndServe() //nolint:errcheck
	}
	return f, nil
}

// inNS runs fn inside the fake namespace; sockets made there stay there.
func (f *fakeNet) inNS(fn func() error) error { return netrules.InNetNS(f.ns, fn) }

// serveConns runs handle on every connection ln accepts, until ln closes.
func serveConns(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

// serveHello answers every connection with the address and port it reached.
func serveHello(ln net.Listener) {
	serveConns(ln, func(c net.Conn) { fmt.Fprintf(c, "hello from %s\n", c.LocalAddr()) })
}

// hostSend connects from the host, writes msg and returns the answer.
func hostSend(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(c, 256))
	return string(b), err
}

// hostTLS is the host's own TLS connection to addr naming serverName: the
// control that the CDN serves it when no gate is in the way.
func hostTLS(addr, serverName string) (string, error) {
	raw, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(3 * time.Second))
	c := tls.Client(raw, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}) //nolint:gosec // a test server's own certificate
	if err := c.Handshake(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// serveDiscard reads and drops everything, for throughput measurements.
func serveDiscard(ln net.Listener) {
	serveConns(ln, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
}

func (f *fakeNet) close() {
	for _, s := range f.servers {
		_ = s.Shutdown()
	}
	for _, ln := range f.listeners {
		ln.Close()
	}
	if f.discard != nil {
		f.discard.Close()
	}
	if f.api != nil {
		f.api.srv.Close()
		os.Remove(f.api.caFile)
	} else if f.apiLn != nil {
		f.apiLn.Close()
	}
	for _, ln := range f.cdn {
		ln.Close()
	}
	if f.ns.IsOpen() {
		f.ns.Close()
	}
	_ = run("ip", "netns", "del", fakeNSName) // takes the veth pair and its routes with it
}

// fakeDNS is the fake internet's authoritative and recursive server in one:
// names answer from a table the tests change, and every question is recorded.
type fakeDNS struct {
	mu     sync.Mutex
	zone   map[string]zoneEntry
	seen   []string
	rotate map[string]int
}

type zoneEntry struct {
	ttl   uint32
	addrs []string
	txt   string
	pool  []string // answers rotate through the pool, one address each
}

func newFakeDNS() *fakeDNS {
	d := &fakeDNS{zone: map[string]zoneEntry{}, rotate: map[string]int{}}
	var pool []string
	for i := 0; i < racePoolSize; i++ {
		pool = append(pool, fmt.Sprintf("198.51.100.%d", racePoolFirst+i))
	}
	d.set("api.example.test", 300, apiAddr)
	// The built-in OpenClaw profile's allowlist, served by the fake API.
	d.set("api.anthropic.com", 300, apiAddr)
	d.set("api.openai.com", 300, apiAddr)
	d.set("other.example.test", 300, deniedAddr)
	d.set("cdn-b.example.test", 300, api2Addr)
	d.set(apiHost, 300, api2Addr)
	d.set("evil.example.org", 300, deniedAddr)
	d.set("meta.example.test", 300, metadataAddr)
	d.set("private.example.test", 300, privateAddr)
	d.set("loop.example.test", 300, "127.0.0.1")
	d.zone["race.example.test"] = zoneEntry{ttl: 1, pool: pool}
	d.zone["api.example.test"] = zoneEntry{ttl: 300, addrs: []string{apiAddr}, txt: "v=spf1 -all"}
	return d
}

func (d *fakeDNS) set(name string, ttl uint32, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.zone[name]
	e.ttl, e.addrs = ttl, addrs
	d.zone[name] = e
}

// asked reports whether any question for name (or a subdomain) arrived.
func (d *fakeDNS) asked(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range d.seen {
		if q == name || strings.HasSuffix(q, "."+name) {
			return true
		}
	}
	return false
}

// timesAsked counts the questions for exactly name.
func (d *fakeDNS) timesAsked(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, q := range d.seen {
		if q == name {
			n++
		}
	}
	return n
}

func (d *fakeDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg).SetReply(r)
	if len(r.Question) != 1 {
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeFormatError))
		return
	}
	q := r.Question[0]
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	d.mu.Lock()
	d.seen = append(d.seen, name)
	e, ok := d.zone[name]
	var addrs []string
	if ok && len(e.pool) > 0 {
		addrs = []string{e.pool[d.rotate[name]%len(e.pool)]}
		d.rotate[name]++
	} else {
		addrs = e.addrs
	}
	d.mu.Unlock()
	if !ok {
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeNameError))
		return
	}
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: e.ttl}
	switch q.Qtype {
	case dns.TypeA:
		for _, a := range addrs {
			h := hdr
			h.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: h, A: net.ParseIP(a)})
		}
	case dns.TypeTXT:
		h := hdr
		h.Rrtype = dns.TypeTXT
		m.Answer = append(m.Answer, &dns.TXT{Hdr: h, Txt: []string{e.txt}})
	}
	_ = w.WriteMsg(m)
}

// hostConnect is the control case: the same destination, from the host,
// where no clawguard rule applies.
func hostConnect(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 128)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// hostDNS asks the fake DNS server directly from the host.
func hostDNS(name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, fakeDNSAddr+":53")
	return r, err
}
