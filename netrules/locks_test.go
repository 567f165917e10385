package netrules

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Waiting for a lock someone keeps ends in an error that names them; the
// control, a free lock, is taken at once.
func TestAHeldLockIsGivenUpOnWithItsHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.lock")
	open := func() *os.File {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	// flock belongs to an open file: two opens contend like two processes.
	holder, waiter := open(), open()
	if err := flockWithin(holder, time.Second); err != nil {
		t.Fatalf("control: a free lock: %v", err)
	}
	start := time.Now()
	err := flockWithin(waiter, 200*time.Millisecond)
	if err == nil {
		t.Fatal("took a lock another open file holds")
	}
	if want := fmt.Sprintf("pid %d", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the holder (%s)", err, want)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %s", took)
	}
}
