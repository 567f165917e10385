// Package verify decides whether a running sandbox's controls are in force.
//
// The work is split three ways so that every judgement can be tested on
// hand-written observations: the probe (cmd/cgprobe, run inside the sandbox
// as the sandbox's own user) observes and reports; enforce gathers what only
// the host can see; Judge compares both with what the profile promises. This
// package runs nothing and knows nothing of containerd or iptables.
package verify

// ProbePath is where the probe binary is mounted, read-only, in every
// sandbox. It is not on a writable mount, so "nothing executes from a
// writable path" still holds.
const ProbePath = "/.clawguard/cgprobe"

// Plan tells the probe what to try besides the checks it always makes.
type Plan struct {
	// Writable are the mount targets the profile makes writable.
	Writable []string `json:"writable,omitempty"`
	// Dials are connections the probe attempts; Judge decides per check
	// whether each had to succeed or fail.
	Dials []Dial `json:"dials,omitempty"`
	// Reach are allowlisted names to resolve through the sandbox's resolver
	// and connect to on each port.
	Reach []Reach `json:"reach,omitempty"`
	// DeniedName is a name outside the allowlist to resolve.
	DeniedName string `json:"denied_name,omitempty"`
	// DirectDNS are resolvers ("ip:port") to query directly over UDP,
	// bypassing the sandbox's resolver.
	DirectDNS []string `json:"direct_dns,omitempty"`
	// Files are files to read back (the agent's configuration), up to 1 MiB.
	Files []string `json:"files,omitempty"`
	// Names are the name gate's probes.
	Names []NameProbe `json:"names,omitempty"`
	// Foreign are requests to bound hosts carrying a credential that is
	// not the sandbox's: the broker must refuse each.
	Foreign []ForeignProbe `json:"foreign,omitempty"`
	// TimeoutMillis bounds each connection attempt and query.
	TimeoutMillis int `json:"timeout_ms"`
}

// Dial is one connection attempt.
type Dial struct {
	Check   string `json:"check"`   // the check it belongs to
	Network string `json:"network"` // tcp or udp
	Addr    string `json:"addr"`    // host:port
}

// Reach is an allowlisted name and the ports it must be reachable on.
type Reach struct {
	Name  string `json:"name"`
	Ports []int  `json:"ports"`
}

// NameProbe is an allowlisted name on a TLS port behind the name gate: the
// probe resolves it and makes two TLS connections to its address, one
// naming it, which must pass, and one naming Other, which must not.
type NameProbe struct {
	Name  string `json:"name"`
	Port  int    `json:"port"`
	Other string `json:"other"`
}

// NameResult is what the probe saw of a NameProbe: errors, "" where the
// handshake completed.
type NameResult struct {
	NameProbe
	Addr    string `json:"addr,omitempty"`
	Resolve string `json:"resolve,omitempty"`
	Named   string `json:"named"`
	Othered string `json:"othered"`
}

// Report is everything the probe observed. Errors are errno names ("EPERM")
// or messages; an empty string means the attempt succeeded.
type Report struct {
	Identity Identity          `json:"identity"`
	Mounts   []Mount           `json:"mounts"`
	Writes   map[string]string `json:"writes"` // path -> error creating a file there
	Execs    map[string]string `json:"execs"`  // writable path -> error executing a copy of the probe there
	// MemfdExec is the error executing a copy of the probe from an
	// anonymous memory file (memfd_create, then exec of /proc/self/fd/N):
	// a downloaded binary that never touches a mount, so noexec cannot
	// stop it.
	MemfdExec string `json:"memfd_exec"`
	// WriteRoot and WriteProcSys are the errors writing to / and /proc/sys.
	WriteRoot      string            `json:"write_root"`
	WriteProcSys   string            `json:"write_proc_sys"`
	Missing        []string          `json:"missing,omitempty"` // masked or read-only paths that do not exist
	Limits         Limits            `json:"limits"`
	Secrets        []Secret          `json:"secrets"`
	Syscalls       []Syscall         `json:"syscalls"`
	RawSocket      string            `json:"raw_socket"`    // socket(AF_INET, SOCK_RAW)
	PacketSocket   string            `json:"packet_socket"` // socket(AF_PACKET, SOCK_RAW)
	RuntimeSockets []string          `json:"runtime_sockets,omitempty"`
	IPv6           IPv6              `json:"ipv6"`
	Dials          []DialResult      `json:"dials"`
	Reach          []ReachResult     `json:"reach"`
	DeniedLookup   Lookup            `json:"denied_lookup"`
	DirectDNS      map[string]string `json:"direct_dns"` // resolver -> error ("" = it answered)
	Files          map[string]File   `json:"files"`
	// Disks is the filesystem each writable mount target is on, as
	// statfs sees it from inside.
	Disks map[string]Disk `json:"disks,omitempty"`
	Names []NameResult    `json:"names,omitempty"`
	// Foreign is what each ForeignProbe was answered.
	Foreign []ForeignResult `json:"foreign,omitempty"`
}

