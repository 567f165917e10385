package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
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
	if got, err := hostSend(at(apiAddr), plainHTTP); err != nil || !strings.HasPrefix(got, "plain hello") {
		t.Fatalf("control: the CDN does not answer plain HTTP from the host (%q, %v)", got, err)
	}
	if got, err := hostConnect(at(apiAddr)); err != nil || !strings.HasPrefix(got, "plain hello") {
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
	if strings.Contains(plain.Got, "plain hello") {
		t.Errorf("plain HTTP on a TLS port reached the server: %+v", plain)
	}
	if c := h.sandboxConnect(t, name, at(apiAddr)); strings.Contains(c.Got, "plain hello") {
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
