package e2e

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkBroker measures the credential broker against the path without
// it, in the same run: two sandboxes allowlist the fake API on its port
// behind the name gate; one binds its key there (each request is
// terminated, checked and forwarded by the broker), the other does not (its
// TLS is spliced to the API). Each round makes 300 requests one after
// another on one kept-alive connection, downloads 256 MiB, and reads 100
// server-sent events sent 50 ms apart.
func BenchmarkBroker(b *testing.B) {
	h := env
	base := fmt.Sprintf("https://%s:%d", apiHost, apiPort)
	allow := fmt.Sprintf("egress:\n  allow:\n    - {host: %s, ports: [%d], tls: true}\n", apiHost, apiPort)
	h.start(b, profile{Name: "bench-br", Extra: allow + fmt.Sprintf("credentials:\n  - {secret: anthropic_api_key, hosts: [%s], header: x-api-key}\n", apiHost)})
	h.start(b, profile{Name: "bench-br-direct", Extra: allow})
	type result struct {
		Requests   []int64
		MbitPerSec float64
		EventLates []int64
		Proto      string
		Error      string
	}
	run := func(name string) result {
		key, _, _ := h.exec(b, name, "cat", "/run/secrets/anthropic_api_key")
		var r result
		h.netProbe(b, name, &r, "httpsbench", base, "300", "256", "100", "x-api-key: "+key)
		if r.Error != "" {
			b.Fatalf("%s: %s", name, r.Error)
		}
		return r
	}
	us := func(v []int64) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Microsecond
		}
		return out
	}
	const rounds = 5
	var bp50, bp99, dp50, dp99, bMbit, dMbit, late50, lateMax, dLate50 []float64
	var proto string
	for range rounds {
		br, d := run("bench-br"), run("bench-br-direct")
		proto = br.Proto
		a, c := percentiles(us(br.Requests))
		x, y := percentiles(us(d.Requests))
		bp50, bp99, dp50, dp99 = append(bp50, ms(a)), append(bp99, ms(c)), append(dp50, ms(x)), append(dp99, ms(y))
		bMbit, dMbit = append(bMbit, br.MbitPerSec), append(dMbit, d.MbitPerSec)
		l50, _ := percentiles(us(br.EventLates))
		dl50, _ := percentiles(us(d.EventLates))
		late50, dLate50 = append(late50, ms(l50)), append(dLate50, ms(dl50))
		lateMax = append(lateMax, ms(slicesMax(us(br.EventLates))))
	}
	writeSection(b, "38-broker.md", fmt.Sprintf(`## Credential broker

Requests to the fake internet's HTTPS API from one sandbox whose key is bound there (the broker terminates TLS,
checks the credential, puts the key in and forwards over TLS of its own; the agent spoke %s) and one whose is not
(its TLS spliced to the API by the name gate), in %d interleaved rounds of 300 requests one after another on one
kept-alive connection, a 256 MiB download, and 100 server-sent events sent 50 ms apart (how late each arrives after
the API sent it: both share the host's clock); medians, with the range in brackets.

| measure | goal | through the broker | without it | |
|---|---|---|---|---|
| request p50, kept-alive | added ≤ 1 ms | %.2f ms (%.2f-%.2f) | %.2f ms (%.2f-%.2f) | added %.2f ms |
| request p99, kept-alive | | %.2f ms (%.2f-%.2f) | %.2f ms (%.2f-%.2f) | added %.2f ms |
| download, one response | ≥ 0.8 of the direct | %.0f Mbit/s (%.0f-%.0f) | %.0f Mbit/s (%.0f-%.0f) | ratio %.2f |
| server-sent event, late by (p50) | < 5 ms | %.2f ms (%.2f-%.2f) | %.2f ms (%.2f-%.2f) | |
| server-sent event, late by (worst) | | %.2f ms (%.2f-%.2f) | | |
`, proto, rounds,
		median(bp50), minOf(bp50), maxOf(bp50), median(dp50), minOf(dp50), maxOf(dp50), median(pairwise(minus, bp50, dp50)),
		median(bp99), minOf(bp99), maxOf(bp99), median(dp99), minOf(dp99), maxOf(dp99), median(pairwise(minus, bp99, dp99)),
		median(bMbit), minOf(bMbit), maxOf(bMbit), median(dMbit), minOf(dMbit), maxOf(dMbit), median(pairwise(over, bMbit, dMbit)),
		median(late50), minOf(late50), maxOf(late50), median(dLate50), minOf(dLate50), maxOf(dLate50),
		median(lateMax), minOf(lateMax), maxOf(lateMax)))
}

func slicesMax(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}
