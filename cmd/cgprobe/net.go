package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/clawguard/clawguard/internal/fakecdn"
)

// netCheck runs the network subcommands; each prints one JSON value.
func netCheck(args []string) (any, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("missing network check")
	}
	switch args[0] {
	case "resolve": // resolve NAME
		if len(args) != 2 {
			return nil, fmt.Errorf("usage: resolve NAME")
		}
		return resolve(args[1]), nil
	case "connect-from": // connect-from SRC HOST:PORT: bind the source address first
		if len(args) != 3 {
			return nil, fmt.Errorf("usage: connect-from SRC HOST:PORT")
		}
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(args[1])}}
		c, err := d.Dial("tcp", args[2])
		if err != nil {
			return Connected{Error: errString(err)}, nil
		}
		c.Close()
		return Connected{OK: true}, nil
	case "connect": // connect HOST:PORT [TIMEOUT [SEND]]: SEND is written before reading
		if len(args) < 2 {
			return nil, fmt.Errorf("usage: connect HOST:PORT [TIMEOUT [SEND]]")
		}
		timeout := 2 * time.Second
		if len(args) > 2 {
			d, err := time.ParseDuration(args[2])
			if err != nil {
				return nil, err
			}
			timeout = d
		}
		send := ""
		if len(args) > 3 {
			send = args[3]
		}
		return connect(args[1], timeout, send), nil
	case "tls": // tls HOST:PORT SERVER-NAME [TIMEOUT]: a TLS handshake naming SERVER-NAME ("" for none)
		if len(args) < 3 {
			return nil, fmt.Errorf("usage: tls HOST:PORT SERVER-NAME [TIMEOUT]")
		}
		timeout := 3 * time.Second
		if len(args) > 3 {
			d, err := time.ParseDuration(args[3])
			if err != nil {
				return nil, err
			}
			timeout = d
		}
		return tlsConnect(args[1], args[2], timeout), nil
	case "tlsodd": // tlsodd HOST:PORT SERVER-NAME split|big|stall|garbage [TIMEOUT]: a ClientHello a gate might not expect
		if len(args) < 4 {
			return nil, fmt.Errorf("usage: tlsodd HOST:PORT SERVER-NAME split|big|stall|garbage [TIMEOUT]")
		}
		timeout := 3 * time.Second
		if len(args) > 4 {
			d, err := time.ParseDuration(args[4])
			if err != nil {
				return nil, err
			}
			timeout = d
		}
		return tlsOdd(args[1], args[2], args[3], timeout)
	case "https": // https URL [NAME:VALUE]...: a GET with those headers, the system's trust (SSL_CERT_FILE) checking the server
		if len(args) < 2 {
			return nil, fmt.Errorf("usage: https URL [NAME:VALUE]...")
		}
		return httpsGet(args[1], args[2:]), nil
	case "httpsbench": // httpsbench BASE-URL N MIB EVENTS [NAME:VALUE]...: N requests on one kept-alive connection, a MIB MiB download, EVENTS server-sent events 50 ms apart
		if len(args) < 5 {
			return nil, fmt.Errorf("usage: httpsbench BASE-URL N MIB EVENTS [NAME:VALUE]...")
		}
		n, err1 := strconv.Atoi(args[2])
		mib, err2 := strconv.Atoi(args[3])
		events, err3 := strconv.Atoi(args[4])
		if err1 != nil || err2 != nil || err3 != nil || n < 1 || n > 100000 || mib < 0 || mib > 4096 || events < 0 || events > 10000 {
			return nil, fmt.Errorf("N must be 1-100000, MIB 0-4096, EVENTS 0-10000")
		}
		return httpsBench(args[1], n, mib, events, args[5:]), nil
	case "tlsbench": // tlsbench HOST:PORT SERVER-NAME N MIB [WORKERS]: N handshakes one after another, N more from WORKERS at once, then MIB uploaded over one
		if len(args) != 5 && len(args) != 6 {
			return nil, fmt.Errorf("usage: tlsbench HOST:PORT SERVER-NAME N MIB [WORKERS]")
		}
		n, err1 := strconv.Atoi(args[3])
		mib, err2 := strconv.Atoi(args[4])
		workers, err3 := 0, error(nil)
		if len(args) == 6 {
			workers, err3 = strconv.Atoi(args[5])
		}
		if err1 != nil || err2 != nil || err3 != nil || n < 1 || n > 100000 || mib < 0 || mib > 10000 || workers < 0 || workers > 256 {
			return nil, fmt.Errorf("N must be 1-100000, MIB 0-10000 and WORKERS 0-256")
		}
		return tlsBench(args[1], args[2], n, mib, workers), nil
	case "tlshold": // tlshold HOST:PORT SERVER-NAME N SECONDS: N TLS connections held open SECONDS
		if len(args) != 5 {
			return nil, fmt.Errorf("usage: tlshold HOST:PORT SERVER-NAME N SECONDS")
		}
		n, err1 := strconv.Atoi(args[3])
		secs, err2 := strconv.Atoi(args[4])
		if err1 != nil || err2 != nil || n < 1 || n > 100000 || secs < 0 || secs > 600 {
			return nil, fmt.Errorf("N must be 1-100000 and SECONDS 0-600")
		}
		return tlsHold(args[1], args[2], n, time.Duration(secs)*time.Second), nil
	case "dns": // dns SERVER:PORT NAME TYPE [udp|tcp] [SOURCE-PORT]
		if len(args) < 4 {
			return nil, fmt.Errorf("usage: dns SERVER:PORT NAME TYPE [udp|tcp] [SOURCE-PORT]")
		}
		netw, sport := "udp", 0
		if len(args) > 4 {
			netw = args[4]
		}
		if len(args) > 5 {
			p, err := strconv.Atoi(args[5])
			if err != nil {
				return nil, fmt.Errorf("source port %q: %v", args[5], err)
			}
			sport = p
		}
		return rawDNS(args[1], args[2], args[3], netw, sport, 2*time.Second), nil
	case "ping": // ping ADDR
		if len(args) != 2 {
			return nil, fmt.Errorf("usage: ping ADDR")
		}
		return ping(args[1]), nil
	case "bind": // bind ADDR:PORT: bind UDP and TCP there and let go at once
		if len(args) != 2 {
			return nil, fmt.Errorf("usage: bind ADDR:PORT")
		}
		pc, err := net.ListenPacket("udp4", args[1])
		if err != nil {
			return nil, err
		}
		pc.Close()
		ln, err := net.Listen("tcp4", args[1])
		if err != nil {
			return nil, err
		}
		ln.Close()
		return map[string]bool{"bound": true}, nil
	case "listen": // listen PORT: serve "hello from ADDR" until killed
		if len(args) != 2 {
			return nil, fmt.Errorf("usage: listen PORT")
		}
		ln, err := net.Listen("tcp", ":"+args[1])
		if err != nil {
			return nil, err
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(c, "hello from %s\n", c.LocalAddr())
			c.Close()
		}
	case "serve-cdn": // serve-cdn PORT NAME...: a CDN's edge (fakecdn) for the names, until killed
		if len(args) < 3 {
			return nil, fmt.Errorf("usage: serve-cdn PORT NAME...")
		}
		cert, err := fakecdn.Certificate(args[2:]...)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", ":"+args[1])
		if err != nil {
			return nil, err
		}
		fakecdn.Serve(ln, cert)
		return nil, errors.New("serve-cdn: listener closed")
	case "serve-dns": // serve-dns ADDR:PORT NAME=IP... : a fixed zone, for demos
		if len(args) < 3 {
			return nil, fmt.Errorf("usage: serve-dns ADDR:PORT NAME=IP...")
		}
		return nil, serveDNS(args[1], args[2:])
	case "connrate": // connrate ADDR:PORT N: sequential connect+close, per second
		if len(args) != 3 {
			return nil, fmt.Errorf("usage: connrate ADDR:PORT N")
		}
		n, err := strconv.Atoi(args[2])
		if err != nil || n < 1 || n > 1000000 {
			return nil, fmt.Errorf("N must be 1-1000000")
		}
		return connRate(args[1], n), nil
	case "dnsmany": // dnsmany SERVER:PORT NAME N: N queries, each from a new socket (a new flow)
		if len(args) != 4 {
			return nil, fmt.Errorf("usage: dnsmany SERVER:PORT NAME N")
		}
		n, err := strconv.Atoi(args[3])
		if err != nil || n < 1 || n > 100000 {
			return nil, fmt.Errorf("N must be 1-100000")
		}
		var r Rate
		start := time.Now()
		for range n {
			if a := rawDNS(args[1], args[2], "A", "udp", 0, 500*time.Millisecond); a.Error == "" {
				r.Count++
			} else {
				r.Errors++
			}
		}
		r.Seconds = time.Since(start).Seconds()
		r.PerSec = float64(r.Count) / r.Seconds
		return r, nil
	case "dnslatency": // dnslatency SERVER:PORT NAME N: N queries one after another, with percentiles
		if len(args) != 4 {
			return nil, fmt.Errorf("usage: dnslatency SERVER:PORT NAME N")
		}
		n, err := strconv.Atoi(args[3])
		if err != nil || n < 1 || n > 100000 {
			return nil, fmt.Errorf("N must be 1-100000")
		}
		return dnsLatency(args[1], args[2], n), nil
	case "dnsflood": // dnsflood SERVER:PORT SECONDS WORKERS: refused names as fast as possible
		if len(args) != 4 {
			return nil, fmt.Errorf("usage: dnsflood SERVER:PORT SECONDS WORKERS")
		}
		secs, err := strconv.Atoi(args[2])
		if err != nil || secs < 1 || secs > 120 {
			return nil, fmt.Errorf("SECONDS must be 1-120")
		}
		w, err := strconv.Atoi(args[3])
		if err != nil || w < 1 || w > 64 {
			return nil, fmt.Errorf("WORKERS must be 1-64")
		}
		return dnsFlood(args[1], time.Duration(secs)*time.Second, w)
	case "hold": // hold ADDR:PORT N [SECONDS]: open N connections, keep them open SECONDS after the last
		if len(args) != 3 && len(args) != 4 {
			return nil, fmt.Errorf("usage: hold ADDR:PORT N [SECONDS]")
		}
		n, err := strconv.Atoi(args[2])
		if err != nil || n < 1 || n > 100000 {
			return nil, fmt.Errorf("N must be 1-100000")
		}
		var keep time.Duration
		if len(args) == 4 {
			secs, err := strconv.Atoi(args[3])
			if err != nil || secs < 0 || secs > 600 {
				return nil, fmt.Errorf("SECONDS must be 0-600")
			}
			keep = time.Duration(secs) * time.Second
		}
		return hold(args[1], n, keep), nil
	case "throughput": // throughput ADDR:PORT SECONDS: write as fast as possible
		if len(args) != 3 {
			return nil, fmt.Errorf("usage: throughput ADDR:PORT SECONDS")
		}
		secs, err := strconv.Atoi(args[2])
		if err != nil || secs < 1 || secs > 60 {
			return nil, fmt.Errorf("SECONDS must be 1-60")
		}
		return throughput(args[1], time.Duration(secs)*time.Second), nil
	case "race": // race NAME PORT N
		if len(args) != 4 {
			return nil, fmt.Errorf("usage: race NAME PORT N")
		}
		n, err := strconv.Atoi(args[3])
		if err != nil || n < 1 || n > 100000 {
			return nil, fmt.Errorf("N must be 1-100000")
		}
		return race(args[1], args[2], n), nil
	}
	return nil, fmt.Errorf("unknown network check %q", args[0])
}

