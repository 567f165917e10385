package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/clawguard/clawguard/netrules/nettest"
	"github.com/clawguard/clawguard/verify"
)

// egressProfile allowlists names of the fake internet, with a 1 s minimum
// TTL so the DNS tests run in seconds. Its tests are of the check by
// address, with plain TCP on 443: each entry there opts out of the name
// gate, which namegate_test.go proves.
const egressProfile = `egress:
  allow:
    - {host: api.example.test, ports: [443], tls: false}
    - {host: meta.example.test, ports: [80]}
    - {host: private.example.test, ports: [80]}
    - {host: loop.example.test, ports: [80]}
    - {host: race.example.test, ports: [443], tls: false}
    - {host: "*.wild.example.test", ports: [443], tls: false}
  dns: {min_ttl: 1s, max_ttl: 1h}
`

type (
	probeResolved struct {
		Addrs []string
		Error string
	}
	probeConnected struct {
		OK         bool
		Got, Error string
	}
	probeDNS struct {
		Rcode   string
		Answers []string
		Error   string
	}
	probePinged struct {
		Reply bool
		Error string
	}
	probeRaced struct {
		Iterations, ResolveErrors, ConnectErrors, Distinct int
		FirstError, Took                                   string
	}
)

// netProbe runs a cgprobe network check in the sandbox and decodes it.
func (h *harness) netProbe(t testing.TB, name string, v any, args ...string) {
	t.Helper()
	out, stderr, code := h.exec(t, name, append([]string{"/usr/local/bin/cgprobe"}, args...)...)
	if code != 0 {
		t.Fatalf("cgprobe %v: exit %d: %s", args, code, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("cgprobe %v: %v\n%s", args, err, out)
	}
}

func (h *harness) sandboxConnect(t testing.TB, name, addr string) probeConnected {
	t.Helper()
	var c probeConnected
	h.netProbe(t, name, &c, "connect", addr, "2s")
	return c
}

// assertEnforced checks a running sandbox still enforces its allowlist:
// the allowlisted api.example.test address answers, and a destination that
// answers the host is refused.
func (h *harness) assertEnforced(t testing.TB, name string) {
	t.Helper()
	if c := h.sandboxConnect(t, name, apiAddr+":443"); !c.OK {
		t.Fatalf("%s: allowed destination refused: %+v", name, c)
	}
	mustAnswerFromHost(t, deniedAddr+":443")
	if c := h.sandboxConnect(t, name, deniedAddr+":443"); c.OK {
		t.Fatalf("%s: denied destination open", name)
	}
}

// mustAnswerFromHost is the control case of every denial test: the
// destination answers when no clawguard rule is in the way.
func mustAnswerFromHost(t testing.TB, addr string) {
	t.Helper()
	got, err := hostConnect(addr)
	if err != nil || !strings.HasPrefix(got, "hello from") {
		t.Fatalf("control: %s does not answer from the host (%q, %v); the denial below would prove nothing", addr, got, err)
	}
}

func TestAllowlistedNameIsReachableOnItsPortOnly(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "egress-allow", Extra: egressProfile})
	var r probeResolved
	h.netProbe(t, sb.name, &r, "resolve", "api.example.test")
	if r.Error != "" || len(r.Addrs) != 1 || r.Addrs[0] != apiAddr {
		t.Fatalf("resolve api.example.test: %+v", r)
	}
	if c := h.sandboxConnect(t, sb.name, apiAddr+":443"); !c.OK || !strings.Contains(c.Got, apiAddr+":443") {
		t.Fatalf("allowed destination refused: %+v", c)
	}
	mustAnswerFromHost(t, apiAddr+":8080")
	if c := h.sandboxConnect(t, sb.name, apiAddr+":8080"); c.OK {
		t.Fatalf("same address on a port not in the allowlist was reachable: %+v", c)
	}
}

