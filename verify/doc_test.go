package verify

import (
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/verify.md from Checks()")

const doc = "../docs/verify.md"

func TestDocumentedChecksMatchTheCode(t *testing.T) {
	want := Document()
	if *update {
		if err := os.WriteFile(doc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(doc)
	if err != nil || string(got) != want {
		t.Fatalf("%s is out of date (%v); run `go test ./verify -run Documented -update`", doc, err)
	}
}

func TestEveryCheckSaysWhatItProvesAndWhichRisk(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Checks() {
		if c.Proves == "" || c.Risks == "" || c.Title == "" || seen[c.ID] {
			t.Errorf("check %q: incomplete or duplicate", c.ID)
		}
		seen[c.ID] = true
	}
}
