package profiles

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawguard/clawguard/internal/racetest"
)

// The owner of a project directory swaps its secrets directory for a link
// to a private directory of someone else's, again and again, while clawguard
// opens and copies the secrets. Nothing of the victim's may ever be read.
func TestSecretsSwappedForALinkAreNeverRead(t *testing.T) {
	base, victim := t.TempDir(), t.TempDir()
	secrets := filepath.Join(base, "secrets")
	mine := filepath.Join(base, "mine") // the real secrets, moved in and out
	for _, d := range []string{mine, victim} {
		if err := os.Chmod(d, 0o700); err != nil && d == victim {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mine, "key"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, "key"), []byte("VICTIM"), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func() (string, error) {
		d, err := OpenSecrets(base, "./secrets", SourcePolicy{})
		if err != nil {
			return "", err
		}
		defer d.Close()
		if len(d.Files) != 1 || d.Names[0] != "key" {
			return "", fmt.Errorf("files %v", d.Names)
		}
		b, err := io.ReadAll(d.Files[0])
		return string(b), err
	}

	// Control: a path read follows the link to the victim's file.
	if err := os.Symlink(victim, secrets); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(secrets, "key")); string(b) != "VICTIM" {
		t.Fatalf("control: reading by path got %q", b)
	}
	if got, err := read(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("a link at the secrets directory was followed: %q, %v", got, err)
	}
	os.Remove(secrets)
	if err := os.Rename(mine, secrets); err != nil {
		t.Fatal(err)
	}
	if got, err := read(); err != nil || got != "mine" {
		t.Fatalf("control: the real directory: %q, %v", got, err)
	}

	// The race.
	stop := racetest.Loop(func(i int) {
		if i%2 == 0 {
			_ = os.Rename(secrets, mine)
			_ = os.Symlink(victim, secrets)
		} else {
			_ = os.Remove(secrets)
			_ = os.Rename(mine, secrets)
		}
	})
	ok, refused := 0, 0
	for i := 0; i < 2000; i++ {
		got, err := read()
		switch {
		case err != nil:
			refused++
		case got == "mine":
			ok++
		default:
			stop()
			t.Fatalf("read %q through a swapped link", got)
		}
	}
	stop()
	if refused == 0 {
		t.Fatal("no attempt met the link: the race did not run")
	}
	t.Logf("2000 attempts: %d read the real secrets, %d refused, none read the victim's", ok, refused)
}

func TestSecretsOutsideTheProfilesDirectoryAreRefused(t *testing.T) {
	base := t.TempDir()
	if _, err := OpenSecrets(base, "../elsewhere", SourcePolicy{}); err == nil || !strings.Contains(err.Error(), "outside the profile's directory") {
		t.Fatalf("got %v", err)
	}
}
