package enforce

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime/volume"
)

// A member's volumes count together against MemberVolumeBudget: each one's
// blocks are reserved on the host when it is made, so names alone would
// otherwise reserve the disk. A volume the sandbox already has is not
// counted twice; other users' volumes are not the member's.
func TestAMembersVolumesStayWithinTheBudget(t *testing.T) {
	dir := t.TempDir()
	s := New(Config{StateDir: dir}, nil, nil)
	record := func(sandbox, name string, size int64, owner uint32) {
		t.Helper()
		b, _ := json.Marshal(volume.Info{SizeBytes: size, Owner: owner})
		p := filepath.Join(s.layout.volumes(), sandbox, name+".json")
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const gib = 1 << 30
	record("mine", "work", 6*gib, 1000)
	record("theirs", "work", 100*gib, 1001)
	prof := func(name string, sizes ...int64) *profiles.Profile {
		p := &profiles.Profile{Name: name}
		for i, sz := range sizes {
			p.Volumes = append(p.Volumes, profiles.Volume{Name: []string{"work", "cache"}[i], Target: "/v" + string(rune('a'+i)), Size: sizeOf(t, sz)})
		}
		return p
	}
	tests := []struct {
		name    string
		p       *profiles.Profile
		wantErr bool
	}{
		{"a new volume within what is left", prof("other", 2*gib), false},
		{"a new volume past the budget", prof("other", 3*gib), true},
		{"two new volumes past it together", prof("other", gib, 2*gib), true},
		{"the sandbox's own volume again", prof("mine", 6*gib), false},
		{"its own volume and a new one past it", prof("mine", 6*gib, 3*gib), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.withinBudget(tt.p, 1000)
			if (err != nil) != tt.wantErr {
				t.Fatalf("withinBudget = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "clawguard volume rm") {
				t.Fatalf("the refusal does not say how to make room: %v", err)
			}
		})
	}
}

func sizeOf(t *testing.T, b int64) profiles.Size {
	t.Helper()
	var s profiles.Size
	if err := s.UnmarshalJSON([]byte(`"` + profiles.FormatSize(b) + `"`)); err != nil {
		t.Fatal(err)
	}
	return s
}
