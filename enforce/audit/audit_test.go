package audit

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
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
