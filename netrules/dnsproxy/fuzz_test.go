package dnsproxy

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzFilter feeds the gate's answer filter any query and any upstream
// answer a hostile resolver could send: malformed and compressed names,
// many questions, CNAME chains and loops, zero and huge TTLs, EDNS. It must
// never panic, and what it releases must hold: every address in it was
// admitted first, no TTL exceeds the cap, and nothing but the chain's
// CNAMEs and its A records gets through.
func FuzzFilter(f *testing.F) {
	seed := func(q string, rrs ...string) {
		req := new(dns.Msg).SetQuestion(dns.Fqdn(q), dns.TypeA)
		up := new(dns.Msg).SetReply(req)
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			up.Answer = append(up.Answer, rr)
		}
		up.SetEdns0(4096, true)
		a, _ := req.Pack()
		b, _ := up.Pack()
		f.Add(a, b)
	}
	seed("api.example.com", "api.example.com. 300 IN A 198.51.100.10")
	seed("cdn.example.com", "cdn.example.com. 60 IN CNAME edge.cdn.test.", "edge.cdn.test. 20 IN A 198.51.100.20")
	seed("loop.example.com", "loop.example.com. 60 IN CNAME a.test.", "a.test. 60 IN CNAME loop.example.com.", "a.test. 60 IN A 198.51.100.1")
	seed("glue.example.com", "other.test. 60 IN A 198.51.100.66", "glue.example.com. 4294967295 IN A 10.1.2.3", "glue.example.com. 0 IN A 198.51.100.3")
	f.Fuzz(func(t *testing.T, reqWire, upWire []byte) {
		req, up := new(dns.Msg), new(dns.Msg)
		if req.Unpack(reqWire) != nil || up.Unpack(upWire) != nil || len(req.Question) != 1 {
			return // answer() refuses these before asking upstream
		}
		g := &gate{allow: []string{"api.example.com", "cdn.example.com", "loop.example.com", "glue.example.com"}}
		p, err := New(Config{Upstreams: []string{"127.0.0.1:9"}, MaxTTL: time.Hour}, g)
		if err != nil {
			t.Fatal(err)
		}
		m := p.filter(context.Background(), req, up)
		admitted := map[netip.Addr]bool{}
		for _, a := range g.admitted {
			admitted[a] = true
		}
		for _, rr := range m.Answer {
			if rr.Header().Ttl > uint32(time.Hour/time.Second) {
				t.Fatalf("TTL %d past the cap: %s", rr.Header().Ttl, rr)
			}
			switch r := rr.(type) {
			case *dns.A:
				addr, _ := netip.AddrFromSlice(r.A.To4())
				if !admitted[addr] {
					t.Fatalf("released %s without admitting it", r)
				}
			case *dns.CNAME:
			default:
				t.Fatalf("released a record that is neither A nor CNAME: %s", rr)
			}
		}
	})
}
