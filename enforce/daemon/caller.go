package daemon

import (
	"fmt"
	"net/http"
	goruntime "runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// caller is who is at the other end of an API connection, as the socket
// recorded it when the connection was made.
type caller struct {
	uid, gid uint32
	groups   []uint32
}

func (c caller) root() bool { return c.uid == 0 }

func callerOf(r *http.Request) (caller, bool) {
	cred, ok := r.Context().Value(peerKey{}).(*unix.Ucred)
	if !ok {
		return caller{}, false
	}
	groups, _ := r.Context().Value(peerGroupsKey{}).([]uint32)
	return caller{uid: cred.Uid, gid: cred.Gid, groups: groups}, true
}

// asCaller runs fn on an OS thread of its own whose file-system identity
// (fsuid, fsgid and supplementary groups) is the caller's, so that every
// path fn opens is judged by the kernel as if the caller had opened it: the
// daemon reaches nothing for a member that the member could not reach
// itself, and no check of ours has to imitate the kernel's.
//
// Only that thread changes (setfsuid, setfsgid and the raw setgroups call
// are per thread), and it is never given back: the goroutine ends locked to
// it, so the Go runtime ends the thread instead of running other code with
// the caller's identity. New threads are never cloned from a locked one (Go
// starts them from its template thread), so none inherits it either. fn
// must not hand its work to other goroutines. Nothing in the daemon may
// call a process-wide setuid, setgid or setgroups (syscall.Setgroups and
// friends, which glibc applies thread by thread): it would fail on such a
// thread, and glibc aborts the process when one thread refuses.
func asCaller(c caller, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("acting as uid %d: %v", c.uid, r)
			}
		}()
		if err := takeFSIdentity(c); err != nil {
			done <- fmt.Errorf("take on the caller's identity (uid %d, gid %d): %w", c.uid, c.gid, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// takeFSIdentity sets this thread's groups, fsgid and fsuid to the
// caller's, and checks that they took: setfsuid and setfsgid report no
// errors, only the previous value.
func takeFSIdentity(c caller) error {
	var p unsafe.Pointer
	if len(c.groups) > 0 {
		p = unsafe.Pointer(&c.groups[0])
	}
	// The raw call: glibc's setgroups and Go's syscall.Setgroups change
	// every thread of the process.
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(c.groups)), uintptr(p), 0); e != 0 {
		return fmt.Errorf("setgroups: %w (the daemon needs CAP_SETGID and CAP_SETUID, as the shipped unit's CapabilityBoundingSet gives it)", e)
	}
	unix.Setfsgid(int(c.gid))
	unix.Setfsuid(int(c.uid))
	// An invalid id changes nothing and returns the current one.
	gid, _ := unix.SetfsgidRetGid(-1)
	uid, _ := unix.SetfsuidRetUid(-1)
	if uint32(uid) != c.uid || uint32(gid) != c.gid {
		return fmt.Errorf("fsuid %d and fsgid %d did not take (the daemon needs CAP_SETUID and CAP_SETGID, as the shipped unit's CapabilityBoundingSet gives it)", uid, gid)
	}
	// A new fsuid clears only the file-access capabilities. The rest
	// would still let this thread past checks the member would fail:
	// CAP_SYS_PTRACE opens another user's /proc/PID/cwd and root, for
	// one. Capabilities are per thread, and this one is never reused, so
	// all of them go.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3} // Pid 0: this thread
	var none [2]unix.CapUserData
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	return nil
}
