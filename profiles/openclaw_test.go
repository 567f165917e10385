package profiles

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func initOpenClaw(t *testing.T) (*Profile, string) {
	t.Helper()
	dir := fixture(t)
	if _, err := Init("openclaw", dir, time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	p, err := Load(filepath.Join(dir, "openclaw.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return p, OpenClawConfigSource(p)
}

func TestAllowlistEditsChangeTheApprovalsAndKeepTheirComments(t *testing.T) {
	_, cfg := initOpenClaw(t)
	for _, tc := range []struct {
		pattern string
		add     bool
		changed bool
		want    []string
	}{
		{"jq", true, true, append(slices.Clone(BaselineCommands), "jq")},
		{"jq", true, false, append(slices.Clone(BaselineCommands), "jq")},
		{"pip", false, true, []string{"ls", "cat", "head", "tail", "wc", "echo", "python3", "env", "jq"}},
		{"pip", false, false, []string{"ls", "cat", "head", "tail", "wc", "echo", "python3", "env", "jq"}},
	} {
		changed, err := EditAllowlist(cfg, tc.pattern, tc.add)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Allowlist(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if changed != tc.changed || !slices.Equal(got, tc.want) {
			t.Errorf("add=%v %s: changed %v, allowlist %v; want %v %v", tc.add, tc.pattern, changed, got, tc.changed, tc.want)
		}
	}
	b, _ := os.ReadFile(filepath.Join(cfg, ApprovalsFile))
	if !strings.Contains(string(b), "// OpenClaw exec approvals written by clawguard") {
		t.Errorf("the edit dropped the comments:\n%s", b)
	}
}

func TestChangeLogReplaysAddsAndRemoves(t *testing.T) {
	p, _ := initOpenClaw(t)
	day := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for _, r := range []ChangeRow{
		{Date: day, Change: "add", Commands: []string{"jq"}, Reason: "parse | pipe", Risk: "Medium"},
		{Date: day, Change: "remove", Commands: []string{"pip"}, Reason: "unused", Risk: "-"},
	} {
		if err := AppendChange(p, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := AllowedCommands(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ls", "cat", "head", "tail", "wc", "echo", "python3", "env", "jq"}
	if !slices.Equal(got, want) {
		t.Errorf("allowed %v, want %v", got, want)
	}
}

func TestWithoutAChangeLogOnlyTheBaselineIsAllowed(t *testing.T) {
	p, _ := initOpenClaw(t)
	if err := os.Remove(ChangeLogPath(p)); err != nil {
		t.Fatal(err)
	}
	got, err := AllowedCommands(p)
	if err != nil || !slices.Equal(got, BaselineCommands) {
		t.Errorf("allowed %v, %v", got, err)
	}
}

func TestABrokenChangeLogRowNamesItsLine(t *testing.T) {
	p, _ := initOpenClaw(t)
	f, err := os.OpenFile(ChangeLogPath(p), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("| yesterday | add | curl | x | y |\n")
	f.Close()
	_, err = AllowedCommands(p)
	if err == nil || !strings.Contains(err.Error(), ":10:") || !strings.Contains(err.Error(), "YYYY-MM-DD") {
		t.Errorf("error %v, want the line and the date format", err)
	}
}

func TestOpenClawProfilesNeedTheirConfigurationReadOnly(t *testing.T) {
	p, cfg := initOpenClaw(t)
	for i := range p.Mounts {
		if p.Mounts[i].Target == OpenClawConfigDir {
			f := false
			p.Mounts[i].ReadOnly = &f
		}
	}
	if err := os.Remove(filepath.Join(cfg, ApprovalsFile)); err != nil {
		t.Fatal(err)
	}
	err := Validate(p, testPolicy(filepath.Dir(cfg)))
	if err == nil || !strings.Contains(err.Error(), "must not be writable") || !strings.Contains(err.Error(), "exec-approvals.json is missing") {
		t.Errorf("validate: %v", err)
	}
}

func TestNodeHeapLeavesRoomBesideTheHeap(t *testing.T) {
	if got := NodeHeapMiB(1 << 30); got != 640 {
		t.Errorf("1 GiB: heap %d MiB", got)
	}
}

// verify replays the change log as root for anyone in the socket group: the
// owner of the profile's directory must not make it read a FIFO (verify
// would hang, holding a slot), a device, or someone else's file through a
// link. Each is refused at once; the control, a plain log, is read.
func TestTheChangeLogIsReadOnlyAsARegularFileOfTheDirectory(t *testing.T) {
	elsewhere := filepath.Join(t.TempDir(), "log.md")
	if err := os.WriteFile(elsewhere, []byte("| 2026-11-26 | add | curl | x | y |\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		place   func(path string) error
		wantErr string
	}{
		{"a plain log (control)", func(string) error { return nil }, ""},
		{"a FIFO", func(p string) error { os.Remove(p); return syscall.Mkfifo(p, 0o644) }, "a FIFO"},
		{"a link to a device", func(p string) error { os.Remove(p); return os.Symlink("/dev/zero", p) }, "symbolic link"},
		{"a link to someone else's file", func(p string) error { os.Remove(p); return os.Symlink(elsewhere, p) }, "symbolic link"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := initOpenClaw(t)
			if err := tt.place(ChangeLogPath(p)); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { _, err := AllowedCommands(p); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("reading the change log blocked")
			}
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
}
