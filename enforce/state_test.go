package enforce

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestSecondDaemonOnOneStateDirIsRefusedWithTheHoldersPid(t *testing.T) {
	l := layout{root: t.TempDir()}
	release, err := l.daemonLock()
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.daemonLock()
	if !errors.Is(err, ErrDaemonRunning) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v; want ErrDaemonRunning naming pid %d", err, os.Getpid())
	}
	release()
	again, err := l.daemonLock()
	if err != nil {
		t.Fatalf("the lock is not free after release: %v", err)
	}
	again()
}
