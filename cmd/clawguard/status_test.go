package main

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/enforce/egress"
	"github.com/clawguard/clawguard/netrules"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func TestStatusTableMatchesGolden(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	list := []enforce.Status{{
		Name: "openclaw", State: "running", Pid: 4242, UptimeSeconds: 3725, IP: "10.89.0.2",
		Image: "ghcr.io/openclaw/openclaw:latest", MemoryBytes: 1 << 30, CPUs: 1, Pids: 100,
		Packets: &netrules.Counters{Accepted: 120, Denied: 7},
		Allowlist: []enforce.AllowStatus{
			{Host: "api.anthropic.com", Ports: []int{443}, Addresses: []enforce.AddressStatus{
				{Name: "api.anthropic.com", Address: netip.MustParseAddr("198.51.100.10"), ExpiresInSeconds: 95, Source: "startup resolve"},
			}},
			{Host: "api.openai.com", Ports: []int{443}, Addresses: []enforce.AddressStatus{}},
			{Host: "*.cdn.example.com", Ports: []int{443}, Addresses: []enforce.AddressStatus{
				{Name: "a1.cdn.example.com", Address: netip.MustParseAddr("198.51.100.20"), ExpiresInSeconds: 40, Source: "proxied query"},
			}, Wildcard: &enforce.WildcardStatus{Names: 1000, MaxNames: 1000, NewNamesPerMinute: 120}},
			{CIDR: "198.51.100.0/28", Ports: []int{5432}, Protocols: []string{"tcp", "udp"}},
		},
		RefusedQueries: []egress.Refusal{{Time: at, Name: "evil.example.com", Type: "A", Reason: "not allowlisted", Count: 1204},
			{Time: at, Name: "x9.cdn.example.com", Type: "A", Reason: "wildcard *.cdn.example.com holds 1000 names (max_names)", Count: 1}},
		DroppedAnswers: []egress.DroppedAnswer{{Time: at, Name: "meta.example.com", Addr: netip.MustParseAddr("169.254.169.254"), Range: "169.254.0.0/16"}},
		DeniedPackets:  []egress.DeniedPacket{{Time: at, Dst: netip.MustParseAddr("198.51.100.66"), Port: 443, Protocol: "tcp"}},
		Rules:          []string{"-t filter -A CG-96a4bc26 -m comment --comment \"clawguard sandbox openclaw\" -j DROP"},
		SetMembers:     []netrules.SetMember{{Addr: netip.MustParseAddr("198.51.100.10"), Proto: "tcp", Port: 443, Seconds: 95}},
	}, {
		Name: "ghost", State: "missing", Image: "x", Problem: "state remains but the container is gone: run `clawguard stop ghost` to clean up",
	}}
	t.Setenv("TZ", "UTC")
	var b bytes.Buffer
	printStatus(&b, list)
	printEgress(&b, list[0], true)
	golden := "testdata/status.golden"
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("status output differs from %s (go test ./cmd/clawguard -update):\n%s", golden, b.String())
	}
}