func TestDeniedDestinations(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "egress-deny", Extra: egressProfile})
	// The other sandbox's own second layer would refuse the connection by
	// itself (nothing comes in but replies): off there, so that what is
	// tested is the sender's and the host's refusal, with the host's
	// connection to the listener as the control.
	other := h.start(t, profile{Name: "egress-other", Weaken: "inner-layer", Args: []string{"/usr/local/bin/cgprobe", "listen", "8080"}})

	t.Run("a host that is not allowlisted, by address", func(t *testing.T) {
		mustAnswerFromHost(t, deniedAddr+":443")
		if c := h.sandboxConnect(t, sb.name, deniedAddr+":443"); c.OK {
			t.Fatalf("reached %s: %+v", deniedAddr, c)
		}
	})
	t.Run("a name that is not allowlisted gets NXDOMAIN and never reaches upstream", func(t *testing.T) {
		if r, err := hostDNS("evil.example.org", dns.TypeA); err != nil || len(r.Answer) != 1 {
			t.Fatalf("control: the fake upstream does not answer evil.example.org: %v %v", r, err)
		}
		h.net.dns.mu.Lock()
		h.net.dns.seen = nil
		h.net.dns.mu.Unlock()
		var r probeResolved
		h.netProbe(t, sb.name, &r, "resolve", "evil.example.org")
		if len(r.Addrs) != 0 || !strings.Contains(r.Error, "no such host") {
			t.Fatalf("resolve evil.example.org: %+v", r)
		}
		if h.net.dns.asked("evil.example.org") {
			t.Fatal("the upstream saw a query for a name that is not allowlisted")
		}
	})
	t.Run("DNS straight to the upstream server is dropped", func(t *testing.T) {
		if r, err := hostDNS("api.example.test", dns.TypeA); err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("control: the upstream does not answer the host: %v %v", r, err)
		}
		for _, proto := range []string{"udp", "tcp"} {
			var d probeDNS
			h.netProbe(t, sb.name, &d, "dns", fakeDNSAddr+":53", "api.example.test", "A", proto)
			if d.Error == "" {
				t.Fatalf("direct DNS over %s answered: %+v", proto, d)
			}
		}
	})
	t.Run("TXT for a subdomain of an allowlisted name is refused without upstream", func(t *testing.T) {
		var d probeDNS
		h.netProbe(t, sb.name, &d, "dns", testGW+":53", "data.api.example.test", "TXT")
		if d.Rcode != "NXDOMAIN" && d.Rcode != "REFUSED" {
			t.Fatalf("TXT query: %+v", d)
		}
		h.netProbe(t, sb.name, &d, "dns", testGW+":53", "api.example.test", "TXT")
		if d.Rcode != "REFUSED" {
			t.Fatalf("TXT for the allowlisted name itself: %+v", d)
		}
		if h.net.dns.asked("data.api.example.test") {
			t.Fatal("a TXT query reached the upstream")
		}
	})
	t.Run("another sandbox", func(t *testing.T) {
		ip := h.sandboxIP(t, other.name)
		waitHostConnect(t, ip+":8080")
		if c := h.sandboxConnect(t, sb.name, ip+":8080"); c.OK {
			t.Fatalf("reached the other sandbox: %+v", c)
		}
	})
	t.Run("the host's own ports, on the gateway and its other addresses", func(t *testing.T) {
		ln, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go serveHello(ln)
		port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
		for _, addr := range append([]string{testGW}, hostAddrs(t)...) {
			mustAnswerFromHost(t, net.JoinHostPort(addr, port))
			if c := h.sandboxConnect(t, sb.name, net.JoinHostPort(addr, port)); c.OK {
				t.Fatalf("sandbox reached the host at %s:%s: %+v", addr, port, c)
			}
		}
	})
	t.Run("IPv6", func(t *testing.T) {
		mustAnswerFromHost(t, "["+fakeV6Addr+"]:80")
		if c := h.sandboxConnect(t, sb.name, "["+fakeV6Addr+"]:80"); c.OK {
			t.Fatalf("reached an IPv6 host: %+v", c)
		}
	})
	t.Run("ICMP, even to an allowlisted address", func(t *testing.T) {
		if err := exec.Command("ping", "-c", "1", "-W", "2", apiAddr).Run(); err != nil {
			t.Fatalf("control: %s does not answer ping from the host: %v", apiAddr, err)
		}
		// Let the sandbox user open ICMP sockets in its namespace, so that
		// only the firewall can stop the echo.
		if err := run("ip", "netns", "exec", "cg-"+sb.name, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647"); err != nil {
			t.Fatal(err)
		}
		var p probePinged
		h.netProbe(t, sb.name, &p, "ping", apiAddr)
		if p.Reply {
			t.Fatal("ICMP echo answered")
		}
		if strings.Contains(p.Error, "icmp socket") {
			t.Fatalf("could not even open an ICMP socket, so this proves nothing: %s", p.Error)
		}
	})
	for _, tc := range []struct{ name, addr string }{
		{"meta.example.test", metadataAddr},
		{"private.example.test", privateAddr},
		{"loop.example.test", ""},
	} {
		t.Run("allowlisted name answering "+tc.name, func(t *testing.T) {
			if tc.addr != "" {
				mustAnswerFromHost(t, tc.addr+":80")
			}
			var r probeResolved
			h.netProbe(t, sb.name, &r, "resolve", tc.name)
			if len(r.Addrs) != 0 {
				t.Fatalf("forbidden answer released: %+v", r)
			}
			if tc.addr != "" {
				if c := h.sandboxConnect(t, sb.name, tc.addr+":80"); c.OK {
					t.Fatalf("reached %s: %+v", tc.addr, c)
				}
			}
		})
	}
}

