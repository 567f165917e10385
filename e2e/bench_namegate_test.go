package e2e

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkNameGate measures the name gate against the path without it, in
// the same run: two sandboxes allowlist the same name on the CDN's port, one
// with tls: true. Set-up latency is dial to the end of the TLS handshake,
// one connection after another (so also connections a second); throughput
// is one connection's upload; memory is the supervising process's RSS with
// 1,000 idle TLS connections open through its gate.
func BenchmarkNameGate(b *testing.B) {
	h := env
	at := fmt.Sprintf("%s:%d", apiAddr, cdnPort)
	entry := func(tls string) string {
		return fmt.Sprintf("egress:\n  allow:\n    - {host: api.example.test, ports: [%d]%s}\nresources: {connections: 2048, new_connections_per_second: 5000}\n", cdnPort, tls)
	}
	gated := h.start(b, profile{Name: "bench-ng", Extra: entry(", tls: true")})
	h.start(b, profile{Name: "bench-ng-direct", Extra: entry("")})
	for _, n := range []string{"bench-ng", "bench-ng-direct"} {
		var r probeResolved
		h.netProbe(b, n, &r, "resolve", "api.example.test")
	}
	type result struct {
		Setups         []int64
		PerSec         float64
		ParallelPerSec float64
		MbitPerSec     float64
		Error          string
	}
	run := func(name string) result {
		var r result
		h.netProbe(b, name, &r, "tlsbench", at, "api.example.test", "500", "200", "8")
		if r.Error != "" {
			b.Fatalf("%s: %s", name, r.Error)
		}
		return r
	}
	// Interleaved rounds, medians and ranges: a 2-CPU machine is noisy.
	const rounds = 5
	var gp50, gp99, dp50, dp99, gRate, dRate, gPar, dPar, gMbit, dMbit []float64
	for range rounds {
		g, d := run("bench-ng"), run("bench-ng-direct")
		var gs, ds []time.Duration
		for _, us := range g.Setups {
			gs = append(gs, time.Duration(us)*time.Microsecond)
		}
		for _, us := range d.Setups {
			ds = append(ds, time.Duration(us)*time.Microsecond)
		}
		a, c := percentiles(gs)
		x, y := percentiles(ds)
		gp50, gp99, dp50, dp99 = append(gp50, ms(a)), append(gp99, ms(c)), append(dp50, ms(x)), append(dp99, ms(y))
		gRate, dRate = append(gRate, g.PerSec), append(dRate, d.PerSec)
		gPar, dPar = append(gPar, g.ParallelPerSec), append(dPar, d.ParallelPerSec)
		gMbit, dMbit = append(gMbit, g.MbitPerSec), append(dMbit, d.MbitPerSec)
	}

	// Memory: 1,000 idle connections through the gate, the supervising
	// process's RSS sampled while they are held.
	const idle = 1000
	before, _ := procStats(b, gated.cmd.Process.Pid)
	var peak int64
	var held struct {
		Open  int
		Error string
	}
	var wg sync.WaitGroup
	wg.Go(func() { h.netProbe(b, "bench-ng", &held, "tlshold", at, "api.example.test", fmt.Sprint(idle), "8") })
	for i := 0; i < 60; i++ {
		time.Sleep(250 * time.Millisecond)
		if rss, _ := procStats(b, gated.cmd.Process.Pid); rss > peak {
			peak = rss
		}
	}
	wg.Wait()
	if held.Open != idle {
		b.Fatalf("held %d of %d connections through the gate: %s", held.Open, idle, held.Error)
	}
	perConn := float64(peak-before) / idle / 1024

	writeSection(b, "37-namegate.md", fmt.Sprintf(`## Name gate

TLS connections to an allowlisted name on the fake internet's CDN port, from one sandbox whose entry has
`+"`tls: true`"+` (through the name gate) and one whose entry has not (the same path without it), in %d
interleaved rounds of 500 connections one after another, 500 more from 8 clients at once, and a 200 MiB upload
each; medians, with the range in brackets. One after another, the rate is bound by the latency of one set-up,
the gate's added time counted in full; at once, by what the 2 CPUs can do, the handshakes of client and server
included. Set-up is dial to the end of the TLS handshake as the client sees it (the gate reads the ClientHello,
decides, dials from the sandbox's namespace, replays it and passes the server's first record on, checking for a
HelloRetryRequest). Memory is the supervising process's RSS with
%d idle TLS connections held open through its gate, against before.

| measure | goal | through the gate | without it | |
|---|---|---|---|---|
| set-up p50 | added ≤ 0.5 ms | %.2f ms (%.2f-%.2f) | %.2f ms (%.2f-%.2f) | added %.2f ms |
| set-up p99 | added ≤ 2 ms | %.2f ms (%.2f-%.2f) | %.2f ms (%.2f-%.2f) | added %.2f ms |
| connections a second, one after another | ≥ 0.8 of the direct | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | ratio %.2f |
| connections a second, 8 at once | ≥ 0.8 of the direct | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | ratio %.2f |
| upload, one connection | ≥ 0.9 of the direct | %.0f Mbit/s (%.0f-%.0f) | %.0f Mbit/s (%.0f-%.0f) | ratio %.2f |
| memory per idle connection | ≤ 32 KiB | %.1f KiB | | RSS %d MiB before, %d MiB with %d open |
`, rounds, idle,
		median(gp50), minOf(gp50), maxOf(gp50), median(dp50), minOf(dp50), maxOf(dp50), median(pairwise(minus, gp50, dp50)),
		median(gp99), minOf(gp99), maxOf(gp99), median(dp99), minOf(dp99), maxOf(dp99), median(pairwise(minus, gp99, dp99)),
		median(gRate), minOf(gRate), maxOf(gRate), median(dRate), minOf(dRate), maxOf(dRate), median(pairwise(over, gRate, dRate)),
		median(gPar), minOf(gPar), maxOf(gPar), median(dPar), minOf(dPar), maxOf(dPar), median(pairwise(over, gPar, dPar)),
		median(gMbit), minOf(gMbit), maxOf(gMbit), median(dMbit), minOf(dMbit), maxOf(dMbit), median(pairwise(over, gMbit, dMbit)),
		perConn, before>>20, peak>>20, idle))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pairwise is f of each round's two measurements, g's and d's.
func pairwise(f func(g, d float64) float64, g, d []float64) []float64 {
	out := make([]float64, len(g))
	for i := range g {
		out[i] = f(g[i], d[i])
	}
	return out
}

func minus(g, d float64) float64 { return g - d }
func over(g, d float64) float64  { return g / d }

func minOf(v []float64) float64 { return slices.Min(v) }
func maxOf(v []float64) float64 { return slices.Max(v) }
