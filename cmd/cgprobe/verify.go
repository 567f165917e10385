package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawguard/clawguard/verify"
)

// runVerify observes everything verify judges. It changes nothing it does
// not undo: test files are removed, sockets closed.
func runVerify(plan verify.Plan) verify.Report {
	timeout := time.Duration(plan.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = 1500 * time.Millisecond
	}
	r := verify.Report{
		Identity: identity(), Mounts: mountinfo(), Limits: limits(), Secrets: secrets(), Syscalls: syscalls(),
		Writes: map[string]string{}, Execs: map[string]string{}, DirectDNS: map[string]string{}, Files: map[string]verify.File{},
	}
	// The network checks wait on timeouts; run them while the local ones go.
	var wg sync.WaitGroup
	wg.Go(func() { r.Dials = dialAll(plan.Dials, timeout) })
	wg.Go(func() { r.Reach = reachAll(plan.Reach, timeout) })
	wg.Go(func() { r.Names = namesAll(plan.Names, timeout) })
	wg.Go(func() { r.Foreign = foreignAll(plan.Foreign) })
	wg.Go(func() { r.DeniedLookup = lookup(plan.DeniedName, timeout) })
	wg.Go(func() { r.DirectDNS = directDNS(plan.DirectDNS, timeout) })
	wg.Go(func() { r.IPv6 = ipv6(timeout) })

	r.WriteRoot = errString(os.WriteFile("/.cgprobe-root-"+strconv.Itoa(os.Getpid()), []byte("x"), 0o644))
	r.WriteProcSys = errString(os.WriteFile("/proc/sys/kernel/hostname", []byte("x"), 0o644))
	for _, p := range append(slices.Clone(verify.MaskedPaths), verify.ReadOnlyPaths...) {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			r.Missing = append(r.Missing, p)
		}
	}
	r.Disks = map[string]verify.Disk{}
	for _, p := range plan.Writable {
		var fs unix.Statfs_t
		if err := unix.Statfs(p, &fs); err != nil {
			r.Disks[p] = verify.Disk{Err: errString(err)}
			continue
		}
		r.Disks[p] = verify.Disk{TotalBytes: int64(fs.Blocks) * fs.Bsize, FreeBytes: int64(fs.Bavail) * fs.Bsize}
	}
	for _, dir := range writeCandidates(r.Mounts, plan.Writable) {
		err := tryWrite(dir)
		r.Writes[dir] = err
		if err == "" {
			r.Execs[dir] = execCopy(dir)
		}
	}
	r.MemfdExec = memfdExec()
	r.RawSocket = socketErr(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	r.PacketSocket = socketErr(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	r.RuntimeSockets = runtimeSockets()
	for _, p := range plan.Files {
		r.Files[p] = readFile(p)
	}
	wg.Wait()
	return r
}

// writeCandidates are the directories a process could try to drop a file
// in: every mounted directory outside /proc, /sys and /dev (but /dev/shm),
// the root, and whatever the plan names.
func writeCandidates(ms []verify.Mount, extra []string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			out = append(out, p)
		}
	}
	add("/")
	for _, m := range ms {
		t := m.Target
		if under(t, "/proc") || under(t, "/sys") || (under(t, "/dev") && !under(t, "/dev/shm")) {
			continue
		}
		add(t)
	}
	for _, p := range extra {
		add(p)
	}
	slices.Sort(out)
	return out
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

func tryWrite(dir string) string {
	p := filepath.Join(dir, ".cgprobe-w-"+strconv.Itoa(os.Getpid()))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return errString(err)
	}
	f.Close()
	os.Remove(p)
	return ""
}

func socketErr(family, typ, proto int) string {
	fd, err := unix.Socket(family, typ, proto)
	if err != nil {
		return errString(err)
	}
	unix.Close(fd)
	return ""
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// runtimeSocketNames are fragments of the names container runtimes and
// clawguard give their control sockets.
var runtimeSocketNames = []string{"docker", "containerd", "shim", "podman", "crio", "cri-o", "buildkit", "clawguard", "runc"}

func runtimeSocketName(name string) bool {
	name = strings.ToLower(name)
	return slices.ContainsFunc(runtimeSocketNames, func(n string) bool { return strings.Contains(name, n) })
}

// runtimeSockets finds runtime sockets by path (a bounded walk of the usual
// places) and by abstract name (/proc/net/unix lists the sockets of this
// network namespace: a shim's abstract socket shows only when shared).
func runtimeSockets() []string {
	var found []string
	budget := 5000
	for _, root := range []string{"/run", "/var/run", "/tmp", "/dev/shm", "/workspace", "/home", "/root", "/var/lib"} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if budget--; budget < 0 {
				return filepath.SkipAll
			}
			if err != nil {
				return nil
			}
			if d.IsDir() && strings.Count(p, "/") > 5 {
				return filepath.SkipDir
			}
			// Lstat, not the directory entry's type: a socket bind-mounted
			// over a placeholder file lists as the placeholder.
			if !d.IsDir() && runtimeSocketName(p) {
				if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSocket != 0 {
					found = append(found, p)
				}
			}
			return nil
		})
	}
	f, err := os.Open("/proc/net/unix")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 8 {
				continue
			}
			if name := fields[7]; strings.HasPrefix(name, "@") && runtimeSocketName(name) {
				found = append(found, name)
			}
		}
	}
	slices.Sort(found)
	return slices.Compact(found)
}