// Resolved is the outcome of a lookup through the sandbox's resolv.conf.
type Resolved struct {
	Addrs []string
	Error string
}

// goResolver always asks the DNS server in resolv.conf, never a cache.
var goResolver = &net.Resolver{PreferGo: true}

func resolve(name string) Resolved {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := goResolver.LookupHost(ctx, name)
	return Resolved{Addrs: addrs, Error: errString(err)}
}

// Connected is the outcome of a TCP connect, and the first line the server sent.
type Connected struct {
	OK    bool
	Got   string
	Error string
	Took  string
}

func connect(addr string, timeout time.Duration, send string) Connected {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	res := Connected{Took: time.Since(start).Round(time.Millisecond).String()}
	if err != nil {
		res.Error = errString(err)
		return res
	}
	defer c.Close()
	res.OK = true
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			res.Error = errString(err)
			return res
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 256)
	n, _ := c.Read(buf)
	res.Got = string(buf[:n])
	return res
}

// tlsConnect makes a TLS connection naming serverName and reads what the
// server says. The certificate is not checked: the name gate, not the
// probe, decides who is reached, and the test servers' certificates are
// their own.
func tlsConnect(addr, serverName string, timeout time.Duration) Connected {
	start := time.Now()
	raw, err := net.DialTimeout("tcp", addr, timeout)
	res := Connected{}
	if err != nil {
		res.Error, res.Took = errString(err), time.Since(start).Round(time.Millisecond).String()
		return res
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(timeout))
	c := tls.Client(raw, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}) //nolint:gosec // see above
	err = c.Handshake()
	res.Took = time.Since(start).Round(time.Millisecond).String()
	if err != nil {
		res.Error = errString(err)
		return res
	}
	res.OK = true
	b, _ := io.ReadAll(io.LimitReader(c, 256))
	res.Got = string(b)
	return res
}

