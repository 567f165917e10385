//go:build !nokernel

package netrules

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/clawguard/clawguard/netrules/nettest"
)

// Kernel tests use their own bridge and subnet so they never touch a real
// clawguard's; 10.89.250.0/24 overlaps none of the machine's networks.
func testHost(t testing.TB) *Host {
	t.Helper()
	requireRoot(t)
	h, err := NewHost(Config{Bridge: "cgtest0", Subnet: netip.MustParsePrefix("10.89.250.0/24"), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A sandbox adopted from a version whose loopback notrack rule knew no name
// gate loses that rule: left below the new one, it would untrack the
// gate's replies, which then never reach the agent.
func TestAttachRemovesTheOldLoopbackNotrackRule(t *testing.T) {
	h := testHost(t)
	sb := Sandbox{Name: "nrtest-legacy", DNSPort: 15354, TLSPorts: []uint16{443}}
	t.Cleanup(func() { _ = h.Detach(sb.Name) })
	att, err := h.Attach(sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	legacy := []string{"-t", "raw", "-A", "OUTPUT", "-o", "lo", "-m", "comment", "--comment", "clawguard", "-j", "CT", "--notrack"}
	if out, err := exec.Command("nsenter", append([]string{"--net=" + att.NetNSPath, "--", "iptables"}, legacy...)...).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	has := func() bool {
		out, _ := exec.Command("nsenter", "--net="+att.NetNSPath, "--", "iptables-save", "-t", "raw").Output()
		return strings.Contains(string(out), "-A OUTPUT -o lo -m comment --comment clawguard -j CT --notrack")
	}
	if !has() {
		t.Fatal("control: the old rule could not be put in place")
	}
	if _, err := h.Attach(sb, nil); err != nil { // as adoption does
		t.Fatal(err)
	}
	if has() {
		t.Fatal("the old notrack rule survived adoption")
	}
	sb.IP = att.IP
	if missing, err := h.InnerMissing(sb); err != nil || len(missing) != 0 {
		t.Fatalf("second layer after adoption (%v):\n%s", err, strings.Join(missing, "\n"))
	}
}

func TestAttachInstallsEverythingAndDetachRemovesIt(t *testing.T) {
	h := testHost(t)
	before := nettest.KernelState(t)
	sb := Sandbox{Name: "nrtest-a", DNSPort: 15353, LogDenied: true, MaxConns: 20, NewConns: 100, Published: []uint16{18789}, TLSPorts: []uint16{443, 8443}}
	t.Cleanup(func() { _ = h.Detach(sb.Name) })
	static := []NetEntry{{Prefix: netip.MustParsePrefix("198.51.100.0/28"), Proto: ProtoTCP, Port: 443}}
	att, err := h.Attach(sb, static)
	if err != nil {
		t.Fatal(err)
	}
	if att.IP != netip.MustParseAddr("10.89.250.2") || att.Gateway != netip.MustParseAddr("10.89.250.1") {
		t.Fatalf("attachment %+v", att)
	}
	// Attaching again changes nothing: no duplicate rule, same address.
	once := nettest.KernelState(t)
	if again, err := h.Attach(sb, static); err != nil || again != att {
		t.Fatalf("second attach: %+v, %v", again, err)
	}
	if twice := nettest.KernelState(t); twice != once {
		t.Fatalf("second attach changed kernel state:\n%s", nettest.Diff(once, twice))
	}
	// Every rule is written the way iptables-save prints it, so a second
	// ensure finds nothing to do and writes nothing.
	for _, f := range []family{v4, v6} {
		rs, err := h.t.load(f)
		if err != nil {
			t.Fatal(err)
		}
		sb.IP, sb.Gateway, sb.LogGroup = att.IP, att.Gateway, att.LogGroup
		all := slices.Concat(baseRules(h.cfg.Bridge, h.cfg.Subnet), hookRules(), sandboxRules(h.cfg.Bridge, sb))
		p := planEnsure(rs, f, slices.Concat(baseChains(), sandboxChains(sb)), all)
		for _, table := range []string{"filter", "nat"} {
			if in := p.input(table); in != "" {
				t.Errorf("%s: rules not in canonical form, ensure would rewrite:\n%s", f, in)
			}
		}
	}
	save, _ := exec.Command("iptables-save").Output()
	for _, want := range []string{
		"-A FORWARD -m comment --comment clawguard -j CG-FORWARD",
		"-A CG-FORWARD -i cgtest0 -m comment --comment \"clawguard bridge cgtest0\" -j DROP",
		"-A " + ChainName(sb.Name) + " -m set --match-set " + SetName(sb.Name) + " dst,dst",
		"-A " + ChainName(sb.Name) + " -m set --match-set " + NetSetName(sb.Name) + " dst,dst",
		"--connlimit-above 20",
		"--physdev-in " + VethName(sb.Name),
		"--to-destination 10.89.250.1:15353",
		"-A CG-POSTROUTING -s 10.89.250.0/24 ! -o cgtest0 -m comment --comment \"clawguard bridge cgtest0\" -j MASQUERADE",
	} {
		if !strings.Contains(string(save), want) {
			t.Errorf("iptables-save lacks %q", want)
		}
	}
	members, err := h.Members(sb.Name)
	if err != nil || len(members) != 1 || members[0].Port != 443 || !members[0].Infinite || members[0].Prefix != netip.MustParsePrefix("198.51.100.0/28") {
		t.Fatalf("set members %+v, %v", members, err)
	}
	// The second layer: in place as wanted, written canonically, and its
	// mirror set holds the static range and every entry the gate allows.
	if missing, err := h.InnerMissing(sb); err != nil || len(missing) != 0 {
		t.Fatalf("second layer not in place (%v):\n%s", err, strings.Join(missing, "\n"))
	}
	// One entry behind the name gate and one by address: both in the
	// mirror, only the first in the gate's set.
	if err := h.Allow(sb.Name, []Entry{
		{Addr: netip.MustParseAddr("198.51.100.77"), Proto: ProtoTCP, Port: 443, Timeout: time.Minute, TLS: true},
		{Addr: netip.MustParseAddr("198.51.100.78"), Proto: ProtoTCP, Port: 443, Timeout: time.Minute},
	}); err != nil {
		t.Fatal(err)
	}
	in, err := openInner(att.NetNSPath)
	if err != nil {
		t.Fatal(err)
	}
	mirror, err := in.sets.listEntries(SetName(sb.Name))
	ranges, err2 := in.sets.listEntries(NetSetName(sb.Name))
	gated, err3 := in.sets.listEntries(TLSSetName(sb.Name))
	in.Close()
	if err := errors.Join(err, err2, err3); err != nil || len(mirror) != 2 || len(ranges) != 1 || ranges[0].Prefix != static[0].Prefix ||
		len(gated) != 1 || gated[0].Addr != netip.MustParseAddr("198.51.100.77") {
		t.Fatalf("mirror sets: %+v, ranges %+v, behind the gate %+v (%v)", mirror, ranges, gated, err)
	}
	inner, _ := exec.Command("nsenter", "--net="+att.NetNSPath, "--", "iptables-save").Output()
	for _, want := range []string{
		"-A OUTPUT -m comment --comment clawguard -j CG-OUT",
		"-p tcp -m set --match-set " + TLSSetName(sb.Name) + " dst,dst",
		"-j REDIRECT --to-ports 943",
		"-A OUTPUT -o lo -m mark ! --mark 0x4347 -m comment --comment clawguard -j CT --notrack",
	} {
		if !strings.Contains(string(inner), want) {
			t.Errorf("the second layer lacks %q:\n%s", want, inner)
		}
	}
	// A rule of someone else's on top of our chain is reported, and the
	// sysctls that would let a source route or forwarding past the rules
	// are off.
	foreign := []string{"--net=" + att.NetNSPath, "--", "iptables", "-I", innerOut, "-p", "udp", "-j", "ACCEPT"}
	if out, err := exec.Command("nsenter", foreign...).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if missing, _ := h.InnerMissing(sb); len(missing) != 1 || !strings.Contains(missing[0], "not ours in CG-OUT") {
		t.Errorf("a foreign ACCEPT in CG-OUT: reported %q", missing)
	}
	foreign[3] = "-D"
	if out, err := exec.Command("nsenter", foreign...).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for f, want := range map[string]string{"ip_forward": "0", "conf/all/accept_source_route": "0"} {
		if out, _ := exec.Command("nsenter", "--net="+att.NetNSPath, "--", "cat", "/proc/sys/net/ipv4/"+f).Output(); strings.TrimSpace(string(out)) != want {
			t.Errorf("in the sandbox, %s = %q, want %s", f, out, want)
		}
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/conf/cgtest0/accept_source_route"); strings.TrimSpace(string(b)) != "0" {
		t.Errorf("the bridge accepts source routes: %q", b)
	}
	veth, err := netlink.LinkByName(VethName(sb.Name))
	if err != nil || veth.Attrs().Protinfo == nil && !portIsolated(t, VethName(sb.Name)) {
		t.Fatalf("veth %v isolated=%v", err, portIsolated(t, VethName(sb.Name)))
	}
	ns, err := netns.GetFromPath(att.NetNSPath)
	if err != nil {
		t.Fatal(err)
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	links, _ := nl.LinkList()
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"eth0", "lo"}) {
		t.Errorf("links in the sandbox: %v", names)
	}
	v6, _ := nl.AddrList(nil, netlink.FAMILY_V6)
	if len(v6) != 0 {
		t.Errorf("IPv6 addresses in the sandbox: %v", v6)
	}
	nl.Close()
	ns.Close()

	if err := h.Detach(sb.Name); err != nil {
		t.Fatal(err)
	}
	if after := nettest.KernelState(t); after != before {
		t.Fatalf("detach left kernel state behind:\n%s", nettest.Diff(before, after))
	}
	// The guard looked while the sandbox was attached and repairs after
	// the detach, which held the lock meanwhile: it must find the last
	// sandbox gone and put nothing back (the demo once found the base
	// chains and hooks restored after its only sandbox left).
	if added, err := h.repair([]Sandbox{sb}); err != nil || len(added) != 0 {
		t.Fatalf("a repair after the last detach put back %v (%v)", added, err)
	}
	if after := nettest.KernelState(t); after != before {
		t.Fatalf("the repair after the detach left kernel state behind:\n%s", nettest.Diff(before, after))
	}
	if err := h.Detach(sb.Name); err != nil {
		t.Fatalf("second detach: %v", err)
	}
}

func TestSetEntriesExpire(t *testing.T) {
	h := testHost(t)
	sb := Sandbox{Name: "nrtest-ttl", DNSPort: 15354}
	t.Cleanup(func() { _ = h.Detach(sb.Name) })
	if _, err := h.Attach(sb, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Allow(sb.Name, []Entry{{Addr: netip.MustParseAddr("198.51.100.9"), Proto: ProtoTCP, Port: 80, Timeout: time.Second}}); err != nil {
		t.Fatal(err)
	}
	m, _ := h.Members(sb.Name)
	if len(m) != 1 || m[0].Seconds < 0 || m[0].Seconds > 1 {
		t.Fatalf("members %+v", m)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m, _ := h.Members(sb.Name); len(m) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("entry with a 1s timeout still present after 5s")
}

func portIsolated(t *testing.T, port string) bool {
	out, err := exec.Command("bridge", "-d", "link", "show", "dev", port).Output()
	return err == nil && strings.Contains(string(out), "isolated on")
}

// BenchmarkAllow is one admitted address written into the sets: the host's
// alone (the baseline) and both layers', the mirror in the sandbox's
// namespace included.
func BenchmarkAllow(b *testing.B) {
	for _, tc := range []struct {
		name  string
		inner bool
	}{{"host-only", false}, {"both-layers", true}} {
		b.Run(tc.name, func(b *testing.B) {
			h := testHost(b)
			h.cfg.NoInnerLayer = !tc.inner
			sb := Sandbox{Name: "nrbench-" + tc.name, DNSPort: 15355}
			b.Cleanup(func() { _ = h.Detach(sb.Name) })
			if _, err := h.Attach(sb, nil); err != nil {
				b.Fatal(err)
			}
			e := []Entry{{Addr: netip.MustParseAddr("198.51.100.5"), Proto: ProtoTCP, Port: 443, Timeout: time.Minute}}
			b.ResetTimer()
			for b.Loop() {
				if err := h.Allow(sb.Name, e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLoopbackFillsNoConnectionTable: the second layer's rules turn on
// connection tracking in the sandbox's namespace, where the host's cap
// on tracked flows does not reach; an agent spraying datagrams between
// loopback ports would leave an entry for each, against the kernel's one
// global maximum. Loopback is not tracked. The control: with the notrack
// rules removed, the same spray leaves entries.
func TestLoopbackFillsNoConnectionTable(t *testing.T) {
	h := testHost(t)
	sb := Sandbox{Name: "nrtest-lo", DNSPort: 15356, MaxConns: 20}
	t.Cleanup(func() { _ = h.Detach(sb.Name) })
	att, err := h.Attach(sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	spray := func() int {
		t.Helper()
		var n int
		err := InNetNSAt(att.NetNSPath, func() error {
			for port := 40000; port < 40200; port++ {
				c, err := net.Dial("udp4", "127.0.0.1:"+strconv.Itoa(port))
				if err != nil {
					return err
				}
				_, _ = c.Write([]byte("x"))
				c.Close()
			}
			nl, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
			if err != nil {
				return err
			}
			defer nl.Close()
			flows, err := nl.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
			n = len(flows)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := spray(); n != 0 {
		t.Errorf("200 loopback datagrams left %d tracked flows", n)
	}
	for _, args := range [][]string{{"-t", "raw", "-D", "OUTPUT", "-o", "lo", "-m", "mark", "!", "--mark", gateMark, "-m", "comment", "--comment", "clawguard", "-j", "CT", "--notrack"},
		{"-t", "raw", "-D", "PREROUTING", "-i", "lo", "-m", "comment", "--comment", "clawguard", "-j", "CT", "--notrack"}} {
		if out, err := exec.Command("nsenter", append([]string{"--net=" + att.NetNSPath, "--", "iptables"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("remove the notrack rule: %v %s", err, out)
		}
	}
	if n := spray(); n == 0 {
		t.Error("control: without the notrack rules the spray left no tracked flow, so the check above proves nothing")
	}
}
