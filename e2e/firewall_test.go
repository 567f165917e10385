package e2e

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawguard/clawguard/netrules"
)

// TestAFirewallReloadIsUndone: the host's own tools flush FORWARD and INPUT
// (what ufw reload, firewall-cmd --reload and netfilter-persistent do) and
// put an ACCEPT above clawguard's hooks (what a VPN client does). The
// control: with the supervisor's firewall guard and the second layer in the
// sandbox's own namespace both off, the sandbox then reaches a destination
// outside its allowlist and a port of the host. With the second layer
// alone, and nothing repairing the host, both stay closed for as long as
// the host's rules stay broken, and the allowlisted destination still
// answers. With the guard, the hooks are back at the top of FORWARD and
// INPUT within 2 s (the test reports how soon), and the audit log says what
// was put back.
func TestAFirewallReloadIsUndone(t *testing.T) {
	h := env
	mustAnswerFromHost(t, deniedAddr+":443")
	gw := netrules.Gateway(netip.MustParsePrefix(testSubnet))
	hostPort := net.JoinHostPort(gw.String(), "18099")
	const allow = "egress:\n  allow:\n    - {host: api.example.test, ports: [443], tls: false}\n"
	open := func(name, addr string) bool {
		t.Helper()
		var c probeConnected
		h.netProbe(t, name, &c, "connect", addr, "500ms")
		return c.OK
	}

	// A resolver of the host's own on the gateway's port 53 (dnsmasq,
	// unbound): with the host's redirect to the gate flushed, a query to
	// the gateway would reach it and carry any name out.
	hostDNS := net.JoinHostPort(gw.String(), "53")
	ask := func(name string) probeDNS {
		t.Helper()
		var d probeDNS
		h.netProbe(t, name, &d, "dns", hostDNS, "exfil.example.org", "A", "udp")
		return d
	}

	t.Run("control: without the guard a reload opens the sandbox", func(t *testing.T) {
		sb := h.start(t, profile{Name: "fw-unguarded", Extra: allow, Weaken: "firewall-guard,inner-layer"})
		defer h.stopSandbox(t, sb)
		listenOn(t, hostPort)
		heard := catchUDP(t, hostDNS)
		if open("fw-unguarded", deniedAddr+":443") || open("fw-unguarded", hostPort) {
			t.Fatal("open before the reload")
		}
		reloadFirewall(t)
		time.Sleep(2 * enforceGuardPoll)
		if !open("fw-unguarded", deniedAddr+":443") || !open("fw-unguarded", hostPort) {
			t.Fatal("after the reload, with no guard, the sandbox is still closed: the attack did not work, so the guard below proves nothing")
		}
		ask("fw-unguarded")
		if heard.Load() == 0 {
			t.Fatal("after the reload, with no guard, the host's resolver heard no query: the attack did not work")
		}
	})

	t.Run("the second layer holds while the host's rules are gone", func(t *testing.T) {
		sb := h.start(t, profile{Name: "fw-inner", Extra: allow, Weaken: "firewall-guard"})
		defer h.stopSandbox(t, sb)
		listenOn(t, hostPort)
		heard := catchUDP(t, hostDNS)
		reloadFirewall(t)
		// Probed over more than one guard period, one probe after another:
		// with nothing to repair the host, "throughout" is every probe.
		began := time.Now()
		for n := 0; time.Since(began) < 2*enforceGuardPoll; n++ {
			if open("fw-inner", deniedAddr+":443") {
				t.Fatalf("probe %d: the denied destination is open with the host's rules flushed", n)
			}
			if open("fw-inner", hostPort) {
				t.Fatalf("probe %d: the host's port is open with the host's rules flushed", n)
			}
		}
		if hooksFirst(t) {
			t.Fatal("the hooks are back: this case needs them gone to prove the second layer")
		}
		if !open("fw-inner", apiAddr+":443") {
			t.Error("the allowlisted destination is closed by the second layer")
		}
		// The gateway's port 53 still leads to the gate, which refuses.
		if d := ask("fw-inner"); d.Rcode != "NXDOMAIN" || heard.Load() != 0 {
			t.Errorf("a query to the gateway with the host's redirect gone: %+v, the host's resolver heard %d", d, heard.Load())
		}
	})

	t.Run("the guard puts the hooks back at once", func(t *testing.T) {
		sb := h.start(t, profile{Name: "fw-guarded", Extra: allow})
		defer h.stopSandbox(t, sb)
		listenOn(t, hostPort)
		if !open("fw-guarded", apiAddr+":443") || open("fw-guarded", deniedAddr+":443") {
			t.Fatal("not enforced before the reload")
		}
		began := time.Now()
		reloadFirewall(t)
		var took time.Duration
		for {
			if hooksFirst(t) {
				took = time.Since(began)
				break
			}
			if time.Since(began) > 2*time.Second {
				t.Fatalf("the hooks are not back at the top of FORWARD and INPUT 2s after the reload:\n%s", run2("iptables", "-S"))
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("hooks back at the top %s after the reload", took.Round(time.Millisecond))
		if open("fw-guarded", deniedAddr+":443") {
			t.Error("the denied destination is open after the guard restored the rules")
		}
		if open("fw-guarded", hostPort) {
			t.Error("the host's port is open after the guard restored the rules")
		}
		if !open("fw-guarded", apiAddr+":443") {
			t.Error("the allowlisted destination is closed after the guard restored the rules")
		}
		// Another's rule is not ours to delete: it stays, below ours.
		if !strings.Contains(run2("iptables", "-S", "FORWARD"), "e2e foreign rule") {
			t.Error("the guard removed the host's own rule")
		}
		audit, _ := os.ReadFile(h.stateDir + "/audit.jsonl")
		if !strings.Contains(string(audit), `"firewall-restored"`) || !strings.Contains(string(audit), "CG-FORWARD") {
			t.Error("the audit log does not say the firewall was restored, and what")
		}
	})
}

// listenOn accepts (and closes) connections on the host at addr until the
// test ends: a host service a sandbox must not reach.
func listenOn(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// catchUDP counts the datagrams that reach addr on the host until the test
// ends, answering none.
func catchUDP(t *testing.T, addr string) *atomic.Int64 {
	t.Helper()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var n atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return &n
}

// enforceGuardPoll is the guard's bound where the kernel announces nothing.
const enforceGuardPoll = time.Second

// reloadFirewall does what a host's firewall reload does to clawguard: it
// flushes FORWARD, INPUT and nat PREROUTING (a restore of a saved file
// replaces every table) and inserts a rule that accepts everything from
// the sandboxes' bridge above whatever comes next. The host's own rules
// in those chains before the test are put back at cleanup, and the foreign
// rules removed.
func reloadFirewall(t *testing.T) {
	t.Helper()
	saved := map[string][]string{}
	for _, chain := range []string{"filter FORWARD", "filter INPUT", "nat PREROUTING"} {
		table, name, _ := strings.Cut(chain, " ")
		for _, l := range strings.Split(run2("iptables", "-t", table, "-S", name), "\n") {
			if strings.HasPrefix(l, "-A ") && !strings.Contains(l, "clawguard") {
				saved[table] = append(saved[table], l)
			}
		}
	}
	foreign := [][]string{
		{"FORWARD", "-i", testBridge, "-m", "comment", "--comment", "e2e foreign rule", "-j", "ACCEPT"},
		{"INPUT", "-i", testBridge, "-m", "comment", "--comment", "e2e foreign rule", "-j", "ACCEPT"},
	}
	t.Cleanup(func() {
		for _, r := range foreign {
			for exec.Command("iptables", append([]string{"-D"}, r...)...).Run() == nil {
			}
		}
		for table, lines := range saved {
			for _, l := range lines {
				// -S prints shell-quoted rules (comments with spaces).
				if exec.Command("sh", "-c", "iptables -t "+table+" -C "+strings.TrimPrefix(l, "-A ")).Run() != nil {
					_ = exec.Command("sh", "-c", "iptables -t "+table+" "+l).Run()
				}
			}
		}
	})
	mustRun(t, "iptables", "-F", "FORWARD")
	mustRun(t, "iptables", "-F", "INPUT")
	mustRun(t, "iptables", "-t", "nat", "-F", "PREROUTING")
	for _, r := range foreign {
		mustRun(t, append([]string{"iptables", "-I"}, r...)...)
	}
}

// hooksFirst reports whether clawguard's hooks are the first rules of
// FORWARD and INPUT.
func hooksFirst(t *testing.T) bool {
	t.Helper()
	for chain, hook := range map[string]string{"FORWARD": "-j CG-FORWARD", "INPUT": "-j CG-INPUT"} {
		var first string
		for _, l := range strings.Split(run2("iptables", "-S", chain), "\n") {
			if strings.HasPrefix(l, "-A ") {
				first = l
				break
			}
		}
		if !strings.HasSuffix(first, hook) {
			return false
		}
	}
	return true
}

// run2 is a command's output, whatever its exit.
func run2(args ...string) string {
	out, _ := exec.Command(args[0], args[1:]...).CombinedOutput()
	return string(out)
}

// TestNothingComesInButReplies: the agent listens on a port it does not
// publish. Anyone who can route to the sandbox (a process of the host; a
// neighbour on the LAN while a reload has the host's FORWARD open) could
// connect and take whatever the agent sends back, a channel no egress rule
// sees. The control, without the second layer: the host connects. With
// it, the connection goes unanswered. (Published ports still answer:
// TestPublishedPortIsReachableFromLoopbackOnly runs with the second layer.)
func TestNothingComesInButReplies(t *testing.T) {
	h := env
	for _, tc := range []struct {
		name, weaken string
		reached      bool
	}{
		{"control: without the second layer the host connects in", "inner-layer", true},
		{"the second layer lets nothing in", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := h.start(t, profile{Name: "inbound", Weaken: tc.weaken, Args: []string{"/usr/local/bin/cgprobe", "listen", "8080"}})
			defer h.stopSandbox(t, sb)
			addr := h.sandboxIP(t, "inbound") + ":8080"
			var got string
			var err error
			// The listener needs a moment to be up; without the second
			// layer the first answer ends the wait.
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if got, err = hostConnect(addr); got != "" {
					break
				}
			}
			if reached := got != ""; reached != tc.reached {
				t.Errorf("a connection from the host to %s got %q (%v), want reached=%v", addr, got, err, tc.reached)
			}
		})
	}
}
