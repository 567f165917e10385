package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/clawguard/clawguard/netrules"
)

// writeSection stores one benchmark's Markdown section where `make bench`
// collects them into docs/benchmarks.md.
func writeSection(b testing.TB, file, text string) {
	b.Log("\n" + text)
	if dir := os.Getenv("CLAWGUARD_BENCH_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEgress measures the cost of enforcement on a running sandbox:
// the DNS gate's added latency, connection rate and throughput with and
// without the sandbox's allowlist checks, connection rate against the size
// of the allowlist, and the time to add addresses.
func BenchmarkEgress(b *testing.B) {
	h := env
	sb := h.start(b, profile{Name: "bench-egress", Extra: `egress:
  allow:
    - {host: api.example.test, ports: [443, 9000], tls: false}
  dns: {min_ttl: 30s, max_ttl: 1h}
`})
	var state struct {
		DNSPort int `json:"dns_port"`
	}
	raw, err := os.ReadFile(filepath.Join(h.stateDir, "sandboxes", sb.name, "state.json"))
	if err != nil || json.Unmarshal(raw, &state) != nil || state.DNSPort == 0 {
		b.Fatalf("state: %v %s", err, raw)
	}

	// 1. DNS: the same query at 1,000 per second for 3 s, through the gate
	// (upstream exchange + ip set insert) and straight to the upstream.
	gate := fmt.Sprintf("%s:%d", testGW, state.DNSPort)
	viaGate, gateErrs := paceQueries(b, gate, "api.example.test", 1000, 3*time.Second)
	direct, directErrs := paceQueries(b, fakeDNSAddr+":53", "api.example.test", 1000, 3*time.Second)
	gp50, gp99 := percentiles(viaGate)
	dp50, dp99 := percentiles(direct)

	// 2. Connections and throughput with the sandbox's chain as it is, then
	// with an ACCEPT in front of it: the same path without the allowlist check.
	host, err := netrules.NewHost(netrules.Config{Bridge: testBridge, Subnet: netip.MustParsePrefix(testSubnet), StateDir: h.stateDir})
	if err != nil {
		b.Fatal(err)
	}
	measure := func() (rate, mbit float64) {
		var r struct{ PerSec float64 }
		h.netProbe(b, sb.name, &r, "connrate", apiAddr+":443", "3000")
		var tp struct {
			MbitPerSec float64
			Error      string
		}
		h.netProbe(b, sb.name, &tp, "throughput", fmt.Sprintf("%s:%d", apiAddr, discardPort), "3")
		if tp.Error != "" {
			b.Fatalf("throughput: %s", tp.Error)
		}
		return r.PerSec, tp.MbitPerSec
	}
	// Interleaved rounds, medians: single runs on a 2-CPU machine are noisy.
	const rounds = 5
	var enfRates, enfMbits, openRates, openMbits []float64
	chain := netrules.ChainName(sb.name)
	for i := 0; i < rounds; i++ {
		r, m := measure()
		enfRates, enfMbits = append(enfRates, r), append(enfMbits, m)
		if err := run("iptables", "-w", "-I", chain, "1", "-j", "ACCEPT"); err != nil {
			b.Fatal(err)
		}
		r, m = measure()
		openRates, openMbits = append(openRates, r), append(openMbits, m)
		if err := run("iptables", "-w", "-D", chain, "-j", "ACCEPT"); err != nil {
			b.Fatal(err)
		}
	}
	enfRate, enfMbit, openRate, openMbit := median(enfRates), median(enfMbits), median(openRates), median(openMbits)

	// 3. The allowlist grows from 1 to 10,000 addresses; lookups are one
	// hash probe, so the connection rate should not move.
	var extra []netrules.Entry
	for i := 0; i < 10000; i++ {
		a := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		extra = append(extra, netrules.Entry{Addr: a, Proto: netrules.ProtoTCP, Port: 443, Timeout: time.Hour})
	}
	start := time.Now()
	if err := host.Allow(sb.name, extra[:1000]); err != nil {
		b.Fatal(err)
	}
	add1000 := time.Since(start)
	if err := host.Allow(sb.name, extra[1000:9999]); err != nil {
		b.Fatal(err)
	}
	var bigRates []float64
	for i := 0; i < rounds; i++ {
		r, _ := measureRate(b, h, sb.name)
		bigRates = append(bigRates, r)
	}
	bigRate, smallRate := median(bigRates), enfRate

	b.ReportMetric(float64(gp50.Microseconds()), "dns-gate-p50-us")
	b.ReportMetric(enfRate, "conn/s")
	writeSection(b, "20-egress.md", fmt.Sprintf(`## Egress enforcement

Method: one sandbox on the suite's bridge, allowlisting one name of the fake internet (a network namespace on
this machine joined by a veth pair). DNS: 3,000 A queries for that name, sent from the host at 1,000 per second
(one goroutine per query, UDP), through the sandbox's DNS gate (which forwards upstream and inserts the answer in
the sandbox's ip set before replying) and, for comparison, straight to the fake upstream. Connections: 3,000
sequential TCP connect+close from inside the sandbox to the allowlisted address. Throughput: 3 s of writes from
inside the sandbox to a discarding server. Connections and throughput are medians of 5 interleaved rounds, with the range of the rounds in brackets:
where the ranges overlap, the difference is within this machine's noise (2 shared CPUs, sender and receiver on
the same machine). "Without enforcement" is the same path with an ACCEPT rule inserted at
the top of the sandbox's chain, so the allowlist lookup (and logging) is skipped. The 10,000-address case adds
9,999 more addresses to the sandbox's set (hash:ip,port) before measuring again.

| measurement | with clawguard | without / baseline | goal |
|---|---|---|---|
| DNS latency p50 | %s (gate) | %s (upstream direct) | added ≤ 0.5 ms: **+%s** |
| DNS latency p99 | %s (gate) | %s (upstream direct) | added ≤ 2 ms: **+%s** |
| DNS errors | %d of 3000 | %d of 3000 | 0 |
| TCP connections/s | %.0f (%s) | %.0f (%s) | ≥ 95%%: **%.1f%%** |
| throughput (Mbit/s) | %.0f (%s) | %.0f (%s) | ≥ 95%%: **%.1f%%** |
| connections/s with 1 vs 10,000 allowlisted addresses | %.0f (%s) with 10,000 | %.0f with 1 | ratio ≥ 0.95: **%.2f** |
| time to add 1,000 addresses to a sandbox's set | %s | | |
`, gp50, dp50, sub(gp50, dp50), gp99, dp99, sub(gp99, dp99), gateErrs, directErrs,
		enfRate, spread(enfRates), openRate, spread(openRates), 100*enfRate/openRate,
		enfMbit, spread(enfMbits), openMbit, spread(openMbits), 100*enfMbit/openMbit,
		bigRate, spread(bigRates), smallRate, bigRate/smallRate, add1000.Round(time.Millisecond)))
}

func measureRate(b *testing.B, h *harness, name string) (float64, error) {
	var r struct{ PerSec float64 }
	h.netProbe(b, name, &r, "connrate", apiAddr+":443", "3000")
	return r.PerSec, nil
}

func sub(a, b time.Duration) time.Duration {
	if a < b {
		return 0
	}
	return (a - b).Round(time.Microsecond)
}

// paceQueries sends one query per 1/rate for d, each on its own goroutine,
// and returns the round-trip times of those answered.
func paceQueries(b *testing.B, server, name string, rate int, d time.Duration) ([]time.Duration, int) {
	var (
		mu   sync.Mutex
		rtts []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	client := &dns.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA)
				r, rtt, err := client.Exchange(m, server)
				mu.Lock()
				defer mu.Unlock()
				if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
					errs++
					return
				}
				rtts = append(rtts, rtt)
			}()
		}
	}
	wg.Wait()
	if len(rtts) == 0 {
		b.Fatalf("no answers from %s", server)
	}
	return rtts, errs
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)*50/100].Round(time.Microsecond), s[min(len(s)-1, len(s)*99/100)].Round(time.Microsecond)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread writes the range of a set of measurements.
func spread(v []float64) string {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return fmt.Sprintf("%.0f–%.0f", s[0], s[len(s)-1])
}

