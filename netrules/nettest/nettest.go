// Package nettest holds helpers for tests that touch the host's network
// state: a comparable snapshot of everything clawguard could leave behind.
package nettest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// KernelState is every iptables and ip6tables rule, ip set name, link name
// and network namespace, without counters, timestamps or link states (which
// change on their own), one per line.
func KernelState(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	for _, c := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"ipset", "list", "-n"}, {"ip", "-o", "link"}, {"ip", "netns"}} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "#") || strings.HasPrefix(l, ":") {
				continue
			}
			if c[0] == "ip" && c[1] == "-o" {
				if f := strings.Fields(l); len(f) > 1 {
					l = f[1]
				}
			}
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// Diff lists the lines b adds (+) and removes (-) relative to a.
func Diff(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range bs {
		if !slices.Contains(as, l) {
			out = append(out, "+ "+l)
		}
	}
	for _, l := range as {
		if !slices.Contains(bs, l) {
			out = append(out, "- "+l)
		}
	}
	return strings.Join(out, "\n")
}
