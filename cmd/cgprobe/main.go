// Command cgprobe runs inside a sandbox and reports, as JSON, what the
// sandbox lets a process do: who it is, which capabilities and seccomp mode it
// has, how its filesystems are mounted, which limits apply, and what each
// denied syscall answers. It is static so it runs on images with no libc and
// no shell; clawguard's tests and demo copy it into their images.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/clawguard/clawguard/verify"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cgprobe identity|fs|limits|net|syscalls|forkbomb|secrets|all|sleep|resolve|connect|dns|ping|race ...")
		os.Exit(2)
	}
	if risky[os.Args[1]] && os.Geteuid() == 0 && hasCapSysAdmin() {
		// Root with CAP_SYS_ADMIN is the host (no sandbox keeps it): these
		// checks would really mount over /tmp and fork-bomb the machine.
		fmt.Fprintf(os.Stderr, "cgprobe: refusing to run %s as root with CAP_SYS_ADMIN: it is meant for a sandbox\n", os.Args[1])
		os.Exit(2)
	}
	var out any
	switch os.Args[1] {
	case "identity":
		out = identity()
	case "fs":
		out = filesystems()
	case "limits":
		out = limits()
	case "net":
		out = network()
	case "syscalls":
		out = syscalls()
	case "secrets":
		out = secrets()
	case "forkbomb":
		out = forkbomb()
	case "all":
		out = map[string]any{"identity": identity(), "fs": filesystems(), "limits": limits(), "net": network(), "syscalls": syscalls(), "secrets": secrets()}
	case "resolve", "connect", "connect-from", "tls", "tlsodd", "https", "httpsbench", "tlsbench", "tlshold", "dns", "ping", "race", "listen", "bind", "serve-dns", "serve-cdn", "connrate", "hold", "dnsmany", "throughput", "dnslatency", "dnsflood":
		v, err := netCheck(os.Args[1:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "cgprobe:", err)
			os.Exit(2)
		}
		out = v
	case "find": // find STRING: every readable file, and every process's environment and command line, that holds STRING
		if len(os.Args) != 3 || os.Args[2] == "" {
			fmt.Fprintln(os.Stderr, "usage: cgprobe find STRING")
			os.Exit(2)
		}
		out = find(os.Args[2])
	case "verify":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: cgprobe verify PLAN-JSON")
			os.Exit(2)
		}
		var plan verify.Plan
		if err := json.Unmarshal([]byte(os.Args[2]), &plan); err != nil {
			fmt.Fprintln(os.Stderr, "cgprobe: plan:", err)
			os.Exit(2)
		}
		out = runVerify(plan)
	case "sleep":
		// An agent stand-in that exits cleanly on SIGTERM.
		sig := make(chan os.Signal, 1)
		signalNotify(sig)
		<-sig
		return
	default:
		fmt.Fprintf(os.Stderr, "cgprobe: unknown check %q\n", os.Args[1])
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		os.Exit(1)
	}
}

func hasCapSysAdmin() bool {
	eff, err := strconv.ParseUint(procStatus("self")["CapEff"], 16, 64)
	return err != nil || eff&(1<<unix.CAP_SYS_ADMIN) != 0
}

// risky checks attempt what the sandbox must refuse.
var risky = map[string]bool{"fs": true, "syscalls": true, "forkbomb": true, "all": true, "verify": true}

// The report types are the verify package's: the probe and the judge
// share one contract.
type (
	Identity = verify.Identity
	Mount    = verify.Mount
	Limits   = verify.Limits
	Secret   = verify.Secret
	Syscall  = verify.Syscall
)

func identity() Identity {
	id := Identity{UID: os.Getuid(), GID: os.Getgid(), Pid: os.Getpid()}
	id.Groups, _ = os.Getgroups()
	id.Hostname, _ = os.Hostname()
	status := procStatus("self")
	id.CapEff, id.CapPrm, id.CapBnd = status["CapEff"], status["CapPrm"], status["CapBnd"]
	id.CapAmb, id.CapInh = status["CapAmb"], status["CapInh"]
	id.NoNewPrivs, id.Seccomp = status["NoNewPrivs"], status["Seccomp"]
	return id
}

