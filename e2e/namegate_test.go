package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/netrules/nettest"
	"github.com/clawguard/clawguard/verify"
)

// nameGateProfile allowlists two names on the CDN's port behind the name
// gate: api.example.test (at apiAddr) and cdn-b.example.test (at api2Addr).
var nameGateProfile = fmt.Sprintf(`egress:
  allow:
    - {host: api.example.test, ports: [%d], tls: true}
    - {host: cdn-b.example.test, ports: [%d], tls: true}
  dns: {min_ttl: 1s, max_ttl: 2s}
`, cdnPort, cdnPort)

// sandboxTLS makes a TLS connection from inside the sandbox naming
// serverName ("" for none).
func (h *harness) sandboxTLS(t testing.TB, name, addr, serverName string) probeConnected {
	t.Helper()
	var c probeConnected
	h.netProbe(t, name, &c, "tls", addr, serverName, "3s")
	return c
}

// TestTheNameGatePassesOnlyANameAtTheAddressItResolvedTo: one address
// serves every name, as a CDN does. From the host (the control), any name
// is served at any of its addresses, and plain text too: an address
// allowlist alone lets the agent reach every site there. Through the name
// gate only the allowlisted name at the very address this sandbox resolved
// it to is served: another name, no name, plain text, and an allowlisted
// name at the address learned for another name are refused; and once a
// name has moved, its old address is refused and the new one served.
func TestTheNameGatePassesOnlyANameAtTheAddressItResolvedTo(t *testing.T) {
	h := env
	t.Cleanup(func() { h.net.dns.set("cdn-b.example.test", 300, api2Addr) }) // the move below
	at := func(addr string) string { return fmt.Sprintf("%s:%d", addr, cdnPort) }
	for _, tc := range []struct{ addr, name string }{
		{apiAddr, "api.example.test"}, {apiAddr, "attacker.example"}, {apiAddr, ""}, {api2Addr, "api.example.test"},
	} {
		got, err := hostTLS(at(tc.addr), tc.name)
		if err != nil || !strings.HasPrefix(got, "served "+tc.name+" at") {
			t.Fatalf("control: the CDN does not serve %q at %s from the host (%q, %v): refusing it below would prove nothing", tc.name, tc.addr, got, err)
		}
	}
	const plainHTTP = "GET / HTTP/1.0\r\n\r\n"
	if got, err := hostSend(at(apiAddr), plainHTTP); err != nil || !strings.HasSuffix(strings.TrimSpace(got), "(plain)") {
		t.Fatalf("control: the CDN does not answer plain HTTP from the host (%q, %v)", got, err)
	}
	if got, err := hostConnect(at(apiAddr)); err != nil || !strings.HasSuffix(strings.TrimSpace(got), "(plain)") {
		t.Fatalf("control: the CDN does not greet a silent client from the host (%q, %v)", got, err)
	}

	const name = "namegate"
	h.start(t, profile{Name: name, Extra: nameGateProfile})
	for _, n := range []string{"api.example.test", "cdn-b.example.test"} {
		var r probeResolved
		h.netProbe(t, name, &r, "resolve", n)
		if len(r.Addrs) != 1 {
			t.Fatalf("resolve %s: %+v", n, r)
		}
	}
	if c := h.sandboxTLS(t, name, at(apiAddr), "api.example.test"); !c.OK || !strings.HasPrefix(c.Got, "served api.example.test at "+at(apiAddr)) {
		t.Fatalf("the allowlisted name at its own address: %+v", c)
	}
	if c := h.sandboxTLS(t, name, at(api2Addr), "cdn-b.example.test"); !c.OK || !strings.HasPrefix(c.Got, "served cdn-b.example.test") {
		t.Fatalf("the second allowlisted name at its own address: %+v", c)
	}
	for _, tc := range []struct{ what, addr, serverName string }{
		{"another site on the same address", apiAddr, "attacker.example"},
		{"no server name", apiAddr, ""},
		{"an allowlisted name at the address learned for another", api2Addr, "api.example.test"},
	} {
		if c := h.sandboxTLS(t, name, at(tc.addr), tc.serverName); c.OK {
			t.Errorf("%s (%q at %s) was served: %+v", tc.what, tc.serverName, tc.addr, c)
		}
	}
	var plain probeConnected
	h.netProbe(t, name, &plain, "connect", at(apiAddr), "2s", plainHTTP)
	if strings.Contains(plain.Got, "(plain)") {
		t.Errorf("plain HTTP on a TLS port reached the server: %+v", plain)
	}
	if c := h.sandboxConnect(t, name, at(apiAddr)); strings.Contains(c.Got, "(plain)") {
		t.Errorf("a silent client on a TLS port reached the server: %+v", c)
	}

	// Straight to the gate's own address: the control, with the rule that
	// drops it removed, reaches the gate's socket (a handshake, or the
	// gate's reset when it refuses first: an answer either way, and a slot
	// taken); with the rule, nothing answers at all.
	direct := func() probeConnected {
		var c probeConnected
		h.netProbe(t, name, &c, "connect", fmt.Sprintf("127.0.0.1:%d", netrules.NameGatePort), "1s", "x")
		return c
	}
	rule := []string{"-i", "lo", "-p", "tcp", "-m", "tcp", "--dport", strconv.Itoa(netrules.NameGatePort), "-m", "conntrack", "!", "--ctstate", "DNAT",
		"-m", "comment", "--comment", "clawguard sandbox " + name, "-j", "DROP"}
	ipt := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", "cg-" + name, "iptables"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %v: %v %s", args, err, out)
		}
	}
	answered := func(c probeConnected) bool { return c.OK || strings.Contains(c.Error, "ECONNRESET") }
	ipt(append([]string{"-D", "CG-IN"}, rule...)...)
	if c := direct(); !answered(c) {
		ipt(append([]string{"-I", "CG-IN", "1"}, rule...)...)
		t.Fatalf("control: without the rule the gate's own address does not answer either (%+v): refusing it proves nothing", c)
	}
	ipt(append([]string{"-I", "CG-IN", "1"}, rule...)...)
	if c := direct(); answered(c) {
		t.Errorf("a connection straight to the gate was answered: %+v", c)
	}

	// status counts and names what was refused.
	out, _, _ := h.cg("status", "--json", name)
	var st []struct {
		NameGate *struct {
			Ports    []int `json:"ports"`
			Passed   int   `json:"passed"`
			Refused  int   `json:"refused"`
			Refusals []struct {
				ServerName string `json:"server_name"`
				Reason     string `json:"reason"`
			} `json:"refusals"`
		} `json:"name_gate"`
	}
	var ng = func() string {
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 || st[0].NameGate == nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		var reasons []string
		for _, r := range st[0].NameGate.Refusals {
			reasons = append(reasons, r.ServerName+": "+r.Reason)
		}
		return strings.Join(reasons, "; ")
	}
	// The snapshot is written a quarter of a second after a change.
	for i := 0; i < 20; i++ {
		time.Sleep(250 * time.Millisecond)
		out, _, _ = h.cg("status", "--json", name)
		if r := ng(); strings.Contains(r, "learned for cdn-b.example.test") && st[0].NameGate.Refused >= 4 {
			break
		}
	}
	g := st[0].NameGate
	if g.Passed < 2 || g.Refused < 4 || !strings.Contains(ng(), "attacker.example: server name attacker.example is not allowlisted") ||
		!strings.Contains(ng(), "learned for cdn-b.example.test") {
		t.Errorf("status name_gate: passed %d, refused %d: %s", g.Passed, g.Refused, ng())
	}

	// verify proves it from inside, against the host's own control.
	if v, _ := h.verifySandbox(t, name); result(v, "name-gate").Status != verify.Pass {
		t.Errorf("verify name-gate: %+v\n%s", result(v, "name-gate"), v.explain())
	}

	// The name moves: once its binding has expired (TTL 1s plus the 10 s
	// grace), its old address is refused, and the new one is served as soon
	// as it resolves.
	h.net.dns.set("cdn-b.example.test", 1, apiAddr)
	time.Sleep(13 * time.Second)
	var r probeResolved
	h.netProbe(t, name, &r, "resolve", "cdn-b.example.test")
	if len(r.Addrs) != 1 || r.Addrs[0] != apiAddr {
		t.Fatalf("cdn-b.example.test after the move: %+v", r)
	}
	if c := h.sandboxTLS(t, name, at(api2Addr), "cdn-b.example.test"); c.OK {
		t.Errorf("the name at its old address, after its binding expired, was served: %+v", c)
	}
	if c := h.sandboxTLS(t, name, at(apiAddr), "cdn-b.example.test"); !c.OK || !strings.HasPrefix(c.Got, "served cdn-b.example.test at "+at(apiAddr)) {
		t.Errorf("the name at its new address: %+v", c)
	}
}

