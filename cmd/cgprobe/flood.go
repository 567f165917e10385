package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Latency is what N sequential queries of one name took, one at a time.
type Latency struct {
	Count  int     `json:"count"`
	Errors int     `json:"errors"`
	P50us  float64 `json:"p50_us"`
	P99us  float64 `json:"p99_us"`
	MaxUs  float64 `json:"max_us"`
}

// dnsLatency asks server for name n times over one UDP socket, one query
// after the answer to the last: a well-behaved agent resolving, measured.
func dnsLatency(server, name string, n int) Latency {
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	conn, err := c.Dial(server)
	if err != nil {
		return Latency{Errors: n}
	}
	defer conn.Close()
	var took []time.Duration
	var l Latency
	for range n {
		m := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA)
		start := time.Now()
		r, _, err := c.ExchangeWithConn(m, conn)
		if err != nil || r.Rcode != dns.RcodeSuccess {
			l.Errors++
			continue
		}
		took = append(took, time.Since(start))
	}
	l.Count = len(took)
	if len(took) == 0 {
		return l
	}
	slices.Sort(took)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	l.P50us, l.P99us, l.MaxUs = us(took[len(took)/2]), us(took[len(took)*99/100]), us(took[len(took)-1])
	return l
}

// Flood is what a flood tried to send, what the kernel took (a packet the
// sandbox's own rules drop fails its write) and what came back.
type Flood struct {
	Tried    uint64  `json:"tried"`
	Sent     uint64  `json:"sent"`
	Answered uint64  `json:"answered"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"tried_per_second"`
}

// dnsFlood sends queries for names no allowlist has, as fast as workers
// sockets can write them, never waiting for an answer: the cheapest flood
// an agent can make, each name new (nothing can be cached).
func dnsFlood(server string, d time.Duration, workers int) (Flood, error) {
	var tried, sent, answered atomic.Uint64
	var wg sync.WaitGroup
	conns := make([]net.Conn, workers)
	for w := range conns {
		c, err := net.Dial("udp", server)
		if err != nil {
			for _, c := range conns[:w] {
				c.Close()
			}
			return Flood{}, fmt.Errorf("dial %s: %w", server, err)
		}
		conns[w] = c
	}
	deadline := time.Now().Add(d)
	start := time.Now()
	for w, conn := range conns {
		defer conn.Close()
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			_ = conn.SetReadDeadline(deadline.Add(time.Second))
			for {
				if _, err := conn.Read(buf); err != nil {
					return
				}
				answered.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			m := new(dns.Msg)
			for i := 0; time.Now().Before(deadline); i++ {
				m.SetQuestion("f"+strconv.Itoa(w)+"-"+strconv.FormatUint(rand.Uint64(), 36)+".flood.invalid.", dns.TypeA)
				b, _ := m.Pack()
				tried.Add(1)
				if _, err := conn.Write(b); err == nil {
					sent.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	f := Flood{Tried: tried.Load(), Sent: sent.Load(), Answered: answered.Load(), Seconds: time.Since(start).Seconds()}
	f.PerSec = float64(f.Tried) / d.Seconds()
	return f, nil
}
