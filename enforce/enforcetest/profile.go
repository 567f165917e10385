package enforcetest

import (
	"testing"

	"github.com/clawguard/clawguard/profiles"
)

// Profile is the smallest valid profile: a name and an image, everything
// else at its defaults, relative paths in a fresh temporary directory.
func Profile(t testing.TB, name string) *profiles.Profile {
	t.Helper()
	p, err := profiles.Parse([]byte("name: "+name+"\nimage: docker.io/library/busybox:latest\n"), "test.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Allow is an allowlist entry for host on one port.
func Allow(host string, port int) profiles.AllowEntry {
	return profiles.AllowEntry{Host: host, Ports: []int{port}}
}

// AllowCIDR is an allowlist entry for a range on one port.
func AllowCIDR(cidr string, port int) profiles.AllowEntry {
	return profiles.AllowEntry{CIDR: cidr, Ports: []int{port}}
}