// OddHello is the outcome of tlsodd: the connection's, and the size of the
// ClientHello sent.
type OddHello struct {
	Connected
	HelloBytes int
}

// tlsOdd sends a ClientHello in a shape a gate might not expect: split,
// one byte a segment; big, grown past 2 KB with long ALPN names (more than
// a post-quantum key share adds); stall, half of one and then silence,
// until the other side gives up or timeout; garbage, a handshake record's
// header before bytes that are no ClientHello.
func tlsOdd(addr, serverName, mode string, timeout time.Duration) (OddHello, error) {
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: true} //nolint:gosec // test servers' own certificates
	var res OddHello
	start := time.Now()
	dial := func() (*net.TCPConn, error) {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		_ = c.SetDeadline(time.Now().Add(timeout))
		return c.(*net.TCPConn), nil
	}
	finish := func(err error) (OddHello, error) {
		res.Took = time.Since(start).Round(time.Millisecond).String()
		res.Error = errString(err)
		return res, nil
	}
	switch mode {
	case "split", "big":
		if mode == "big" {
			for i := range 4 {
				cfg.NextProtos = append(cfg.NextProtos, fmt.Sprintf("%d%s", i, strings.Repeat("x", 250)))
			}
		}
		raw, err := dial()
		if err != nil {
			return finish(err)
		}
		defer raw.Close()
		w := &helloWriter{TCPConn: raw, split: mode == "split"}
		c := tls.Client(w, cfg)
		if err := c.Handshake(); err != nil {
			res.HelloBytes = w.first
			return finish(err)
		}
		res.HelloBytes, res.OK = w.first, true
		b, _ := io.ReadAll(io.LimitReader(c, 256))
		res.Got = string(b)
		return finish(nil)
	case "stall", "garbage":
		hello := []byte{0x16, 0x03, 0x01, 0x00, 0x40}
		if mode == "stall" {
			var err error
			if hello, err = clientHello(cfg); err != nil {
				return res, err
			}
			hello = hello[:len(hello)/2]
		} else {
			hello = append(hello, bytes.Repeat([]byte{0xfe}, 0x40)...)
		}
		res.HelloBytes = len(hello)
		c, err := dial()
		if err != nil {
			return finish(err)
		}
		defer c.Close()
		if _, err := c.Write(hello); err != nil {
			return finish(err)
		}
		b, err := io.ReadAll(io.LimitReader(c, 256))
		res.Got = string(b)
		return finish(err)
	}
	return res, fmt.Errorf("tlsodd: mode %q is not split, big, stall or garbage", mode)
}