func procStatus(pid string) map[string]string {
	m := map[string]string{}
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// FS is what the filesystem allows.
type FS struct {
	Mounts        map[string]Mount
	WriteRoot     string // error writing to /, "" if it succeeded
	WriteTmp      string
	WriteWorkDir  string
	ExecFromTmp   string // error executing a copy of this binary from each writable place
	ExecFromShm   string
	ExecFromWork  string
	MountAttempt  string
	ReadOnlyProcS string // error writing /proc/sys
}

func filesystems() FS {
	fs := FS{Mounts: map[string]Mount{}}
	for _, m := range mountinfo() {
		switch {
		case m.Target == "/", m.Target == "/tmp", m.Target == "/run", m.Target == "/dev/shm",
			m.Target == "/workspace", strings.HasPrefix(m.Target, "/run/secrets"), m.Target == "/proc",
			m.Target == "/sys", m.Target == "/sys/fs/cgroup", m.Target == "/proc/sys", m.Target == "/proc/kcore":
			fs.Mounts[m.Target] = m
		default:
			if _, ok := fs.Mounts[m.Target]; !ok && strings.HasPrefix(m.Target, "/home") {
				fs.Mounts[m.Target] = m
			}
		}
	}
	fs.WriteRoot = errString(os.WriteFile("/cgprobe-root-test", []byte("x"), 0o644))
	fs.WriteTmp = errString(os.WriteFile("/tmp/cgprobe-test", []byte("x"), 0o644))
	name := "/workspace/cgprobe-" + strconv.Itoa(os.Getpid())
	fs.WriteWorkDir = errString(os.WriteFile(name, []byte("written from inside the sandbox\n"), 0o644))
	fs.ExecFromTmp = execCopy("/tmp")
	fs.ExecFromShm = execCopy("/dev/shm")
	fs.ExecFromWork = execCopy("/workspace")
	fs.MountAttempt = errString(unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	fs.ReadOnlyProcS = errString(os.WriteFile("/proc/sys/kernel/hostname", []byte("x"), 0o644))
	return fs
}

// execCopy copies this binary into dir and tries to run the copy.
func execCopy(dir string) string {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		return "read self: " + err.Error()
	}
	path := filepath.Join(dir, "cgprobe-exec-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(path, self, 0o755); err != nil {
		return "copy: " + err.Error()
	}
	defer os.Remove(path)
	if err := exec.Command(path, "identity").Run(); err != nil {
		return err.Error()
	}
	return ""
}

// memfdExec copies the probe into an anonymous memory file and runs it from
// there, as a downloaded binary that never touches a mount would be run.
// "" means it ran.
func memfdExec() string {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		return "read self: " + err.Error()
	}
	fd, err := unix.MemfdCreate("cgprobe", 0)
	if err != nil {
		return "memfd_create: " + errString(err)
	}
	f := os.NewFile(uintptr(fd), "memfd")
	defer f.Close()
	if _, err := f.Write(self); err != nil {
		return "write: " + err.Error()
	}
	if err := exec.Command(fmt.Sprintf("/proc/self/fd/%d", fd), "identity").Run(); err != nil {
		return "exec: " + err.Error()
	}
	return ""
}

func mountinfo() []Mount {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+4 {
			continue
		}
		out = append(out, Mount{
			Target:  fields[4],
			Options: strings.Split(fields[5], ","),
			FSType:  fields[sep+1],
			Super:   strings.Split(fields[sep+3], ","),
		})
	}
	return out
}

func limits() Limits {
	first := func(paths ...string) string {
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil {
				return strings.TrimSpace(string(b))
			}
		}
		return ""
	}
	return Limits{
		MemoryBytes: first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
		PidsMax:     first("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"),
		CPUQuota:    first("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"),
	}
}

// Net is what the network namespace offers.
type Net struct {
	Interfaces []string
	Connect    string // error connecting to an address outside
}

func network() Net {
	var n Net
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		n.Interfaces = append(n.Interfaces, i.Name)
	}
	// 198.51.100.0/24 is documentation space: with no route it never leaves.
	c, err := net.DialTimeout("tcp", "198.51.100.1:80", 2*time.Second)
	if err == nil {
		c.Close()
	}
	n.Connect = errString(err)
	return n
}

func secrets() []Secret {
	entries, _ := os.ReadDir("/run/secrets")
	var out []Secret
	for _, e := range entries {
		p := filepath.Join("/run/secrets", e.Name())
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue
		}
		b, err := os.ReadFile(p)
		out = append(out, Secret{Name: e.Name(), Mode: fmt.Sprintf("%04o", st.Mode&0o7777), UID: st.Uid, GID: st.Gid, Readable: err == nil, Bytes: len(b)})
	}
	return out
}