// ForeignProbe is an HTTPS request to URL with Header: Value, a
// credential the sandbox was not given.
type ForeignProbe struct {
	URL    string `json:"url"`
	Header string `json:"header"`
	Value  string `json:"value"`
}

// ForeignResult is the answer to a ForeignProbe: its status and the start
// of its body, or the error.
type ForeignResult struct {
	ForeignProbe
	Status int    `json:"status"`
	Body   string `json:"body"`
	Err    string `json:"error,omitempty"`
}

// Disk is the size of the filesystem under a path, or why it could not be
// read.
type Disk struct {
	TotalBytes int64  `json:"total_bytes"`
	FreeBytes  int64  `json:"free_bytes"`
	Err        string `json:"error,omitempty"`
}

// Identity is who the probe runs as and what it may do.
type Identity struct {
	UID, GID   int
	Groups     []int
	CapEff     string
	CapPrm     string
	CapBnd     string
	CapAmb     string
	CapInh     string
	NoNewPrivs string
	Seccomp    string
	Hostname   string
	Pid        int
}

// Mount is one line of mountinfo.
type Mount struct {
	Target  string
	FSType  string
	Options []string // per-mount options (ro, noexec, ...)
	Super   []string // filesystem options (size=, mode=)
}

// Limits are the cgroup limits as seen from inside (v1 or v2 layout).
type Limits struct {
	MemoryBytes string
	PidsMax     string
	CPUQuota    string
}

// Secret is a file under /run/secrets, without its value.
type Secret struct {
	Name     string
	Mode     string
	UID, GID uint32
	Readable bool
	Bytes    int
}

// Syscall is the answer to one call the profile should refuse.
type Syscall struct {
	Name  string
	Errno string
}

// IPv6 is whether the sandbox can use IPv6 at all.
type IPv6 struct {
	Disabled string `json:"disabled"` // net.ipv6.conf.all.disable_ipv6, or "absent"
	Dial     string `json:"dial"`     // error connecting to a documentation address
}

// DialResult is the outcome of one Dial.
type DialResult struct {
	Dial
	Err string `json:"error,omitempty"`
}

// Reachable reports whether the destination answered: a completed handshake
// or a reset both prove packets went there and back. Timeouts and
// unreachable errors prove nothing left, or nothing came back.
func (d DialResult) Reachable() bool { return d.Err == "" || d.Err == "ECONNREFUSED" }

// ReachResult is what resolving and connecting to an allowlisted name gave.
type ReachResult struct {
	Name  string       `json:"name"`
	Addrs []string     `json:"addrs,omitempty"`
	Err   string       `json:"error,omitempty"` // resolving
	Dials []DialResult `json:"dials,omitempty"`
}

// Lookup is one name resolution.
type Lookup struct {
	Addrs []string `json:"addrs,omitempty"`
	Err   string   `json:"error,omitempty"`
}

// File is a file read back from inside the sandbox.
type File struct {
	Content string `json:"content,omitempty"`
	Err     string `json:"error,omitempty"`
}