// helloWriter counts the first write, the ClientHello, and with split
// sends every byte of it in a segment of its own.
type helloWriter struct {
	*net.TCPConn
	split  bool
	first  int
	writes int
}

func (w *helloWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.writes > 1 || !w.split {
		if w.writes == 1 {
			w.first = len(p)
		}
		return w.TCPConn.Write(p)
	}
	w.first = len(p)
	_ = w.SetNoDelay(true)
	for i := range p {
		// With Nagle off, each write leaves as a segment of its own.
		if _, err := w.TCPConn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// clientHello is the ClientHello cfg makes, as the bytes of its record.
func clientHello(cfg *tls.Config) ([]byte, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _ = tls.Client(a, cfg).Handshake() }()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		return nil, fmt.Errorf("record a ClientHello: %w", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		return nil, fmt.Errorf("record a ClientHello: %w", err)
	}
	return append(hdr, body...), nil
}

// TLSBench is what tlsbench measured: connection set-up (dial to the end
// of the handshake), connections a second one after another, and the
// upload rate of one connection.
type TLSBench struct {
	Setups []int64 // microseconds, each
	PerSec float64
	// ParallelPerSec is the rate of as many handshakes made by several
	// workers at once: what the machine can do, where PerSec is bound by
	// the latency of one.
	ParallelPerSec float64
	MbitPerSec     float64
	Error          string
}

func tlsBench(addr, serverName string, n, mib, workers int) TLSBench {
	var res TLSBench
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: true} //nolint:gosec // test servers' own certificates
	handshake := func() (*tls.Conn, error) {
		raw, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return nil, err
		}
		_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
		c := tls.Client(raw, cfg)
		if err := c.Handshake(); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}
	start := time.Now()
	for range n {
		t := time.Now()
		c, err := handshake()
		if err != nil {
			res.Error = errString(err)
			return res
		}
		res.Setups = append(res.Setups, time.Since(t).Microseconds())
		c.Close()
	}
	res.PerSec = float64(n) / time.Since(start).Seconds()
	if workers > 0 {
		var left atomic.Int64
		left.Store(int64(n))
		var failed atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					c, err := handshake()
					if err != nil {
						failed.Store(errString(err))
						return
					}
					c.Close()
				}
			})
		}
		wg.Wait()
		if e, ok := failed.Load().(string); ok {
			res.Error = e
			return res
		}
		res.ParallelPerSec = float64(n) / time.Since(start).Seconds()
	}
	if mib == 0 {
		return res
	}
	c, err := handshake()
	if err != nil {
		res.Error = errString(err)
		return res
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	t := time.Now()
	for range mib * 16 {
		if _, err := c.Write(buf); err != nil {
			res.Error = errString(err)
			return res
		}
	}
	// The server reads until the end, then closes: the last byte is in.
	_ = c.CloseWrite()
	_, _ = io.Copy(io.Discard, c)
	res.MbitPerSec = float64(mib) * 8 * (1 << 20) / 1e6 / time.Since(t).Seconds()
	return res
}

