package netrules

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds on waiting for others: a hung iptables, or another program that
// holds the xtables lock or our host lock, must turn into an error that
// says who, never into a start or a stop that hangs for good.
const (
	xtablesWait  = 10 * time.Second // iptables-restore --wait
	commandLimit = 30 * time.Second // any iptables command
	hostLockWait = 60 * time.Second
)

// xtablesLock is where legacy iptables serialises its callers (iptables-nft
// uses netlink transactions instead, and ignores --wait).
const xtablesLock = "/run/xtables.lock"

// lockHolder names the process that holds a lock on path, from
// /proc/locks: "pid 1234 (iptables)", or "" if none can be found.
func lockHolder(path string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return ""
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return ""
	}
	defer f.Close()
	// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != want {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
	}
	return ""
}

// flockWithin takes an exclusive flock on f, waiting at most limit, and
// says who holds it if it cannot.
func flockWithin(f *os.File, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			who := lockHolder(f.Name())
			if who == "" {
				who = "another process"
			}
			return fmt.Errorf("%s is held by %s; gave up after %s", f.Name(), who, limit)
		}
		time.Sleep(delay)
	}
}