func readFile(p string) verify.File {
	f, err := os.Open(p)
	if err != nil {
		return verify.File{Err: errString(err)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return verify.File{Err: errString(err)}
	}
	return verify.File{Content: string(b)}
}

func dialAll(ds []verify.Dial, timeout time.Duration) []verify.DialResult {
	out := make([]verify.DialResult, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { out[i] = verify.DialResult{Dial: d, Err: dial(d.Network, d.Addr, timeout)} })
	}
	wg.Wait()
	return out
}

// dial connects (TCP) or exchanges a datagram (UDP: a DNS query, the only
// UDP service a test target is expected to run) and returns the error.
func dial(network, addr string, timeout time.Duration) string {
	if network == "udp" {
		return dnsQuery(addr, timeout)
	}
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return dialErr(err)
	}
	c.Close()
	return ""
}

func dialErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return errString(err)
}

func reachAll(rs []verify.Reach, timeout time.Duration) []verify.ReachResult {
	out := make([]verify.ReachResult, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			res := verify.ReachResult{Name: r.Name}
			l := lookup(r.Name, 3*timeout)
			res.Addrs, res.Err = l.Addrs, l.Err
			if len(l.Addrs) > 0 {
				for _, p := range r.Ports {
					addr := net.JoinHostPort(l.Addrs[0], strconv.Itoa(p))
					res.Dials = append(res.Dials, verify.DialResult{Dial: verify.Dial{Check: "allowlist", Network: "tcp", Addr: addr}, Err: dial("tcp", addr, 2*timeout)})
				}
			}
			out[i] = res
		})
	}
	wg.Wait()
	return out
}

// namesAll tries each name behind the name gate under its own name and
// under another.
func namesAll(ns []verify.NameProbe, timeout time.Duration) []verify.NameResult {
	out := make([]verify.NameResult, len(ns))
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Go(func() {
			res := verify.NameResult{NameProbe: n}
			l := lookup(n.Name, 3*timeout)
			res.Resolve = l.Err
			if len(l.Addrs) > 0 {
				res.Addr = l.Addrs[0]
				at := net.JoinHostPort(res.Addr, strconv.Itoa(n.Port))
				res.Named = tlsConnect(at, n.Name, 2*timeout).Error
				if c := tlsConnect(at, n.Other, 2*timeout); !c.OK {
					res.Othered = c.Error
				}
			}
			out[i] = res
		})
	}
	wg.Wait()
	return out
}

// foreignAll sends each request with a credential the sandbox was not
// given, trusting what the sandbox trusts (SSL_CERT_FILE).
func foreignAll(ps []verify.ForeignProbe) []verify.ForeignResult {
	out := make([]verify.ForeignResult, len(ps))
	for i, p := range ps {
		f := httpsGet(p.URL, []string{p.Header + ": " + p.Value})
		out[i] = verify.ForeignResult{ForeignProbe: p, Status: f.Status, Body: f.Body, Err: f.Error}
	}
	return out
}

func lookup(name string, timeout time.Duration) verify.Lookup {
	if name == "" {
		return verify.Lookup{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addrs, err := goResolver.LookupIP(ctx, "ip4", name)
	l := verify.Lookup{Err: errString(err)}
	for _, a := range addrs {
		l.Addrs = append(l.Addrs, a.String())
	}
	return l
}

func directDNS(servers []string, timeout time.Duration) map[string]string {
	out := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			err := dnsQuery(s, timeout)
			mu.Lock()
			out[s] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// dnsQuery asks server for a name's A record; any answer at all, even an
// error code, means the server was reached.
func dnsQuery(server string, timeout time.Duration) string {
	return rawDNS(server, "clawguard-verify.example", "A", "udp", 0, timeout).Error
}

func ipv6(timeout time.Duration) verify.IPv6 {
	v := verify.IPv6{Disabled: "absent"}
	if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6"); err == nil {
		v.Disabled = strings.TrimSpace(string(b))
	}
	// 2001:db8::/32 is documentation space: never routed anywhere.
	v.Dial = dial("tcp", "[2001:db8::1]:80", timeout)
	return v
}