// TestResolveThenConnectNeverRaces: 1,000 lookups of a name whose answer
// changes on every query (1 s TTL), each followed at once by a connect.
func TestResolveThenConnectNeverRaces(t *testing.T) {
	h := env
	// 1,000 connections in about 2 s: far over the default rate of new
	// ones, which TestChurnedConnectionsCannotFillTheConnectionTable
	// proves; this test is of the race between answer and set.
	sb := h.start(t, profile{Name: "egress-race", Extra: egressProfile + "resources: {new_connections_per_second: 2000}\n"})
	var r probeRaced
	h.netProbe(t, sb.name, &r, "race", "race.example.test", "443", "1000")
	t.Logf("race: %+v", r)
	if r.ResolveErrors != 0 || r.ConnectErrors != 0 {
		t.Fatalf("%d resolve and %d connect failures in %d iterations; first: %s", r.ResolveErrors, r.ConnectErrors, r.Iterations, r.FirstError)
	}
	if r.Distinct < 50 {
		t.Fatalf("answers did not rotate (%d distinct addresses): the test proves nothing", r.Distinct)
	}
}

// TestDNSChangeMovesTheAllowance: the upstream moves a name from A to B; the
// sandbox reaches B at once, A until its timeout, then no longer.
func TestDNSChangeMovesTheAllowance(t *testing.T) {
	h := env
	const name = "moving.example.test"
	// moveAddr is mapped by no other allowlisted name, so only this name's
	// answers keep it allowed.
	const moveAddr = "198.51.100.13"
	h.net.dns.set(name, 1, moveAddr)
	t.Cleanup(func() { h.net.dns.set(name, 1, moveAddr) })
	sb := h.start(t, profile{Name: "egress-move", Extra: strings.Replace(egressProfile, "  dns:", "    - {host: "+name+", ports: [443], tls: false}\n  dns:", 1)})
	var r probeResolved
	h.netProbe(t, sb.name, &r, "resolve", name)
	if len(r.Addrs) != 1 || r.Addrs[0] != moveAddr {
		t.Fatalf("resolve before the change: %+v", r)
	}
	h.net.dns.set(name, 1, api2Addr)
	changed := time.Now()
	for time.Since(changed) < 2*time.Second {
		h.netProbe(t, sb.name, &r, "resolve", name)
		if len(r.Addrs) == 1 && r.Addrs[0] == api2Addr {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c := h.sandboxConnect(t, sb.name, api2Addr+":443"); !c.OK {
		t.Fatalf("new address not reachable within TTL+1s: resolve %+v, connect %+v", r, c)
	}
	if c := h.sandboxConnect(t, sb.name, moveAddr+":443"); !c.OK {
		t.Fatalf("old address dropped before its timeout: %+v", c)
	}
	// verify must not cry wolf on a sandbox whose name just moved (the old
	// address in its grace period) and that holds an address from a
	// wildcard entry: every set member is traced to the gate's records.
	h.net.dns.set("a.wild.example.test", 60, api2Addr)
	t.Cleanup(func() { h.net.dns.set("a.wild.example.test", 60) })
	h.netProbe(t, sb.name, &r, "resolve", "a.wild.example.test")
	// Its profile also allows names whose only answers are private or
	// loopback (meta, private, loop.example.test): those are warnings that
	// say how to allow them, never failures.
	v, code := h.verifySandbox(t, sb.name)
	if code != 0 || len(v.with(verify.Fail)) > 0 {
		t.Fatalf("verify after the move and a wildcard answer: exit %d, failing %v\n%s", code, v.with(verify.Fail), v.explain())
	}
	if !slices.Contains(v.with(verify.Warn), "allowlist") {
		t.Errorf("the names whose answers are all guarded are not a warning:\n%s", v.explain())
	}
	// 1 s TTL clamped to min_ttl 1 s, plus 10 s grace.
	deadline := changed.Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c := h.sandboxConnect(t, sb.name, moveAddr+":443"); !c.OK {
			t.Logf("old address dropped %s after the change", time.Since(changed).Round(time.Second))
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatal("old address still reachable 20s after it left the answers")
}

// TestSupervisorKilledStaysClosed: SIGKILL the supervising process; the kernel
// rules stay, denied stays denied, and no name resolves any more.
func TestSupervisorKilledStaysClosed(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "egress-kill", Extra: egressProfile})
	if err := sb.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-sb.exited
	mustAnswerFromHost(t, deniedAddr+":443")
	if c := h.sandboxConnect(t, sb.name, deniedAddr+":443"); c.OK {
		t.Fatalf("denied destination open after the supervisor died: %+v", c)
	}
	var r probeResolved
	h.netProbe(t, sb.name, &r, "resolve", "api.example.test")
	if len(r.Addrs) != 0 {
		t.Fatalf("a name resolved with no supervisor: %+v", r)
	}
	mustAnswerFromHost(t, "198.51.100.150:443")
	if c := h.sandboxConnect(t, sb.name, "198.51.100.150:443"); c.OK {
		t.Fatalf("an address never answered opened: %+v", c)
	}
}

// TestStopLeavesNoKernelState compares the whole netfilter, ip set, link and
// namespace state before a sandbox starts and after it stops.
func TestStopLeavesNoKernelState(t *testing.T) {
	h := env
	before := nettest.KernelState(t)
	sb := h.start(t, profile{Name: "egress-residue", Extra: egressProfile})
	var r probeResolved
	h.netProbe(t, sb.name, &r, "resolve", "api.example.test")
	if during := nettest.KernelState(t); during == before {
		t.Fatal("a running sandbox changed no kernel state: the comparison proves nothing")
	}
	h.stopSandbox(t, sb)
	if after := nettest.KernelState(t); after != before {
		t.Fatalf("kernel state after stop differs:\n%s", nettest.Diff(before, after))
	}
}

// sandboxIP reads the sandbox's address from its state.
func (h *harness) sandboxIP(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(h.stateDir + "/sandboxes/" + name + "/state.json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		IP string `json:"ip"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.IP == "" {
		t.Fatalf("state of %s: %v %s", name, err, b)
	}
	return st.IP
}

func waitHostConnect(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got, err := hostConnect(addr); err == nil && got != "" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("control: %s never answered from the host", addr)
}

// hostAddrs are the host's global IPv4 addresses (its uplink among them).
func hostAddrs(t testing.TB) []string {
	t.Helper()
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range ifs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() || ipn.IP.String() == testGW {
			continue
		}
		out = append(out, ipn.IP.String())
	}
	return out
}

