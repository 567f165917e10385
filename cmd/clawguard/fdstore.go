package main

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// fdStore is systemd's file descriptor store (FileDescriptorStoreMax= in
// the unit): sockets handed to it with FDSTORE=1 outlive this process, and
// come back to the next one in LISTEN_FDS, named by FDNAME. The daemon keeps
// its published ports there, so a restart or a crash never leaves one free
// for another local user to bind. Without systemd it stores nothing.
type fdStore struct {
	notify string // NOTIFY_SOCKET

	mu     sync.Mutex
	passed map[string]*os.File // from the previous daemon, not taken yet
}

// newFDStore reads the sockets systemd passed in; call it once, early.
func newFDStore() *fdStore {
	s := &fdStore{notify: os.Getenv("NOTIFY_SOCKET"), passed: map[string]*os.File{}}
	for _, f := range activation.Files(true) {
		if old := s.passed[f.Name()]; old != nil {
			old.Close() // the same name twice: one is enough
		}
		s.passed[f.Name()] = f
	}
	return s
}

func (s *fdStore) Take(name string) *os.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.passed[name]
	delete(s.passed, name)
	return f
}

func (s *fdStore) Keep(name string, f *os.File) error {
	if s.notify == "" {
		return nil
	}
	// Not f.Fd(): it puts the descriptor in blocking mode, and f shares
	// its file description with the listener, whose Accept would then
	// block in the kernel and never see Close.
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = s.send("FDSTORE=1\nFDNAME="+name, int(fd)) }); err != nil {
		return err
	}
	return serr
}

func (s *fdStore) Drop(name string) {
	if s.notify != "" {
		_ = s.send("FDSTOREREMOVE=1\nFDNAME="+name, -1)
	}
}

// DropUntaken removes what the previous daemon stored and this one did not
// take back (sandboxes that are gone), once adoption is done.
func (s *fdStore) DropUntaken() {
	s.mu.Lock()
	left := s.passed
	s.passed = map[string]*os.File{}
	s.mu.Unlock()
	for name, f := range left {
		f.Close()
		s.Drop(name)
	}
}

// send writes a notification with an optional descriptor attached, as
// sd_pid_notify_with_fds does (Go's net refuses ancillary data on a
// connected datagram socket, so this is a plain sendmsg).
func (s *fdStore) send(state string, fd int) error {
	addr := s.notify
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:]
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer unix.Close(sock)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if err := unix.Sendmsg(sock, []byte(state), oob, &unix.SockaddrUnix{Name: addr}, 0); err != nil {
		return fmt.Errorf("notify systemd (%s): %w", strings.SplitN(state, "\n", 2)[0], err)
	}
	return nil
}
