package logfile

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestReapRemovesTheLogsOfGoneSandboxesOldestFirstUntilTheyFit(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int, age time.Duration) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-age)
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
	}
	write("old.log", 400, 3*time.Hour)
	write("old.log.1", 400, 4*time.Hour)
	write("mid.log.prev", 300, 2*time.Hour)
	write("new.log", 300, time.Hour)
	write("running.log", 500, 5*time.Hour) // the oldest, but running
	write("notes.txt", 900, 6*time.Hour)   // not a log of ours
	running := func(name string) bool { return name == "running" }

	reaped, err := Reap(dir, 1200, running)
	if err != nil {
		t.Fatal(err)
	}
	// 1900 bytes of logs: old (800) goes first, which is enough.
	if !slices.Equal(reaped, []string{"old"}) {
		t.Fatalf("reaped %v, want [old]", reaped)
	}
	for _, f := range []string{"mid.log.prev", "new.log", "running.log", "notes.txt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// A budget nothing fits in: every stopped sandbox's log goes, the
	// running one's stays.
	if reaped, _ := Reap(dir, 0, running); !slices.Equal(reaped, []string{"mid", "new"}) {
		t.Fatalf("reaped %v, want [mid new]", reaped)
	}
	if _, err := os.Stat(filepath.Join(dir, "running.log")); err != nil {
		t.Error(err)
	}
}

func TestLogOwner(t *testing.T) {
	for file, want := range map[string]string{
		"a.log": "a", "a.log.1": "a", "a.log.12": "a", "a.log.prev": "a", "x.logs.log": "x.logs",
		"a.log.x": "", ".log": "", "a.txt": "", "a.log.1a": "",
	} {
		got, ok := logOwner(file)
		if got != want || ok != (want != "") {
			t.Errorf("logOwner(%q) = %q, %v; want %q", file, got, ok, want)
		}
	}
}