// TestSpoofedSourceGetsNoOtherSandboxsAllowance: sandbox B sends from A's
// address to a destination only A may reach. The packets must not enter A's
// chain (they come from B's port) and end in the base chain's drop. B runs
// without the second layer, whose own set would drop them before the host
// saw them: this is a test of the host's layer.
func TestSpoofedSourceGetsNoOtherSandboxsAllowance(t *testing.T) {
	h := env
	a := h.start(t, profile{Name: "spoof-a", Extra: "egress:\n  allow:\n    - {cidr: " + apiAddr + "/32, ports: [443]}\n"})
	b := h.start(t, profile{Name: "spoof-b", Weaken: "inner-layer"})
	aIP := h.sandboxIP(t, a.name)
	aChain := "CG-" + shortID(a.name)

	// Control: A's own connection goes through A's chain and is accepted.
	before := chainPackets(t, "filter", aChain)
	if c := h.sandboxConnect(t, a.name, apiAddr+":443"); !c.OK {
		t.Fatalf("control: A cannot reach its own allowlisted destination: %+v", c)
	}
	if chainPackets(t, "filter", aChain) == before {
		t.Fatal("control: A's chain counted nothing for A's own connection, so the check below proves nothing")
	}

	// B takes A's address as a second address (root in B's namespace can; the
	// agent inside cannot) and connects from it.
	if err := run("ip", "netns", "exec", "cg-"+b.name, "ip", "addr", "add", aIP+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	aBefore := chainPackets(t, "filter", aChain)
	baseBefore := baseDrops(t)
	out, err := exec.Command("ip", "netns", "exec", "cg-"+b.name, h.probe, "connect-from", aIP, apiAddr+":443").CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v %s", err, out)
	}
	if strings.Contains(string(out), `"OK": true`) {
		t.Fatalf("spoofed connection succeeded: %s", out)
	}
	if got := chainPackets(t, "filter", aChain); got != aBefore {
		t.Fatalf("spoofed packets entered A's chain (%d -> %d packets)", aBefore, got)
	}
	if baseDrops(t) == baseBefore {
		t.Fatal("the spoofed packets were not dropped by the base chain")
	}
}