// BenchmarkIperf3 measures TCP throughput with iperf3, the tool users reach
// for: a client in a sandbox against a server in the fake internet, with the
// sandbox's chain as it is and with an ACCEPT in front of it.
func BenchmarkIperf3(b *testing.B) {
	h := env
	iperf, err := exec.LookPath("iperf3")
	if err != nil {
		b.Fatalf("iperf3 is not installed (make bench installs it): %v", err)
	}
	archive := filepath.Join(h.dir, "iperf.tar")
	ref := "docker.io/clawguard-test/iperf:e2e"
	if out, err := exec.Command(filepath.Join(h.dir, "cgimage"), "-ref", ref, "-o", archive, "-probe", h.probe, "-bin", iperf).CombinedOutput(); err != nil {
		b.Fatalf("build iperf image: %v\n%s", err, out)
	}
	h.images["iperf"] = image{ref: ref, archive: archive}
	sb := h.start(b, profile{Name: "bench-iperf", Image: "iperf", Extra: `egress:
  allow:
    - {cidr: 198.51.100.14/32, ports: [5201]}
`})
	server := exec.Command("ip", "netns", "exec", fakeNSName, iperf, "-s", "-B", "198.51.100.14", "-p", "5201")
	if err := server.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
	// The server talks only after the client does: a connect is the control.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "198.51.100.14:5201", time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("iperf3 server never answered from the host: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	measure := func() float64 {
		out, stderr, code := h.exec(b, sb.name, iperf, "-c", "198.51.100.14", "-p", "5201", "-t", "3", "-J")
		if code != 0 {
			b.Fatalf("iperf3: %s %s", stderr, out)
		}
		var r struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			b.Fatalf("iperf3 JSON: %v", err)
		}
		return r.End.SumReceived.BitsPerSecond / 1e6
	}
	chain := netrules.ChainName(sb.name)
	var with, without []float64
	for i := 0; i < 5; i++ {
		with = append(with, measure())
		if err := run("iptables", "-w", "-I", chain, "1", "-j", "ACCEPT"); err != nil {
			b.Fatal(err)
		}
		without = append(without, measure())
		if err := run("iptables", "-w", "-D", chain, "-j", "ACCEPT"); err != nil {
			b.Fatal(err)
		}
	}
	w, wo := median(with), median(without)
	b.ReportMetric(w, "Mbit/s")
	writeSection(b, "30-iperf3.md", fmt.Sprintf(`## Throughput with iperf3

Method: iperf3 (Debian's) in a sandbox, 3 s TCP upload to an iperf3 server in the fake internet (allowlisted by a
`+"`cidr:`"+` entry), 5 interleaved rounds with the sandbox's chain as it is and with an ACCEPT rule at its top; medians,
range in brackets.

| | with clawguard | without the allowlist check | goal |
|---|---|---|---|
| iperf3 TCP (Mbit/s) | %.0f (%s) | %.0f (%s) | ≥ 95%%: **%.1f%%** |
`, w, spread(with), wo, spread(without), 100*w/wo))
}
