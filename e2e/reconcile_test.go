package e2e

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/clawguard/clawguard/netrules/nettest"
)

// TestReconcileRemovesExactlyTheOrphans plants objects named as ours that
// belong to no sandbox, beside unrelated ones and a live sandbox; reconcile
// removes exactly the planted ones.
func TestReconcileRemovesExactlyTheOrphans(t *testing.T) {
	h := env
	live := h.start(t, profile{Name: "reconcile-live", Extra: "egress:\n  allow:\n    - {cidr: " + apiAddr + "/32, ports: [443]}\n"})
	const strayID = "deadbeef"
	img := h.images[probeImage].ref
	ctr := func(args ...string) *exec.Cmd {
		return exec.Command("ctr", append([]string{"-a", h.address, "-n", "clawguard"}, args...)...)
	}
	plant := [][]string{
		{"iptables", "-w", "-N", "CG-" + strayID},
		{"iptables", "-w", "-A", "CG-FORWARD-SANDBOXES", "-s", "10.89.251.250/32", "-m", "comment", "--comment", "clawguard sandbox stray", "-j", "CG-" + strayID},
		{"ipset", "create", "cg-" + strayID + "-v4", "hash:ip,port", "timeout", "0"},
		{"ip", "link", "add", "cg" + strayID, "type", "veth", "peer", "name", "cgp" + strayID},
		{"ip", "netns", "add", "cg-stray"},
		// Unrelated objects that must survive.
		{"iptables", "-w", "-N", "UNRELATED-E2E"},
		{"ip", "link", "add", "cgkeep0", "type", "bridge"},
	}
	// Everything planted goes, whatever the test did.
	t.Cleanup(func() {
		_ = run("iptables", "-w", "-D", "CG-FORWARD-SANDBOXES", "-s", "10.89.251.250/32", "-m", "comment", "--comment", "clawguard sandbox stray", "-j", "CG-"+strayID)
		_ = run("iptables", "-w", "-X", "CG-"+strayID)
		_ = run("ipset", "destroy", "cg-"+strayID+"-v4")
		_ = run("ip", "link", "del", "cg"+strayID)
		_ = run("ip", "netns", "del", "cg-stray")
		_ = ctr("containers", "rm", "stray").Run()
		_ = ctr("snapshots", "rm", "stray-snap").Run()
		_ = run("iptables", "-w", "-X", "UNRELATED-E2E")
		_ = run("ip", "link", "del", "cgkeep0")
		_ = ctr("containers", "rm", "unrelated").Run()
	})
	for _, p := range plant {
		if err := run(p...); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := ctr("containers", "create", "--label", "clawguard.sandbox=stray", img, "stray").CombinedOutput(); err != nil {
		t.Fatalf("plant container: %v %s", err, out)
	}
	if out, err := ctr("containers", "create", img, "unrelated").CombinedOutput(); err != nil {
		t.Fatalf("plant unrelated container: %v %s", err, out)
	}
	// An active snapshot no container uses: what a create that died leaves.
	if out, err := ctr("snapshots", "prepare", "stray-snap").CombinedOutput(); err != nil {
		t.Fatalf("plant snapshot: %v %s", err, out)
	}

	out, stderr, code := h.cg("reconcile", "--json")
	if code != 0 {
		t.Fatalf("reconcile: exit %d: %s", code, stderr)
	}
	var rep struct{ Kept, Removed []string }
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("removed: %v", rep.Removed)
	if !slices.Equal(rep.Kept, []string{live.name}) {
		t.Errorf("kept %v, want only %s", rep.Kept, live.name)
	}
	for _, want := range []string{"chain filter/CG-" + strayID, "rules of sandbox stray", "ip set cg-" + strayID + "-v4",
		"veth cg" + strayID, "netns cg-stray", "container stray", "snapshot stray-snap"} {
		found := false
		for _, r := range rep.Removed {
			if strings.HasPrefix(r, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("report lacks %q", want)
		}
	}
	save, _ := exec.Command("iptables-save").Output()
	switch {
	case strings.Contains(string(save), "CG-"+strayID), strings.Contains(string(save), "clawguard sandbox stray"):
		t.Error("stray chain or rule survived")
	case !strings.Contains(string(save), ":UNRELATED-E2E"):
		t.Error("an unrelated chain was removed")
	}
	if run("ipset", "list", "-n", "cg-"+strayID+"-v4") == nil {
		t.Error("stray set survived")
	}
	if run("ip", "link", "show", "cg"+strayID) == nil {
		t.Error("stray veth survived")
	}
	if run("ip", "link", "show", "cgkeep0") != nil {
		t.Error("an unrelated link was removed")
	}
	if run("ip", "netns", "exec", "cg-stray", "true") == nil {
		t.Error("stray namespace survived")
	}
	if snaps, _ := ctr("snapshots", "ls").Output(); strings.Contains(string(snaps), "stray") {
		t.Errorf("stray snapshots survived:\n%s", snaps)
	}
	list, _ := ctr("containers", "ls", "-q").Output()
	if strings.Contains(string(list), "stray") || !strings.Contains(string(list), "unrelated") {
		t.Errorf("containers after reconcile:\n%s", list)
	}
	// The live sandbox is untouched: still enforced, still reaching its allowlist.
	h.assertEnforced(t, live.name)
	// A second reconcile finds nothing to do.
	out, _, _ = h.cg("reconcile", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Removed) != 0 {
		t.Fatalf("second reconcile removed %v (%v)", rep.Removed, err)
	}
}

// TestReconcileAfterASupervisorCrashChangesNothing: the supervisor of a
// running sandbox is SIGKILLed; reconcile keeps the sandbox (its task runs,
// its rules hold) and leaves the kernel state exactly as it was.
func TestReconcileAfterASupervisorCrashChangesNothing(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "reconcile-crash", Extra: egressProfile})
	if err := sb.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-sb.exited
	before := nettest.KernelState(t)
	out, stderr, code := h.cg("reconcile", "--json")
	if code != 0 {
		t.Fatalf("reconcile: %s", stderr)
	}
	var rep struct{ Kept, Removed []string }
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Kept, []string{sb.name}) || len(rep.Removed) != 0 {
		t.Fatalf("reconcile kept %v, removed %v", rep.Kept, rep.Removed)
	}
	if after := nettest.KernelState(t); after != before {
		t.Fatalf("reconcile changed the kernel state of a live sandbox:\n%s", nettest.Diff(before, after))
	}
	mustAnswerFromHost(t, deniedAddr+":443")
	if c := h.sandboxConnect(t, sb.name, deniedAddr+":443"); c.OK {
		t.Fatal("denied destination open after the crash and reconcile")
	}
}