func shortID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:4])
}

// chainPackets sums the packet counters of one chain.
func chainPackets(t testing.TB, table, chain string) uint64 {
	t.Helper()
	out, err := exec.Command("iptables-save", "-c", "-t", table).Output()
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, l := range strings.Split(string(out), "\n") {
		cnt, rest, ok := strings.Cut(l, "] ")
		if ok && strings.HasPrefix(rest, "-A "+chain+" ") {
			var p uint64
			fmt.Sscanf(strings.TrimPrefix(cnt, "["), "%d:", &p)
			total += p
		}
	}
	return total
}

// baseDrops counts packets the base forward chain dropped from the bridge.
func baseDrops(t testing.TB) uint64 {
	t.Helper()
	out, err := exec.Command("iptables-save", "-c", "-t", "filter").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		cnt, rest, ok := strings.Cut(l, "] ")
		if ok && strings.HasPrefix(rest, "-A CG-FORWARD -i "+testBridge) && strings.HasSuffix(rest, "-j DROP") {
			var p uint64
			fmt.Sscanf(strings.TrimPrefix(cnt, "["), "%d:", &p)
			return p
		}
	}
	t.Fatal("no base drop rule for the test bridge")
	return 0
}

// TestPublishedPortIsReachableFromLoopbackOnly: a published port forwards
// from the host's loopback to the sandbox, and exists on no other address.
func TestPublishedPortIsReachableFromLoopbackOnly(t *testing.T) {
	h := env
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sb := h.start(t, profile{Name: "publish", Args: []string{"/usr/local/bin/cgprobe", "listen", "8080"},
		Extra: fmt.Sprintf("publish: [\"127.0.0.1:%d:8080\"]\n", port)})
	ip := h.sandboxIP(t, sb.name)
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got, err = hostConnect(fmt.Sprintf("127.0.0.1:%d", port)); err == nil && got != "" {
			break
		}
	}
	if !strings.Contains(got, ip+":8080") {
		t.Fatalf("published port answered %q (%v), want the sandbox at %s:8080", got, err, ip)
	}
	for _, addr := range hostAddrs(t) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", addr, port), time.Second); err == nil {
			c.Close()
			t.Fatalf("published port reachable on %s", addr)
		}
	}
	if !strings.Contains(sb.out.String(), "published (this host only)") {
		t.Errorf("run did not say what it published:\n%s", sb.out.String())
	}
}