// TLSHeld is how many TLS connections tlshold had open at once, each
// served (its server's first byte read).
type TLSHeld struct {
	Open  int
	Error string
}

func tlsHold(addr, serverName string, n int, keep time.Duration) TLSHeld {
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: true} //nolint:gosec // test servers' own certificates
	var res TLSHeld
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		raw, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			res.Error = errString(err)
			break
		}
		_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
		c := tls.Client(raw, cfg)
		// Served: the handshake completed and the server's first words came
		// back through it.
		if err := c.Handshake(); err != nil {
			raw.Close()
			res.Error = errString(err)
			break
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			raw.Close()
			res.Error = "read: " + errString(err)
			break
		}
		_ = raw.SetDeadline(time.Time{})
		conns = append(conns, c)
	}
	res.Open = len(conns)
	fmt.Fprintf(os.Stderr, "holding %d\n", res.Open)
	time.Sleep(keep)
	return res
}

// DNSAnswer is the outcome of a raw DNS query.
type DNSAnswer struct {
	Rcode   string
	Answers []string
	Error   string
}

func rawDNS(server, name, qtype, netw string, sport int, timeout time.Duration) DNSAnswer {
	t, ok := dns.StringToType[qtype]
	if !ok {
		return DNSAnswer{Error: "unknown type " + qtype}
	}
	m := new(dns.Msg).SetQuestion(dns.Fqdn(name), t)
	c := &dns.Client{Net: netw, Timeout: timeout}
	if sport != 0 {
		// A fixed source port: the same flow, as conntrack sees it, from
		// one run to the next.
		var local net.Addr = &net.UDPAddr{Port: sport}
		if netw == "tcp" {
			local = &net.TCPAddr{Port: sport}
		}
		c.Dialer = &net.Dialer{Timeout: timeout, LocalAddr: local}
	}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return DNSAnswer{Error: errString(err)}
	}
	res := DNSAnswer{Rcode: dns.RcodeToString[r.Rcode]}
	for _, rr := range r.Answer {
		res.Answers = append(res.Answers, rr.String())
	}
	return res
}

