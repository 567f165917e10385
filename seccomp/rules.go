package seccomp

// This file is the documented rule list: everything clawguard changes relative
// to the container baseline (Docker's default profile as containerd ships it,
// evaluated for a container with zero capabilities). Build applies exactly
// these changes; profiles/seccomp/default.json is its output.

// denial is a group of syscalls the baseline allows that clawguard denies.
// They are left out of every allow rule so that the profile's default action
// (EPERM) answers them: runc 1.1 drops rules whose action equals the default,
// so an explicit deny rule would be dead weight at best.
type denial struct {
	names []string
	why   string
}

func denials() []denial {
	return []denial{
		{[]string{"ptrace"}, "inspecting or steering another process is the first step of most sandbox escapes and credential theft"},
		{[]string{"process_vm_readv", "process_vm_writev"}, "read and write another process's memory"},
		{[]string{"kcmp", "pidfd_getfd"}, "compare or steal another process's file descriptors"},
		{[]string{"modify_ldt"}, "16-bit segment tricks with a long history of kernel bugs; nothing modern needs them"},
		{[]string{"name_to_handle_at", "open_by_handle_at"}, "file handles bypass path-based checks (the 'shocker' escape)"},
		{[]string{"io_uring_setup", "io_uring_enter", "io_uring_register"}, "large kernel attack surface; libuv falls back to epoll on an errno"},
		{[]string{"userfaultfd"}, "lets an attacker stall the kernel mid-copy, a staple of exploit races"},
		{[]string{"keyctl", "add_key", "request_key"}, "the kernel keyring is not namespaced"},
		{[]string{"unshare", "setns"}, "new or foreign namespaces; the sandbox gets exactly the namespaces it was given"},
		{[]string{"bpf", "perf_event_open"}, "kernel programs and performance counters: attack surface and side channels"},
		{[]string{"mount", "umount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr"}, "the mount family; the sandbox's filesystem layout is fixed at start"},
		{[]string{"chroot", "pivot_root"}, "changing the root is a container runtime's job, not the agent's"},
		{[]string{"io_setup", "io_destroy", "io_getevents", "io_submit", "io_cancel", "io_pgetevents", "io_pgetevents_time64"}, "legacy Linux AIO: unused by Node, Python, git and shells, and a source of kernel bugs"},
		{[]string{"mq_open", "mq_unlink", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive", "mq_timedreceive_time64", "mq_notify", "mq_getsetattr"}, "POSIX message queues: unused by the agent workloads"},
		{[]string{"msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semtimedop_time64", "semctl", "shmget", "shmat", "shmdt", "shmctl", "ipc"}, "System V IPC: unused by the agent workloads (POSIX shared memory under /dev/shm still works)"},
		{[]string{"vmsplice"}, "page-splicing primitive behind several privilege escalations (e.g. Dirty Pipe exploitation)"},
		{[]string{"remap_file_pages"}, "deprecated and emulated; nothing needs it"},
		{[]string{"get_robust_list"}, "reads another thread's futex list; historically an address leak"},
		{[]string{"epoll_ctl_old", "epoll_wait_old"}, "x86_64 leftovers the kernel does not implement"},
		{[]string{"fanotify_mark"}, "useless without fanotify_init, which needs CAP_SYS_ADMIN"},
		{[]string{"memfd_secret", "process_mrelease"}, "specialised memory calls no agent workload uses"},
	}
}

// Socket families the sandbox may open: local sockets, IPv4, IPv6 and netlink
// (glibc's getaddrinfo and Node's os.networkInterfaces use netlink). Packet,
// vsock, bluetooth, alg and the rest are refused.
const (
	afUnix    = 1
	afInet    = 2
	afInet6   = 10
	afNetlink = 16
)

// tiocsti pushes bytes into a terminal's input queue: a process that shares a
// terminal with its parent can type commands into it.
const tiocsti = 0x5412

// cloneNewFlags is every CLONE_NEW* flag clone(2) accepts in its first
// argument: CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.
const cloneNewFlags = 0x7E020000

// enosys is what clone3 answers: glibc and Node fall back to clone(2) on
// ENOSYS, where the flags can be inspected, and abort on EPERM.
const enosys = 38
