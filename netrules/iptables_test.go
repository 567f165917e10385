package netrules

import (
	"net/netip"
	"strings"
	"testing"
)

const savedWithOneSandbox = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:CG-FORWARD-SANDBOXES - [0:0]
:CG-1 - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -m comment --comment clawguard -j CG-FORWARD
-A CG-FORWARD-SANDBOXES -s 10.89.0.2/32 -m physdev --physdev-in cg1 -m comment --comment "clawguard sandbox a" -j CG-1
-A CG-FORWARD-SANDBOXES -s 10.89.0.3/32 -m physdev --physdev-in cg2 -m comment --comment "clawguard sandbox ab" -j CG-2
-A CG-1 -m comment --comment "clawguard sandbox a" -j DROP
COMMIT
`

func TestPlanRemoveOwnerTouchesOnlyThatOwner(t *testing.T) {
	rs := parseSave(savedWithOneSandbox)
	p := planRemoveOwner(rs, v4, comment("a"), []chainRef{{v4, "filter", chainForwardSB}}, []chainRef{{v4, "filter", "CG-1"}})
	in := p.input("filter")
	if !strings.Contains(in, `-D CG-FORWARD-SANDBOXES -s 10.89.0.2/32`) || strings.Contains(in, "10.89.0.3") {
		t.Fatalf("plan:\n%s", in)
	}
	if strings.Index(in, "-D CG-FORWARD-SANDBOXES") > strings.Index(in, "-X CG-1") || !strings.Contains(in, "-F CG-1\n-X CG-1") {
		t.Fatalf("the jump must go before the chain:\n%s", in)
	}
}

func TestPlanEnsureMovesAHookThatIsNotFirst(t *testing.T) {
	rs := parseSave(savedWithOneSandbox)
	p := planEnsure(rs, v4, nil, []rule{hookRules()[0]})
	in := p.input("filter")
	want := "-D FORWARD -m comment --comment clawguard -j CG-FORWARD\n-I FORWARD 1 -m comment --comment clawguard -j CG-FORWARD"
	if !strings.Contains(in, want) {
		t.Fatalf("plan:\n%s", in)
	}
}

func TestPlanEnsureRewritesAChangedGroupWithoutDuplicates(t *testing.T) {
	sb := Sandbox{Name: "a", IP: netip.MustParseAddr("10.89.0.2"), Gateway: netip.MustParseAddr("10.89.0.1"), DNSPort: 1000}
	rules := sandboxRules("clawguard0", sb)
	// Installed with DNS port 1000; now the gate listens on 2000.
	var saved strings.Builder
	saved.WriteString("*filter\n:CG-INPUT-SANDBOXES - [0:0]\n")
	for _, r := range rules {
		if r.table == "filter" && r.chain == chainInputSB {
			saved.WriteString("-A " + r.chain + " " + render(r.spec) + "\n")
		}
	}
	saved.WriteString("COMMIT\n")
	sb.DNSPort = 2000
	p := planEnsure(parseSave(saved.String()), v4, nil, sandboxRules("clawguard0", sb))
	in := p.input("filter")
	if strings.Count(in, "-D CG-INPUT-SANDBOXES") != 2 || strings.Count(in, "-A CG-INPUT-SANDBOXES") != 2 || !strings.Contains(in, "--dport 2000") {
		t.Fatalf("plan:\n%s", in)
	}
}

func TestRenderQuotesArgumentsWithSpaces(t *testing.T) {
	if got := render([]string{"-m", "comment", "--comment", "clawguard sandbox a", "-j", "DROP"}); got != `-m comment --comment "clawguard sandbox a" -j DROP` {
		t.Fatal(got)
	}
}

// fakeRunner serves saved rules and records what is restored.
type fakeRunner struct {
	saved    map[family]string
	restored []string
}

func (f *fakeRunner) save(fam family) (string, error) { return f.saved[fam], nil }
func (f *fakeRunner) restore(_ family, _ string, in string) error {
	f.restored = append(f.restored, in)
	return nil
}
func (f *fakeRunner) packets(family, string, ...string) ([]counted, error) { return nil, nil }

// A reload flushed FORWARD and put a foreign ACCEPT there: ensure says which
// rules it put back. On rules already in place it says nothing and writes
// nothing, which is what lets the guard run on every announced change.
func TestEnsureReportsWhatItPutBack(t *testing.T) {
	hook := hookRules()[0] // FORWARD -> CG-FORWARD
	flushed := "*filter\n:FORWARD ACCEPT [0:0]\n:CG-FORWARD - [0:0]\n-A FORWARD -i tun0 -j ACCEPT\nCOMMIT\n"
	intact := "*filter\n:FORWARD ACCEPT [0:0]\n:CG-FORWARD - [0:0]\n-A FORWARD " + render(hook.spec) + "\n-A FORWARD -i tun0 -j ACCEPT\nCOMMIT\n"
	for _, tt := range []struct {
		name, saved string
		want        int
	}{{"after a flush", flushed, 1}, {"intact", intact, 0}} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeRunner{saved: map[family]string{v4: tt.saved, v6: ""}}
			added, err := tables{r: f}.ensure([]chainRef{{v4, "filter", chainForward}}, []rule{hook})
			if err != nil {
				t.Fatal(err)
			}
			if len(added) != tt.want || len(f.restored) != tt.want {
				t.Fatalf("added %q, restored %q", added, f.restored)
			}
			if tt.want > 0 && (!strings.Contains(added[0], "-I FORWARD 1") || !strings.HasPrefix(added[0], "iptables -t filter")) {
				t.Errorf("added %q", added)
			}
		})
	}
}

// The connection cap is a rule of the sandbox's own chain, after the
// established flows and before the allowlist; no cap, no rule.
func TestTheConnectionCapComesBeforeTheAllowlist(t *testing.T) {
	sb := Sandbox{Name: "a", IP: netip.MustParseAddr("10.89.0.2"), Gateway: netip.MustParseAddr("10.89.0.1"), DNSPort: 1000, MaxConns: 20}
	var chain []string
	for _, r := range sandboxRules("clawguard0", sb) {
		if r.chain == ChainName("a") {
			chain = append(chain, render(r.spec))
		}
	}
	if len(chain) < 3 || !strings.Contains(chain[1], "--connlimit-above 20 --connlimit-mask 32 --connlimit-saddr") ||
		!strings.Contains(chain[1], "-j REJECT") || !strings.Contains(chain[2], "--match-set") {
		t.Fatalf("chain:\n%s", strings.Join(chain, "\n"))
	}
	var input []string
	for _, r := range sandboxRules("clawguard0", sb) {
		if r.chain == chainInputSB {
			input = append(input, render(r.spec))
		}
	}
	// And before the DNS gate's accepts.
	if len(input) != 3 || !strings.Contains(input[0], "--connlimit-above 160") || !strings.Contains(input[1], "ACCEPT") {
		t.Fatalf("input rules:\n%s", strings.Join(input, "\n"))
	}
	sb.MaxConns = 0
	for _, r := range sandboxRules("clawguard0", sb) {
		if strings.Contains(render(r.spec), "connlimit") {
			t.Fatal("a cap rule without a cap")
		}
	}
}
