package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestOneSandboxCannotFillTheConnectionTable: an agent opens connection
// after connection and keeps them all. With resources.connections: 20 its
// 21st new flow is refused at once; meanwhile another sandbox (the same
// profile, with room for 200: the control) opens all 40 of its own, and
// the host connects as before.
func TestOneSandboxCannotFillTheConnectionTable(t *testing.T) {
	h := env
	target := fmt.Sprintf("%s:%d", apiAddr, discardPort)
	egress := "egress:\n  allow:\n    - {cidr: " + apiAddr + "/32, ports: [" + fmt.Sprint(discardPort) + "]}\n"
	h.start(t, profile{Name: "conns-capped", Extra: "resources: {connections: 20}\n" + egress})
	h.start(t, profile{Name: "conns-room", Extra: "resources: {connections: 200}\n" + egress})

	// The capped agent fills its share and keeps it for 6 s.
	flood := exec.Command(h.bin, append(h.globalFlags(), "exec", "conns-capped", "--", "/usr/local/bin/cgprobe", "hold", target, "40", "6")...)
	var out strings.Builder
	flood.Stdout = &out
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	var other held
	h.netProbe(t, "conns-room", &other, "hold", target, "40")
	if other.Opened != 40 {
		t.Errorf("the other sandbox, while the first was at its cap: %+v", other)
	}
	if _, err := hostConnect(apiAddr + ":443"); err != nil {
		t.Errorf("the host, while the sandbox was at its cap: %v", err)
	}
	if err := flood.Wait(); err != nil {
		t.Fatalf("the flood: %v", err)
	}
	var capped held
	if err := json.Unmarshal([]byte(out.String()), &capped); err != nil {
		t.Fatalf("the flood's report: %v\n%s", err, out.String())
	}
	if capped.Opened != 20 || capped.Failed != 20 || !strings.Contains(capped.FirstError, "ECONNREFUSED") {
		t.Errorf("the capped sandbox: %+v, want 20 opened and 20 refused", capped)
	}

	// The way to the DNS gate is capped too, at 8 flows per connection
	// of the cap (160 here): each query from a fresh socket is a flow the
	// host tracks for 30 s. The control: the sandbox with room gets all
	// 300 answered.
	var room, flooded dnsRate
	h.netProbe(t, "conns-room", &room, "dnsmany", testGW+":53", "nope.example.test", "300")
	h.netProbe(t, "conns-capped", &flooded, "dnsmany", testGW+":53", "nope.example.test", "300")
	if room.Count != 300 {
		t.Errorf("the sandbox with room: %d of 300 queries answered", room.Count)
	}
	// connlimit counts the UDP flows it has seen lazily, so the cut is
	// near the cap rather than at it (205 of 300 answered here once).
	if flooded.Errors == 0 || flooded.Count > 240 {
		t.Errorf("the capped sandbox: %d of 300 queries answered, want the cap (160) to have cut in", flooded.Count)
	}
	t.Logf("DNS: the capped sandbox had %d of 300 queries answered (cap 160), the other %d", flooded.Count, room.Count)
}

type dnsRate struct {
	Count   int
	Errors  int
	Seconds float64
}

type held struct {
	Opened     int
	Failed     int
	FirstError string
}

// TestChurnedConnectionsCannotFillTheConnectionTable: the cap on
// connections counts open flows only. A closed one stays in the host's
// table for two minutes (TIME_WAIT), so an agent that opens and closes
// connections as fast as it can fills the table all the same: under the
// default cap of 512, the control (a rate of 5,000 a second) leaves all
// 2,000 flows tracked. At the default rate (100 a second, bursts of 200) the
// same churn opens no more than the rate lets through, the rest fail at
// once, and what the host tracks is bounded by the rate: at most about
// 12,000 flows however long the churn goes on.
func TestChurnedConnectionsCannotFillTheConnectionTable(t *testing.T) {
	h := env
	target := fmt.Sprintf("%s:%d", apiAddr, discardPort)
	egress := "egress:\n  allow:\n    - {cidr: " + apiAddr + "/32, ports: [" + fmt.Sprint(discardPort) + "]}\n"
	const churn = 2000
	type rate struct {
		Count, Errors int
		Seconds       float64
	}
	for _, tc := range []struct {
		name, rate string
		limited    bool
	}{
		{"control: a rate too high to bind leaves thousands tracked", "5000", false},
		{"the default rate bounds what is tracked", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := ""
			if tc.rate != "" {
				res = "resources: {new_connections_per_second: " + tc.rate + "}\n"
			}
			sb := h.start(t, profile{Name: "conns-churn", Extra: res + egress})
			defer h.stopSandbox(t, sb)
			ip := h.sandboxIP(t, "conns-churn")
			var r rate
			h.netProbe(t, "conns-churn", &r, "connrate", target, fmt.Sprint(churn))
			tracked := flowsOf(t, ip)
			t.Logf("%d of %d connections opened in %.1f s; %d flows of the sandbox tracked by the host", r.Count, churn, r.Seconds, tracked)
			if !tc.limited {
				if tracked <= 2*512 {
					t.Fatalf("only %d flows tracked after %d churned connections: the attack does not fill the table, so the rate proves nothing", tracked, churn)
				}
				return
			}
			// 200 at once, then 100 a second.
			bound := 200 + int(100*r.Seconds) + 50
			if tracked > bound || r.Count > bound || r.Errors == 0 {
				t.Errorf("over %.1f s: %d opened, %d refused, %d flows tracked; want at most %d", r.Seconds, r.Count, r.Errors, tracked, bound)
			}
			var st []struct {
				Packets struct {
					Refused uint64 `json:"rate_refused_connections"`
				} `json:"packets"`
			}
			out, stderr, code := h.cg("status", "--json", "conns-churn")
			if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st) != 1 || st[0].Packets.Refused == 0 {
				t.Errorf("status does not count the connections refused over the rate: exit %d %s%s", code, out, stderr)
			}
		})
	}
}
