//go:build !nokernel

package enforce

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAStateDirectoryOthersCouldChangeIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("giving a directory to another user needs root: run `sudo make test`, or `make unit`, which leaves the root tests out")
	}
	base := t.TempDir()
	mk := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	users := mk("users", 0o755, 1000)
	open := mk("open", 0o777, 0)
	sticky := mk("sticky", os.ModeSticky|0o777, 0)
	mine := mk("mine", 0o700, 0)
	link := filepath.Join(base, "link")
	if err := os.Symlink(users, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"root's own directory", filepath.Join(mine, "state"), ""},
		{"under a sticky directory", filepath.Join(sticky, "state"), ""},
		{"under another user's directory", filepath.Join(users, "state"), "belongs to uid 1000"},
		{"under a directory anyone may write", filepath.Join(open, "state"), "writable by group or others"},
		{"through a link to another user's directory", filepath.Join(link, "state"), "belongs to uid 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckStateDir(tc.path)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("CheckStateDir(%s) = %v, want %q", tc.path, err, tc.want)
			}
		})
	}
}