// TestTheNameGateFailsClosedAndComesBackWithTheDaemon: with the daemon
// (and so its gate) killed, TLS connections are refused, never passed
// unchecked; the restarted daemon adopts the sandbox and its gate passes
// them again, with no rule duplicated.
func TestTheNameGateFailsClosedAndComesBackWithTheDaemon(t *testing.T) {
	h := env
	at := fmt.Sprintf("%s:%d", apiAddr, cdnPort)
	d := h.startDaemon(t)
	const name = "namegate-daemon"
	_, file := h.project(t, profile{Name: name, Extra: nameGateProfile})
	if _, stderr, code := h.cg("run", "--detach", "--profile", file); code != 0 {
		t.Fatalf("run --detach: exit %d: %s\ndaemon:\n%s", code, stderr, d.out.String())
	}
	t.Cleanup(func() { h.cg("stop", "--timeout", "1s", name) })
	var r probeResolved
	h.netProbe(t, name, &r, "resolve", "api.example.test")
	if c := h.sandboxTLS(t, name, at, "api.example.test"); !c.OK {
		dump, _ := exec.Command("sh", "-c", "ip netns exec cg-"+name+" iptables-save -c; ip netns exec cg-"+name+" ss -ltnp").CombinedOutput()
		t.Fatalf("control: the allowlisted name is not served with the daemon up: %+v\n%s\ndaemon:\n%s", c, dump, d.out.String())
	}
	before := nettest.KernelState(t)

	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	if c := h.sandboxTLS(t, name, at, "api.example.test"); c.OK {
		t.Fatalf("with the daemon killed, a TLS connection was served: %+v", c)
	}

	h.startDaemon(t)
	if after := nettest.KernelState(t); after != before {
		t.Fatalf("kernel state after adoption differs:\n%s", nettest.Diff(before, after))
	}
	var c probeConnected
	for i := 0; i < 20; i++ {
		if c = h.sandboxTLS(t, name, at, "api.example.test"); c.OK {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !c.OK {
		t.Fatalf("after adoption the allowlisted name is not served: %+v", c)
	}
}

// TestAThousandConnectionsPassTheGateAtOnce: 1,000 TLS connections to an
// allowlisted name, all open through the gate at the same time, every one
// served.
func TestAThousandConnectionsPassTheGateAtOnce(t *testing.T) {
	h := env
	const name, n = "namegate-many", 1000
	h.start(t, profile{Name: name, Extra: nameGateProfile + "resources: {connections: 2048, new_connections_per_second: 5000}\n"})
	var r probeResolved
	h.netProbe(t, name, &r, "resolve", "api.example.test")
	var held struct {
		Open  int
		Error string
	}
	h.netProbe(t, name, &held, "tlshold", fmt.Sprintf("%s:%d", apiAddr, cdnPort), "api.example.test", strconv.Itoa(n), "1")
	if held.Open != n {
		t.Fatalf("%d of %d connections open through the gate at once: %s", held.Open, n, held.Error)
	}
}

// nameGateStatus is status --json's name_gate of one sandbox.
type nameGateStatus struct {
	Ports     []int             `json:"ports"`
	Passed    int               `json:"passed"`
	Refused   int               `json:"refused"`
	RefusedBy map[string]uint64 `json:"refused_by"`
	Refusals  []struct {
		ServerName  string `json:"server_name"`
		Destination string `json:"destination"`
		Kind        string `json:"kind"`
		Reason      string `json:"reason"`
	} `json:"refusals"`
	ByAddress []string `json:"by_address"`
}

// nameGateOf reads the sandbox's name_gate from status, once the snapshot
// (written a quarter of a second after a change) satisfies done, or after
// five seconds.
func (h *harness) nameGateOf(t *testing.T, name string, done func(nameGateStatus) bool) nameGateStatus {
	t.Helper()
	var g nameGateStatus
	for i := 0; i < 20; i++ {
		out, _, _ := h.cg("status", "--json", name)
		var st []struct {
			NameGate *nameGateStatus `json:"name_gate"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 || st[0].NameGate == nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if g = *st[0].NameGate; done(g) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	return g
}

// TestPort443IsBehindTheNameGateUnlessTheEntryOptsOut: a host entry on 443
// says nothing of TLS, and its connections are checked by name; an entry
// with tls: false is checked by address only, and status and verify say
// so; an address both names resolve to stays behind the gate.
func TestPort443IsBehindTheNameGateUnlessTheEntryOptsOut(t *testing.T) {
	h := env
	const shared = "shared.example.test" // opted out, at the gated name's address
	h.net.dns.set(shared, 300, apiAddr)
	at := func(addr string) string { return addr + ":443" }
	for _, addr := range []string{apiAddr, api2Addr} {
		if got, err := hostTLS(at(addr), "attacker.example"); err != nil || !strings.HasPrefix(got, "served attacker.example") {
			t.Fatalf("control: %s does not serve any name from the host (%q, %v): refusing it below would prove nothing", at(addr), got, err)
		}
	}
	const name = "namegate-443"
	h.start(t, profile{Name: name, Extra: `egress:
  allow:
    - {host: api.example.test, ports: [443]}
    - {host: cdn-b.example.test, ports: [443], tls: false}
  dns: {min_ttl: 1s, max_ttl: 2s}
`})
	var r probeResolved
	h.netProbe(t, name, &r, "resolve", "api.example.test")
	h.netProbe(t, name, &r, "resolve", "cdn-b.example.test")
	if c := h.sandboxTLS(t, name, at(apiAddr), "api.example.test"); !c.OK || !strings.HasPrefix(c.Got, "served api.example.test") {
		t.Fatalf("the allowlisted name on 443: %+v", c)
	}
	if c := h.sandboxTLS(t, name, at(apiAddr), "attacker.example"); c.OK {
		t.Errorf("another name on 443 of an entry that did not opt out was served: %+v", c)
	}
	if c := h.sandboxConnect(t, name, at(apiAddr)); strings.Contains(c.Got, "(plain)") {
		t.Errorf("plain TCP on 443 of an entry that did not opt out reached the server: %+v", c)
	}
	// The opted-out entry: any name, and plain text, by address alone.
	if c := h.sandboxTLS(t, name, at(api2Addr), "attacker.example"); !c.OK || !strings.HasPrefix(c.Got, "served attacker.example") {
		t.Errorf("tls: false: another name at its address was not served, as checking by address only lets it: %+v", c)
	}
	if c := h.sandboxConnect(t, name, at(api2Addr)); !strings.Contains(c.Got, "(plain)") {
		t.Errorf("tls: false: plain TCP on 443 did not reach its server: %+v", c)
	}
	g := h.nameGateOf(t, name, func(g nameGateStatus) bool { return g.Refused >= 2 })
	if !slices.Equal(g.Ports, []int{443}) || !slices.Equal(g.ByAddress, []string{"cdn-b.example.test:443"}) || g.RefusedBy["not_allowlisted"] < 1 {
		t.Errorf("status name_gate: %+v", g)
	}
	if out, _, _ := h.cg("status", name); !strings.Contains(out, "by address only, past the name gate (tls: false): cdn-b.example.test:443") ||
		!strings.Contains(out, "not_allowlisted") {
		t.Errorf("status does not say which entry is checked by address, or why connections were refused:\n%s", out)
	}
	v, _ := h.verifySandbox(t, name)
	if res := result(v, "name-gate"); res.Status != verify.Pass || !strings.Contains(res.Seen, "tls: false): cdn-b.example.test:443") {
		t.Errorf("verify name-gate: %+v\n%s", res, v.explain())
	}

	// An opted-out name at the address of a name behind the gate leaves
	// that address behind the gate: checking by name wins while any name
	// there asks for it. (The gated name is under a wildcard: exact names
	// are resolved as the sandbox starts, before the control could run.)
	const gated = "x.gated.example.test"
	h.net.dns.set(gated, 300, apiAddr)
	restart := "namegate-443-shared"
	h.start(t, profile{Name: restart, Extra: `egress:
  allow:
    - {host: "*.gated.example.test", ports: [443]}
    - {host: ` + shared + `, ports: [443], tls: false}
  dns: {min_ttl: 1s, max_ttl: 2s}
`})
	h.netProbe(t, restart, &r, "resolve", shared)
	if c := h.sandboxTLS(t, restart, at(apiAddr), "attacker.example"); !c.OK {
		t.Fatalf("control: with only the opted-out name resolved, its address is checked by address: %+v", c)
	}
	h.netProbe(t, restart, &r, "resolve", gated)
	if c := h.sandboxTLS(t, restart, at(apiAddr), gated); !c.OK {
		t.Fatalf("the name behind the gate at its own address: %+v", c)
	}
	h.netProbe(t, restart, &r, "resolve", shared)
	if c := h.sandboxTLS(t, restart, at(apiAddr), "attacker.example"); c.OK {
		t.Errorf("an address a name behind the gate resolved to passed another name because an opted-out name shares it: %+v", c)
	}
	if c := h.sandboxTLS(t, restart, at(apiAddr), shared); !c.OK {
		t.Errorf("the opted-out name itself, over TLS at the shared address: %+v", c)
	}
}

// TestAClientHelloIsJudgedWholeWhateverItsShape: a ClientHello sent a byte
// a segment, or grown past 2 KB (more than post-quantum key shares add),
// is read whole and passes; half of one is closed once the gate's time
// for it is up; a handshake record of garbage is refused. Each shape,
// sent from the host, gets the server's answer.
func TestAClientHelloIsJudgedWholeWhateverItsShape(t *testing.T) {
	h := env
	at := apiAddr + ":443"
	type odd struct {
		probeConnected
		HelloBytes int
	}
	fromHost := func(mode string) odd {
		t.Helper()
		var o odd
		out, err := exec.Command(h.probe, "tlsodd", at, "api.example.test", mode, "3s").Output()
		if err != nil || json.Unmarshal(out, &o) != nil {
			t.Fatalf("tlsodd %s from the host: %v %s", mode, err, out)
		}
		return o
	}
	for _, mode := range []string{"split", "big"} {
		if o := fromHost(mode); !o.OK || !strings.HasPrefix(o.Got, "served api.example.test") {
			t.Fatalf("control: the server does not serve a %s ClientHello from the host: %+v", mode, o)
		}
	}
	if o := fromHost("garbage"); o.Got == "" {
		t.Fatalf("control: the server does not answer garbage from the host (a TLS alert): %+v", o)
	}

	const name = "namegate-shapes"
	h.start(t, profile{Name: name, Extra: "egress:\n  allow:\n    - {host: api.example.test, ports: [443]}\n"})
	var r probeResolved
	h.netProbe(t, name, &r, "resolve", "api.example.test")
	inside := func(mode, timeout string) odd {
		var o odd
		h.netProbe(t, name, &o, "tlsodd", at, "api.example.test", mode, timeout)
		return o
	}
	if o := inside("split", "5s"); !o.OK || !strings.HasPrefix(o.Got, "served api.example.test") {
		t.Errorf("a ClientHello of %d bytes, one a segment: %+v", o.HelloBytes, o)
	}
	if o := inside("big", "5s"); !o.OK || o.HelloBytes < 2048 || !strings.HasPrefix(o.Got, "served api.example.test") {
		t.Errorf("a ClientHello of %d bytes: %+v", o.HelloBytes, o)
	}
	if o := inside("garbage", "5s"); o.Got != "" {
		t.Errorf("garbage on a TLS port reached the server, which answered %q", o.Got)
	}
	start := time.Now()
	o := inside("stall", "30s")
	took := time.Since(start)
	if o.Got != "" || took > 20*time.Second {
		t.Errorf("half a ClientHello: %+v after %s, want closed, unanswered, within the gate's 10 s", o, took)
	}
	g := h.nameGateOf(t, name, func(g nameGateStatus) bool { return g.RefusedBy["timeout"] >= 1 && g.RefusedBy["not_tls"] >= 1 })
	if g.RefusedBy["timeout"] != 1 || g.RefusedBy["not_tls"] != 1 || g.Passed < 2 {
		t.Errorf("status name_gate: %+v, want 2 passed, 1 timeout, 1 not_tls", g)
	}
}
