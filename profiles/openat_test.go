package profiles

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// walkNoLinks stands in for openat2 where systemd's filter or an old kernel
// refuses it; it must refuse exactly what openat2 with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS refuses (and any "..").
func TestWalkNoLinksRefusesEveryLink(t *testing.T) {
	base, elsewhere := t.TempDir(), t.TempDir()
	for _, d := range []string{"a/b", "real"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "a/b/f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"mid": elsewhere, "a/last": elsewhere, "a/flink": filepath.Join(base, "a/b/f")} {
		if err := os.Symlink(target, filepath.Join(base, link)); err != nil {
			t.Fatal(err)
		}
	}
	bfd, err := unix.Open(base, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(bfd)
	tests := []struct {
		name, path string
		flags      uint64
		want       error
		// walkOnly: openat2 allows a ".." that stays beneath; the walk
		// refuses every one.
		walkOnly bool
	}{
		{"a plain path", "a/b", unix.O_RDONLY | unix.O_DIRECTORY, nil, false},
		{"a plain file", "a/b/f", unix.O_RDONLY, nil, false},
		{"an absolute plain path", base + "/a/b", unix.O_PATH, nil, false},
		{"a link on the way", "mid/x", unix.O_PATH, unix.ELOOP, false},
		{"a link at the end, O_PATH", "a/last", unix.O_PATH, unix.ELOOP, false},
		{"a link to a file at the end", "a/flink", unix.O_RDONLY, unix.ELOOP, false},
		{"an absolute path through a link", base + "/mid", unix.O_PATH, unix.ELOOP, false},
		{"dot-dot", "a/../a/b", unix.O_PATH, unix.EXDEV, true},
		{"out of the base", "../x", unix.O_PATH, unix.EXDEV, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fd, err := walkNoLinks(bfd, tt.path, tt.flags)
			if fd >= 0 {
				unix.Close(fd)
			}
			if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
				t.Fatalf("walk %s: %v, want %v", tt.path, err, tt.want)
			}
			// openat2, where it runs, agrees.
			if tt.walkOnly {
				return
			}
			fd, err2 := openNoLinks(bfd, tt.path, tt.flags)
			if fd >= 0 {
				unix.Close(fd)
			}
			if (err == nil) != (err2 == nil) {
				t.Fatalf("walk says %v, openat2 says %v", err, err2)
			}
		})
	}
}