// Pinged is the outcome of one ICMP echo over an unprivileged ICMP socket.
type Pinged struct {
	Reply bool
	Error string
}

func ping(addr string) Pinged {
	c, err := icmp.ListenPacket("udp4", "0.0.0.0")
	if err != nil {
		return Pinged{Error: "icmp socket: " + errString(err)}
	}
	defer c.Close()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: 1, Data: []byte("clawguard")}}
	b, _ := msg.Marshal(nil)
	if _, err := c.WriteTo(b, &net.UDPAddr{IP: net.ParseIP(addr)}); err != nil {
		return Pinged{Error: errString(err)}
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	if _, _, err := c.ReadFrom(buf); err != nil {
		return Pinged{Error: errString(err)}
	}
	return Pinged{Reply: true}
}

// Raced counts resolve-then-connect-at-once failures: a connect that fails
// right after its answer arrived means the answer was released before the
// address was allowed.
type Raced struct {
	Iterations    int
	ResolveErrors int
	ConnectErrors int
	Distinct      int
	FirstError    string
	Took          string
}

func race(name, port string, n int) Raced {
	res := Raced{Iterations: n}
	seen := map[string]bool{}
	start := time.Now()
	for i := 0; i < n; i++ {
		r := resolve(name)
		if r.Error != "" || len(r.Addrs) == 0 {
			res.ResolveErrors++
			if res.FirstError == "" {
				res.FirstError = fmt.Sprintf("resolve %d: %s", i, r.Error)
			}
			continue
		}
		seen[r.Addrs[0]] = true
		c, err := net.DialTimeout("tcp", net.JoinHostPort(r.Addrs[0], port), time.Second)
		if err != nil {
			res.ConnectErrors++
			if res.FirstError == "" {
				res.FirstError = fmt.Sprintf("connect %d to %s: %s", i, r.Addrs[0], errString(err))
			}
			continue
		}
		c.Close()
	}
	res.Distinct = len(seen)
	res.Took = time.Since(start).Round(time.Millisecond).String()
	return res
}

// serveDNS answers A queries for a fixed set of names (TTL 60) and NXDOMAIN
// for everything else, on UDP and TCP, until killed.
func serveDNS(addr string, records []string) error {
	zone := map[string][]net.IP{}
	for _, r := range records {
		name, ip, ok := strings.Cut(r, "=")
		if !ok || net.ParseIP(ip) == nil {
			return fmt.Errorf("record %q: want NAME=IP", r)
		}
		zone[dns.Fqdn(strings.ToLower(name))] = append(zone[dns.Fqdn(strings.ToLower(name))], net.ParseIP(ip))
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		q := r.Question[0]
		ips, ok := zone[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		if q.Qtype == dns.TypeA {
			for _, ip := range ips {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: ip})
			}
		}
		_ = w.WriteMsg(m)
	})
	errc := make(chan error, 2)
	for _, netw := range []string{"udp", "tcp"} {
		go func() { errc <- (&dns.Server{Addr: addr, Net: netw, Handler: h}).ListenAndServe() }()
	}
	return <-errc
}