// TestStatusShowsAllowlistDenialsAndRules: after real traffic, status reports
// the addresses each entry opens, the refused queries, the answers dropped for
// private targets, the denied packets with their destination, the counters,
// and (--rules) the rules and set members; the audit log has the same events.
func TestStatusShowsAllowlistDenialsAndRules(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "egress-status", Extra: egressProfile})
	var r probeResolved
	h.netProbe(t, sb.name, &r, "resolve", "api.example.test")
	h.netProbe(t, sb.name, &r, "resolve", "evil.example.org")
	h.netProbe(t, sb.name, &r, "resolve", "meta.example.test")
	if c := h.sandboxConnect(t, sb.name, apiAddr+":443"); !c.OK {
		t.Fatalf("allowed connect failed: %+v", c)
	}
	h.sandboxConnect(t, sb.name, deniedAddr+":443")

	var st []struct {
		Allowlist []struct {
			Host      string `json:"host"`
			Addresses []struct {
				Name             string `json:"name"`
				Address          string `json:"address"`
				ExpiresInSeconds int64  `json:"expires_in_seconds"`
				Source           string `json:"source"`
			} `json:"addresses"`
		} `json:"allowlist"`
		Packets struct {
			Accepted uint64 `json:"accepted_packets"`
			Denied   uint64 `json:"denied_packets"`
		} `json:"packets"`
		Denied []struct {
			Destination string `json:"destination"`
			Port        int    `json:"port"`
			Protocol    string `json:"protocol"`
		} `json:"denied_packets"`
		Refused []struct {
			Name, Type, Reason string
		} `json:"refused_queries"`
		Dropped []struct {
			Name    string `json:"name"`
			Address string `json:"address"`
		} `json:"dropped_answers"`
		Rules      []string `json:"rules"`
		SetMembers []struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		} `json:"set_members"`
	}
	// Snapshots and logs are published asynchronously; give them a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, stderr, code := h.cg("status", "--json", "--rules", sb.name)
		if code != 0 {
			t.Fatalf("status: %s", stderr)
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 {
			t.Fatalf("status JSON: %v\n%s", err, out)
		}
		if len(st[0].Denied) > 0 && len(st[0].Refused) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	s := st[0]
	found := false
	for _, a := range s.Allowlist {
		for _, ad := range a.Addresses {
			if a.Host == "api.example.test" && ad.Address == apiAddr && ad.ExpiresInSeconds > 0 && ad.Source != "" {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("allowlist does not show %s for api.example.test: %+v", apiAddr, s.Allowlist)
	}
	if s.Packets.Accepted == 0 || s.Packets.Denied == 0 {
		t.Errorf("counters %+v", s.Packets)
	}
	deniedSeen := false
	for _, d := range s.Denied {
		if d.Destination == deniedAddr && d.Port == 443 && d.Protocol == "tcp" {
			deniedSeen = true
		}
	}
	if !deniedSeen {
		t.Errorf("denied packets lack %s:443/tcp: %+v", deniedAddr, s.Denied)
	}
	refusedSeen := false
	for _, q := range s.Refused {
		if q.Name == "evil.example.org" {
			refusedSeen = true
		}
	}
	if !refusedSeen {
		t.Errorf("refused queries lack evil.example.org: %+v", s.Refused)
	}
	metaDropped := false
	for _, d := range s.Dropped {
		if d.Name == "meta.example.test" && d.Address == metadataAddr {
			metaDropped = true
		}
	}
	if !metaDropped {
		t.Errorf("dropped answers lack meta.example.test -> %s: %+v", metadataAddr, s.Dropped)
	}
	rules := strings.Join(s.Rules, "\n")
	if !strings.Contains(rules, "--match-set cg-") || !strings.Contains(rules, "-j DROP") || !strings.Contains(rules, "DNAT") {
		t.Errorf("rules:\n%s", rules)
	}
	memberSeen := false
	for _, m := range s.SetMembers {
		if m.Address == apiAddr && m.Port == 443 {
			memberSeen = true
		}
	}
	if !memberSeen {
		t.Errorf("set members lack %s:443: %+v", apiAddr, s.SetMembers)
	}
	table, _, _ := h.cg("status", sb.name)
	for _, want := range []string{"api.example.test", apiAddr, "refused DNS queries", "evil.example.org", "denied connection attempts"} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}
	audit, err := os.ReadFile(h.stateDir + "/audit.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"started"`, `"kind":"refused_query"`, `"kind":"denied_packet"`, `"kind":"dropped_answer"`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

// TestAWildcardLetsThroughOnlyItsBound: a wildcard with max_names 3 answers
// three distinct names through the gate; a fourth, which the upstream
// answers (the control), is refused by the gate without reaching the
// upstream, while the names it holds keep being answered; status names the
// limit and shows the wildcard full.
func TestAWildcardLetsThroughOnlyItsBound(t *testing.T) {
	h := env
	const zone = "bound.example.test"
	names := []string{"n0." + zone, "n1." + zone, "n2." + zone, "n3." + zone}
	for _, n := range names {
		h.net.dns.set(n, 300, apiAddr)
		t.Cleanup(func() { h.net.dns.set(n, 300) })
	}
	if r, err := hostDNS(names[3], dns.TypeA); err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("control: the upstream does not answer %s from the host: %v %v", names[3], r, err)
	}
	asked := h.net.dns.timesAsked(names[3]) // the control's question
	entry := `    - {host: "*.` + zone + `", ports: [443], max_names: 3, new_names_per_minute: 100}` + "\n  dns:"
	sb := h.start(t, profile{Name: "egress-wild-bound", Extra: strings.Replace(egressProfile, "  dns:", entry, 1)})
	var d probeDNS
	for _, n := range names[:3] {
		h.netProbe(t, sb.name, &d, "dns", testGW+":53", n, "A")
		if d.Rcode != "NOERROR" || len(d.Answers) != 1 || !strings.Contains(d.Answers[0], apiAddr) {
			t.Fatalf("%s within the bound: %+v", n, d)
		}
	}
	h.netProbe(t, sb.name, &d, "dns", testGW+":53", names[3], "A")
	if d.Rcode != "REFUSED" || len(d.Answers) != 0 {
		t.Fatalf("a fourth name under a wildcard with max_names 3: %+v", d)
	}
	if h.net.dns.timesAsked(names[3]) != asked {
		t.Fatal("the name over the bound reached the upstream: data left through DNS")
	}
	h.netProbe(t, sb.name, &d, "dns", testGW+":53", names[0], "A")
	if d.Rcode != "NOERROR" || len(d.Answers) != 1 {
		t.Fatalf("a name the full wildcard holds is no longer answered: %+v", d)
	}

	var st []struct {
		Allowlist []struct {
			Host     string `json:"host"`
			Wildcard *struct {
				Names    int `json:"names"`
				MaxNames int `json:"max_names"`
			} `json:"wildcard"`
		} `json:"allowlist"`
		Refused []struct {
			Name, Reason string
		} `json:"refused_queries"`
	}
	want := "wildcard *." + zone + " holds 3 names (max_names)"
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, stderr, code := h.cg("status", "--json", sb.name)
		if code != 0 {
			t.Fatalf("status: %s", stderr)
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 {
			t.Fatalf("status JSON: %v\n%s", err, out)
		}
		if slices.ContainsFunc(st[0].Refused, func(r struct{ Name, Reason string }) bool { return r.Name == names[3] && r.Reason == want }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not show %s refused with %q: %+v", names[3], want, st[0].Refused)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, a := range st[0].Allowlist {
		if a.Host == "*."+zone && (a.Wildcard == nil || a.Wildcard.Names != 3 || a.Wildcard.MaxNames != 3) {
			t.Errorf("status of the wildcard entry: %+v", a.Wildcard)
		}
	}
}
