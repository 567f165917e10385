//go:build !nokernel

package profiles

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/clawguard/clawguard/internal/racetest"
)

// Needs root (to chown); left out of `make unit` by the nokernel tag.
func TestInitNeverChownsThroughASwappedLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: run it with sudo, or leave it out with -tags nokernel")
	}
	dir, victim := t.TempDir(), t.TempDir() // victim stands in for /etc
	owner := func(p string) uint32 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Uid
	}
	ws := filepath.Join(dir, "workspace")

	// Control: the directory itself is given to the sandbox user.
	if err := os.Mkdir(ws, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := chownBeneath(dir, "workspace", 1000, 1000); err != nil || owner(ws) != 1000 {
		t.Fatalf("control: %v, owner %d", err, owner(ws))
	}
	os.Remove(ws)

	// The attack: the owner of dir keeps swapping workspace between a
	// directory and a link to the victim while it is chowned.
	stop := racetest.Loop(func(i int) {
		os.Remove(ws)
		if i%2 == 0 {
			_ = os.Symlink(victim, ws)
		} else {
			_ = os.Mkdir(ws, 0o750)
		}
	})
	refused := 0
	for i := 0; i < 2000; i++ {
		if chownBeneath(dir, "workspace", 1000, 1000) != nil {
			refused++
		}
	}
	stop()
	if owner(victim) != 0 {
		t.Fatalf("the link's target was given to the sandbox user")
	}
	if refused == 0 {
		t.Fatal("no attempt met the link: the race did not run")
	}
	t.Logf("%d of 2000 attempts met the link and were refused", refused)
}
