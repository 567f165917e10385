package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clawguard/clawguard/profiles"
)

func TestParseIDRange(t *testing.T) {
	tests := []struct {
		in      string
		want    IDRange
		wantErr string
	}{
		{"200000-200999", IDRange{200000, 200999}, ""},
		{" 7-7 ", IDRange{7, 7}, ""},
		{"200000", IDRange{}, "FIRST-LAST"},
		{"a-b", IDRange{}, "decimal"},
		{"0-10", IDRange{}, "root"},
		{"10-5", IDRange{}, "above"},
		{"4294967000-4294967294", IDRange{}, "reserved"},
		{"-5-10", IDRange{}, "decimal"},
	}
	for _, tt := range tests {
		got, err := ParseIDRange(tt.in)
		if tt.wantErr == "" && (err != nil || got != tt.want) {
			t.Errorf("%q: %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q: error %v, want one saying %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestIDRangeFindsTheAccountsItWouldShadow(t *testing.T) {
	passwd := "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbuild:x:200005:200005::/:/bin/false\n"
	group := "root:x:0:\nusers:x:100:\nci:x:200007:\n"
	got, err := IDRange{200000, 200999}.Accounts(strings.NewReader(passwd), strings.NewReader(group))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"user build (200005)", "group ci (200007)"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// Control: a range beside them finds nothing.
	if got, _ := (IDRange{300000, 300999}).Accounts(strings.NewReader(passwd), strings.NewReader(group)); len(got) != 0 {
		t.Errorf("a free range found %v", got)
	}
}

// Each caller gets an id of its own, keeps it across daemon restarts (the
// book is reopened from its file), and never gets another caller's.
func TestEachCallerKeepsItsOwnSandboxID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox-ids.json")
	rng := IDRange{200000, 200001}
	b, err := openIDBook(path, rng)
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := b.assign(1000)
	bob, _ := b.assign(1001)
	if again, _ := b.assign(1000); alice != 200000 || bob != 200001 || again != alice {
		t.Fatalf("alice %d (again %d), bob %d", alice, again, bob)
	}
	if _, err := b.assign(1002); err == nil || !strings.Contains(err.Error(), "widen") {
		t.Fatalf("a third caller in a range of two: %v", err)
	}

	// A restart with a wider range: the old ids stay, the next is new.
	b, err = openIDBook(path, IDRange{200000, 200009})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := b.assign(1001); got != bob {
		t.Errorf("bob after a restart: %d, want %d", got, bob)
	}
	if got, _ := b.assign(1002); got != 200002 {
		t.Errorf("a new caller after a restart: %d, want 200002", got)
	}

	// A range moved away from an id in use: refused, not reassigned, so
	// the id is never handed to someone else's sandbox.
	b, err = openIDBook(path, IDRange{300000, 300009})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.assign(1000); err == nil || !strings.Contains(err.Error(), "outside sandbox_ids") {
		t.Errorf("alice with her id outside the range: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the book: %v %v", fi, err)
	}
}

func TestMemberRules(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(p *profiles.Profile)
		fields  []string
		wantUID string
	}{
		{"the default user becomes the member's id", func(p *profiles.Profile) {}, nil, "200003:200003"},
		{"the member's own id is fine", func(p *profiles.Profile) { p.User = "200003:200003" }, nil, "200003:200003"},
		{"another uid with a privileged group", func(p *profiles.Profile) { p.User = "1000:6" }, []string{"user"}, ""},
		{"root", func(p *profiles.Profile) { p.User = "0:0" }, []string{"user"}, ""},
		{"an image archive", func(p *profiles.Profile) { p.ImageArchive = "img.tar" }, []string{"image_archive"}, ""},
		{"a log larger than the default", func(p *profiles.Profile) { p.Logs.MaxSize.Bytes = 1 << 30 }, []string{"logs"}, ""},
		{"more old logs than the default", func(p *profiles.Profile) { keep := 10; p.Logs.Keep = &keep }, []string{"logs"}, ""},
		{"a smaller log is fine", func(p *profiles.Profile) { p.Logs.MaxSize.Bytes = 1 << 20 }, nil, "200003:200003"},
		{"a privileged host port", func(p *profiles.Profile) { p.Publish = []string{"127.0.0.1:8080:80", "127.0.0.1:80:80"} }, []string{"publish[1]"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := profiles.Parse([]byte("name: m\nimage: docker.io/library/busybox:latest\n"), "m.yaml", t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(p)
			err = memberRules(p, 200003, 1024)
			var fields []string
			if pe, ok := err.(*profiles.Error); ok {
				for _, f := range pe.Fields {
					fields = append(fields, f.Field)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Fatalf("fields %v, want %v (%v)", fields, tt.fields, err)
			}
			if tt.wantUID != "" && p.User != tt.wantUID {
				t.Errorf("user %q, want %q", p.User, tt.wantUID)
			}
		})
	}
}
