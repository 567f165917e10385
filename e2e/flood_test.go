package e2e

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/clawguard/clawguard/netrules"
)

// TestADNSFloodIsCutInTheFloodersNamespace: an agent writes queries for
// new names at its gate as fast as it can, for 3 s. The control, without
// the second layer: the gate answers far more than the sandbox's rate
// allows, all of it work for the daemon that serves every sandbox. With
// it, what reaches the gate stays within the rate and its burst, status
// counts the queries cut, and another sandbox resolves meanwhile with
// every query answered.
func TestADNSFloodIsCutInTheFloodersNamespace(t *testing.T) {
	h := env
	const secs = 3
	bound := uint64(netrules.DNSPacketsPerSecond*secs + 2*netrules.DNSPacketsPerSecond)
	const allow = "egress:\n  allow:\n    - {host: api.example.test, ports: [443]}\n"
	for _, tc := range []struct {
		name, weaken string
		limited      bool
	}{
		{"control: without the second layer the flood reaches the gate", "inner-layer", false},
		{"the flood is cut in its own namespace", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := h.start(t, profile{Name: "dnsflood-a", Extra: allow, Weaken: tc.weaken})
			b := h.start(t, profile{Name: "dnsflood-b", Extra: allow, Weaken: tc.weaken})
			defer h.stopSandbox(t, a)
			defer h.stopSandbox(t, b)
			done := make(chan probeFlood, 1)
			go func() {
				var f probeFlood
				out, stderr, code := h.exec(t, "dnsflood-a", "/usr/local/bin/cgprobe", "dnsflood", testGW+":53", fmt.Sprint(secs), "4")
				if code != 0 || json.Unmarshal([]byte(out), &f) != nil {
					t.Errorf("the flood: exit %d: %s%s", code, out, stderr)
				}
				done <- f
			}()
			var quiet probeLatency
			h.netProbe(t, "dnsflood-b", &quiet, "dnslatency", testGW+":53", "api.example.test", "300")
			f := <-done
			t.Logf("flood: %d written, %d past the namespace, %d answered; the other sandbox: %d of 300 answered, p99 %.2f ms",
				f.Tried, f.Sent, f.Answered, quiet.Count, quiet.P99us/1000)
			// Over TCP, each connection is a flow of its own: 600 opened
			// one after another, as fast as they go (on a busy machine a
			// few seconds, in which the rate lets about 300 through).
			const tries = 600
			var conns dnsRate
			h.netProbe(t, "dnsflood-a", &conns, "connrate", testGW+":53", fmt.Sprint(tries))
			t.Logf("TCP: %d of %d connections to the gate opened in %.1f s", conns.Count, tries, conns.Seconds)
			if !tc.limited {
				if f.Answered <= 2*bound {
					t.Fatalf("only %d answers without the limit (bound %d): the flood is too weak to prove the limit", f.Answered, bound)
				}
				if conns.Count != tries {
					t.Fatalf("without the limit only %d of %d TCP connections opened: the attack does not prove the limit", conns.Count, tries)
				}
				return
			}
			// The rate's allowance for the time they took, and some slack.
			if allowed := 100 + int(50*conns.Seconds) + 20; conns.Count > allowed || conns.Count == tries {
				t.Errorf("%d of %d TCP connections to the gate opened in %.1f s, want the rate (50/s, bursts of 100: %d) to cut in",
					conns.Count, tries, conns.Seconds, allowed)
			}
			if f.Answered > bound+bound/10 {
				t.Errorf("the gate answered %d queries of the flood in %d s, over the rate's bound of %d", f.Answered, secs, bound)
			}
			if quiet.Count != 300 {
				t.Errorf("the other sandbox had %d of 300 queries answered during the flood", quiet.Count)
			}
			var st []struct {
				Packets struct {
					DNSRateDropped uint64 `json:"dns_rate_dropped_packets"`
				} `json:"packets"`
			}
			out, stderr, code := h.cg("status", "--json", "dnsflood-a")
			if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st) != 1 {
				t.Fatalf("status: exit %d %s%s", code, out, stderr)
			}
			if st[0].Packets.DNSRateDropped == 0 {
				t.Errorf("status does not count the queries cut: %s", out)
			}
		})
	}
}