// Rate is a measured rate.
type Rate struct {
	Count   int
	Errors  int
	Seconds float64
	PerSec  float64
}

func connRate(addr string, n int) Rate {
	start := time.Now()
	r := Rate{}
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			r.Errors++
			continue
		}
		c.Close()
		r.Count++
	}
	r.Seconds = time.Since(start).Seconds()
	r.PerSec = float64(r.Count) / r.Seconds
	return r
}

// Held is how many of the connections asked for were open at once.
type Held struct {
	Opened     int
	Failed     int
	FirstError string
}

// hold opens n connections one after the other and keeps every one open
// until keep after the last has been tried: an agent filling the
// connection table.
func hold(addr string, n int, keep time.Duration) Held {
	var h Held
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			if h.Failed == 0 {
				h.FirstError = errString(err)
			}
			h.Failed++
			continue
		}
		conns = append(conns, c)
		h.Opened++
	}
	time.Sleep(keep)
	return h
}

// Throughput is bytes written to a discarding server in a fixed time.
type Throughput struct {
	Bytes      int64
	Seconds    float64
	MbitPerSec float64
	Error      string
}

func throughput(addr string, d time.Duration) Throughput {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return Throughput{Error: errString(err)}
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	var t Throughput
	start := time.Now()
	for time.Since(start) < d {
		n, err := c.Write(buf)
		t.Bytes += int64(n)
		if err != nil {
			t.Error = errString(err)
			break
		}
	}
	t.Seconds = time.Since(start).Seconds()
	t.MbitPerSec = float64(t.Bytes) * 8 / 1e6 / t.Seconds
	return t
}

// Fetched is the outcome of an HTTPS request: its status and the start of
// its body.
type Fetched struct {
	Status int
	Proto  string
	Body   string
	Error  string
}

func httpsGet(url string, headers []string) Fetched {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return Fetched{Error: errString(err)}
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(k, strings.TrimSpace(v))
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true}}
	resp, err := c.Do(req)
	if err != nil {
		return Fetched{Error: errString(err)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return Fetched{Status: resp.StatusCode, Proto: resp.Proto, Body: string(b)}
}

// HTTPSBench is what httpsbench measured: each request's time on a kept
// connection, the download rate, and how late each event arrived after the
// server sent it (the server and the probe share the host's clock).
type HTTPSBench struct {
	Requests   []int64 // microseconds, each
	MbitPerSec float64
	EventLates []int64 // microseconds, each
	Proto      string
	Error      string
}

func httpsBench(base string, n, mib, events int, headers []string) HTTPSBench {
	var res HTTPSBench
	c := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 1,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a benchmark: both paths alike
	}}
	get := func(path string) (*http.Response, error) {
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			return nil, err
		}
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ":")
			req.Header.Add(k, strings.TrimSpace(v))
		}
		resp, err := c.Do(req)
		if err == nil && resp.StatusCode != 200 {
			resp.Body.Close()
			return nil, fmt.Errorf("%s: %s", path, resp.Status)
		}
		return resp, err
	}
	for i := range n + 1 {
		t := time.Now()
		resp, err := get("/small")
		if err != nil {
			res.Error = errString(err)
			return res
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res.Proto = resp.Proto
		if i > 0 { // the first opens the connection
			res.Requests = append(res.Requests, time.Since(t).Microseconds())
		}
	}
	if mib > 0 {
		t := time.Now()
		resp, err := get(fmt.Sprintf("/big?mib=%d", mib))
		if err != nil {
			res.Error = errString(err)
			return res
		}
		got, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res.MbitPerSec = float64(got) * 8 / 1e6 / time.Since(t).Seconds()
	}
	if events > 0 {
		resp, err := get(fmt.Sprintf("/sse?n=%d&ms=50", events))
		if err != nil {
			res.Error = errString(err)
			return res
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if sent, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
				if ns, err := strconv.ParseInt(sent, 10, 64); err == nil {
					res.EventLates = append(res.EventLates, time.Since(time.Unix(0, ns)).Microseconds())
				}
			}
			if err != nil {
				break
			}
		}
	}
	return res
}