func syscalls() []Syscall {
	bad := ^uintptr(0) // -1
	pidNone := uintptr(0x3fffffff)
	devnull, _ := os.Open("/dev/null")
	var nullFd uintptr
	if devnull != nil {
		nullFd = devnull.Fd()
		defer devnull.Close()
	}
	path, _ := unix.BytePtrFromString("/nonexistent-cgprobe")
	p := uintptr(unsafe.Pointer(path))
	calls := []struct {
		name string
		nr   uintptr
		args [6]uintptr
	}{
		{"ptrace", unix.SYS_PTRACE, [6]uintptr{unix.PTRACE_SETOPTIONS, pidNone}},
		{"process_vm_readv", unix.SYS_PROCESS_VM_READV, [6]uintptr{pidNone, 0, 1, 0, 1}},
		{"process_vm_writev", unix.SYS_PROCESS_VM_WRITEV, [6]uintptr{pidNone, 0, 1, 0, 1}},
		{"kcmp", unix.SYS_KCMP, [6]uintptr{pidNone, pidNone}},
		{"pidfd_getfd", unix.SYS_PIDFD_GETFD, [6]uintptr{bad}},
		{"modify_ldt", unix.SYS_MODIFY_LDT, [6]uintptr{1, 0, 16}},
		{"name_to_handle_at", unix.SYS_NAME_TO_HANDLE_AT, [6]uintptr{bad, p}},
		{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, [6]uintptr{bad}},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, [6]uintptr{0, 0}},
		{"io_uring_enter", unix.SYS_IO_URING_ENTER, [6]uintptr{bad}},
		{"io_uring_register", unix.SYS_IO_URING_REGISTER, [6]uintptr{bad}},
		{"userfaultfd", unix.SYS_USERFAULTFD, [6]uintptr{0xffff}},
		{"keyctl", unix.SYS_KEYCTL, [6]uintptr{0xffff}},
		{"add_key", unix.SYS_ADD_KEY, [6]uintptr{0}},
		{"request_key", unix.SYS_REQUEST_KEY, [6]uintptr{0}},
		{"unshare", unix.SYS_UNSHARE, [6]uintptr{0}},
		{"setns", unix.SYS_SETNS, [6]uintptr{bad}},
		{"bpf", unix.SYS_BPF, [6]uintptr{0xffff}},
		{"perf_event_open", unix.SYS_PERF_EVENT_OPEN, [6]uintptr{0}},
		{"mount", unix.SYS_MOUNT, [6]uintptr{p, p, p}},
		{"umount2", unix.SYS_UMOUNT2, [6]uintptr{p}},
		{"fsopen", unix.SYS_FSOPEN, [6]uintptr{p}},
		{"fsconfig", unix.SYS_FSCONFIG, [6]uintptr{bad}},
		{"fsmount", unix.SYS_FSMOUNT, [6]uintptr{bad}},
		{"fspick", unix.SYS_FSPICK, [6]uintptr{bad, p}},
		{"move_mount", unix.SYS_MOVE_MOUNT, [6]uintptr{bad, p, bad, p}},
		{"open_tree", unix.SYS_OPEN_TREE, [6]uintptr{bad, p}},
		{"mount_setattr", unix.SYS_MOUNT_SETATTR, [6]uintptr{bad, p}},
		{"chroot", unix.SYS_CHROOT, [6]uintptr{p}},
		{"pivot_root", unix.SYS_PIVOT_ROOT, [6]uintptr{p, p}},
		{"io_setup", unix.SYS_IO_SETUP, [6]uintptr{0, 0}},
		{"io_destroy", unix.SYS_IO_DESTROY, [6]uintptr{0}},
		{"io_getevents", unix.SYS_IO_GETEVENTS, [6]uintptr{0}},
		{"io_submit", unix.SYS_IO_SUBMIT, [6]uintptr{0}},
		{"io_cancel", unix.SYS_IO_CANCEL, [6]uintptr{0}},
		{"io_pgetevents", unix.SYS_IO_PGETEVENTS, [6]uintptr{0}},
		{"mq_open", unix.SYS_MQ_OPEN, [6]uintptr{0}},
		{"mq_unlink", unix.SYS_MQ_UNLINK, [6]uintptr{0}},
		{"mq_timedsend", unix.SYS_MQ_TIMEDSEND, [6]uintptr{bad}},
		{"mq_timedreceive", unix.SYS_MQ_TIMEDRECEIVE, [6]uintptr{bad}},
		{"mq_notify", unix.SYS_MQ_NOTIFY, [6]uintptr{bad}},
		{"mq_getsetattr", unix.SYS_MQ_GETSETATTR, [6]uintptr{bad}},
		{"msgget", unix.SYS_MSGGET, [6]uintptr{0x4c47, 0}},
		{"msgsnd", unix.SYS_MSGSND, [6]uintptr{bad}},
		{"msgrcv", unix.SYS_MSGRCV, [6]uintptr{bad}},
		{"msgctl", unix.SYS_MSGCTL, [6]uintptr{bad}},
		{"semget", unix.SYS_SEMGET, [6]uintptr{0x4c47, 0, 0}},
		{"semop", unix.SYS_SEMOP, [6]uintptr{bad}},
		{"semtimedop", unix.SYS_SEMTIMEDOP, [6]uintptr{bad}},
		{"semctl", unix.SYS_SEMCTL, [6]uintptr{bad}},
		{"shmget", unix.SYS_SHMGET, [6]uintptr{0x4c47, 0, 0}},
		{"shmat", unix.SYS_SHMAT, [6]uintptr{bad}},
		{"shmdt", unix.SYS_SHMDT, [6]uintptr{0}},
		{"shmctl", unix.SYS_SHMCTL, [6]uintptr{bad}},
		{"vmsplice", unix.SYS_VMSPLICE, [6]uintptr{bad}},
		{"remap_file_pages", unix.SYS_REMAP_FILE_PAGES, [6]uintptr{0}},
		{"get_robust_list", unix.SYS_GET_ROBUST_LIST, [6]uintptr{pidNone}},
		{"epoll_ctl_old", unix.SYS_EPOLL_CTL_OLD, [6]uintptr{}},
		{"epoll_wait_old", unix.SYS_EPOLL_WAIT_OLD, [6]uintptr{}},
		{"fanotify_mark", unix.SYS_FANOTIFY_MARK, [6]uintptr{bad}},
		{"memfd_secret", unix.SYS_MEMFD_SECRET, [6]uintptr{0xffff}},
		{"process_mrelease", unix.SYS_PROCESS_MRELEASE, [6]uintptr{bad}},
		{"clone3", unix.SYS_CLONE3, [6]uintptr{0, 0}},
		// CLONE_NEWUSER|CLONE_NEWNS together with CLONE_FS is invalid, so an
		// allowed call fails with EINVAL instead of creating anything.
		{"clone(CLONE_NEWUSER)", unix.SYS_CLONE, [6]uintptr{unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_FS}},
		{"socket(AF_PACKET)", unix.SYS_SOCKET, [6]uintptr{unix.AF_PACKET, unix.SOCK_RAW}},
		{"socket(AF_ALG)", unix.SYS_SOCKET, [6]uintptr{unix.AF_ALG, unix.SOCK_SEQPACKET}},
		{"socket(AF_VSOCK)", unix.SYS_SOCKET, [6]uintptr{unix.AF_VSOCK, unix.SOCK_STREAM}},
		{"socket(AF_BLUETOOTH)", unix.SYS_SOCKET, [6]uintptr{unix.AF_BLUETOOTH, unix.SOCK_STREAM}},
		{"ioctl(TIOCSTI)", unix.SYS_IOCTL, [6]uintptr{nullFd, unix.TIOCSTI, 0}},
		{"personality(ADDR_NO_RANDOMIZE)", unix.SYS_PERSONALITY, [6]uintptr{addrNoRandomize}},
	}
	out := make([]Syscall, 0, len(calls))
	for _, c := range calls {
		r, _, errno := unix.RawSyscall6(c.nr, c.args[0], c.args[1], c.args[2], c.args[3], c.args[4], c.args[5])
		res := "OK"
		if errno != 0 {
			res = unix.ErrnoName(errno)
		} else if c.nr == unix.SYS_SOCKET || c.nr == unix.SYS_MSGGET || c.nr == unix.SYS_SEMGET || c.nr == unix.SYS_SHMGET {
			unix.Close(int(r))
		}
		if c.nr == unix.SYS_PERSONALITY && errno == 0 {
			unix.RawSyscall(unix.SYS_PERSONALITY, 0, 0, 0)
		}
		out = append(out, Syscall{Name: c.name, Errno: res})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ForkBomb is how far a fork loop got before the pids limit stopped it.
type ForkBomb struct {
	TasksBefore int
	Forked      int
	Errno       string
}

// forkbomb forks children that only pause until fork fails or 10,000 have
// been made, then kills and reaps them all.
func forkbomb() ForkBomb {
	fb := ForkBomb{TasksBefore: tasks()}
	var kids []int
	for fb.Forked < 10000 {
		pid, _, errno := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if errno != 0 {
			fb.Errno = unix.ErrnoName(errno)
			break
		}
		if pid == 0 {
			for {
				unix.RawSyscall(unix.SYS_PAUSE, 0, 0, 0)
			}
		}
		kids = append(kids, int(pid))
		fb.Forked++
	}
	for _, k := range kids {
		_ = unix.Kill(k, unix.SIGKILL)
	}
	for _, k := range kids {
		var ws unix.WaitStatus
		_, _ = unix.Wait4(k, &ws, 0, nil)
	}
	return fb
}

// tasks counts the threads of every process visible in the sandbox: the
// pids cgroup counts threads, not processes.
func tasks() int {
	n := 0
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		ts, _ := os.ReadDir("/proc/" + p.Name() + "/task")
		n += len(ts)
	}
	return n
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// addrNoRandomize is the personality flag that turns off ASLR; the profile
// only allows the personality values Docker considers safe.
const addrNoRandomize = 0x0040000
