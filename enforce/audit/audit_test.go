package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuditLogWritesJSONLinesAndRotates(t *testing.T) {
	dir := t.TempDir()
	a := &Log{path: filepath.Join(dir, "audit.jsonl"), log: slog.New(slog.DiscardHandler), maxBytes: 300}
	for i := 0; i < 10; i++ {
		a.Write("sb", Event{Kind: "refused_query", Name: "evil.example.com", QueryType: "A"})
	}
	for _, f := range []string{"audit.jsonl", "audit.jsonl.1"} {
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		sc := bufio.NewScanner(fh)
		lines := 0
		for sc.Scan() {
			var e Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Sandbox != "sb" || e.Time.IsZero() {
				t.Fatalf("%s: bad line %q: %v", f, sc.Text(), err)
			}
			lines++
		}
		fh.Close()
		if lines == 0 {
			t.Fatalf("%s is empty", f)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "audit.jsonl")); fi.Size() > 300+200 {
		t.Fatalf("audit.jsonl grew to %d bytes past its limit", fi.Size())
	}
}

// TestNoiseNeverPushesOutLifecycleEvents: sandboxes sampled one by one
// still flood the audit log together, and its rotation drops the oldest
// lines, a start among them (the control). The lifecycle file keeps it.
func TestNoiseNeverPushesOutLifecycleEvents(t *testing.T) {
	dir := t.TempDir()
	a := &Log{path: Path(dir), log: slog.New(slog.DiscardHandler), maxBytes: 4096}
	a.Write("quiet", Event{Kind: "started", Reason: "pid 42"})
	for i := range 2000 {
		a.Write(fmt.Sprintf("noisy-%d", i%100), Event{Kind: "refused_query", Name: "x.example.com", QueryType: "A"})
	}
	has := func(path string) bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), `"sandbox":"quiet"`)
	}
	if has(Path(dir)) || has(Path(dir)+".1") {
		t.Fatal("control: the start is still in the audit log after the flood, so the flood proves nothing")
	}
	if !has(LifecyclePath(dir)) {
		t.Fatal("the start is gone from the lifecycle file too")
	}
	if b, _ := os.ReadFile(LifecyclePath(dir)); strings.Contains(string(b), "refused_query") {
		t.Fatal("noise in the lifecycle file")
	}
}
