package enforce

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/netrules/allowlist"
	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/verify"

	"github.com/clawguard/clawguard/enforce/egress"
)

// This file gathers what verify can only see from the host: the task's
// namespaces, secret values in its environment and spec, who listens on
// published ports, and where each member of the egress set came from.

// hostFacts gathers what only the host can see.
func (s *Supervisor) hostFacts(ctx context.Context, name string, st *State, policy *allowlist.Policy, pid uint32, ln *hostListener) verify.Host {
	var h verify.Host
	if ln != nil {
		h.HostListener = ln.Addr().String()
	}
	want := inode(st.NetNS)
	for _, kind := range []string{"net", "pid", "ipc", "uts", "mnt", "cgroup"} {
		// This process runs in the host's namespaces, like the runtime that
		// created the sandbox; PID 1's may not be readable (a host that is
		// itself a container).
		n := verify.Namespace{Kind: kind, Sandbox: inode(fmt.Sprintf("/proc/%d/ns/%s", pid, kind)), Host: inode("/proc/self/ns/" + kind)}
		if kind == "net" {
			n.Want = want
		}
		h.Namespaces = append(h.Namespaces, n)
	}
	if missing, err := s.net.InnerMissing(netSandboxOf(st, st.DNSPort)); err != nil {
		h.SecondLayer.Err = err.Error()
	} else {
		h.SecondLayer = verify.Layer{Read: true, Missing: missing}
	}
	secrets, unread := s.secretValues(name, st.Secrets)
	h.LeakSearchErrors = unread
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil {
		h.EnvLeaks = leaks(env, secrets)
	} else {
		// Root without CAP_SYS_PTRACE gets EACCES here.
		h.LeakSearchErrors = append(h.LeakSearchErrors, fmt.Sprintf("the task environment (%v; verify as root with CAP_SYS_PTRACE, or through the daemon)", err))
	}
	if sp, err := s.rt.Spec(ctx, name); err == nil {
		b, _ := json.Marshal(sp)
		h.SpecLeaks = leaks(b, secrets)
	} else {
		h.LeakSearchErrors = append(h.LeakSearchErrors, fmt.Sprintf("the container spec (%v)", err))
	}
	h.Credentials = s.credentialFacts(ctx, name, st, pid)
	for _, spec := range st.Publish {
		pp, err := profiles.ParsePublish(spec)
		if err != nil {
			continue
		}
		h.Published = append(h.Published, verify.Published{Spec: spec, HostIP: pp.HostIP.String(), Port: pp.HostPort, Listeners: listeners(pp.HostPort)})
	}
	h.Unexplained, h.Forbidden = s.explainSet(name, st.Spec, policy)
	if snap, err := egress.Read(s.layout.egressFile(name)); err == nil {
		for _, d := range snap.Dropped {
			if h.Guarded == nil {
				h.Guarded = map[string]string{}
			}
			h.Guarded[d.Name] = d.Range
		}
	}
	return h
}

// credentialFacts looks for the bound keys, read anew from the secrets
// directory, where the sandbox could read them: its staged secrets, the
// environment and command line of each of its processes (those in its PID
// namespace), its spec and what it is given of its CA; and reads the CA it
// trusts.
func (s *Supervisor) credentialFacts(ctx context.Context, name string, st *State, pid uint32) verify.Credentials {
	var c verify.Credentials
	if st.Spec == nil || len(st.Spec.Credentials) == 0 {
		return c
	}
	keys := map[string][]byte{}
	d, err := profiles.OpenSecrets(st.Spec.Dir, st.Spec.Secrets.Dir, s.Policy())
	if err != nil {
		c.Errors = append(c.Errors, fmt.Sprintf("for the keys (their secrets directory: %v)", err))
		return c
	}
	for _, cr := range st.Spec.Credentials {
		if at := slices.Index(d.Names, cr.Secret); at >= 0 {
			if k, err := readKey(d.Files[at]); err == nil {
				keys[cr.Secret] = []byte(k)
			}
		}
	}
	d.Close()
	look := func(where string, b []byte) {
		c.Searched++
		for _, n := range leaks(b, keys) {
			c.Found = append(c.Found, fmt.Sprintf("%s (the key of %s)", where, n))
		}
	}
	staged, _ := os.ReadDir(s.layout.secretsDir(name))
	for _, f := range staged {
		if b, err := os.ReadFile(filepath.Join(s.layout.secretsDir(name), f.Name())); err == nil {
			look("/run/secrets/"+f.Name(), b)
		}
	}
	for _, p := range []string{s.layout.caFile(name), s.layout.caBundleFile(name)} {
		if b, err := os.ReadFile(p); err == nil {
			look(p, b)
		}
	}
	if sp, err := s.rt.Spec(ctx, name); err == nil {
		b, _ := json.Marshal(sp)
		look("the container spec", b)
	}
	pidns := inode(fmt.Sprintf("/proc/%d/ns/pid", pid))
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if strings.Trim(p.Name(), "0123456789") != "" || pidns == 0 || inode("/proc/"+p.Name()+"/ns/pid") != pidns {
			continue
		}
		for _, f := range []string{"environ", "cmdline"} {
			if b, err := os.ReadFile("/proc/" + p.Name() + "/" + f); err == nil {
				look("process "+p.Name()+"'s "+f, b)
			} else {
				c.Errors = append(c.Errors, fmt.Sprintf("process %s's %s (%v)", p.Name(), f, err))
			}
		}
	}
	cert, err := readCA(s.layout.caFile(name))
	if err != nil {
		c.CAErr = err.Error()
		return c
	}
	c.CAName, c.CAHosts = cert.Subject.CommonName, cert.PermittedDNSDomains
	if want := "clawguard sandbox " + name; c.CAName != want {
		c.CAErr = fmt.Sprintf("it is %q, not %q", c.CAName, want)
	}
	others, _ := os.ReadDir(filepath.Dir(s.layout.dir(name)))
	for _, o := range others {
		if o.Name() == name {
			continue
		}
		if oc, err := readCA(s.layout.caFile(o.Name())); err == nil && oc.Equal(cert) {
			c.CASharedBy = append(c.CASharedBy, o.Name())
		}
	}
	return c
}

// readCA reads the one certificate of a PEM file.
func readCA(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

func inode(path string) uint64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// secretValues reads the staged secrets; values under 6 bytes are skipped,
// as they would match by accident.
// A secret that cannot be read is a place the search could not look.
func (s *Supervisor) secretValues(name string, names []string) (map[string][]byte, []string) {
	out := map[string][]byte{}
	var unread []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(s.layout.secretsDir(name), n))
		if err != nil {
			unread = append(unread, fmt.Sprintf("for secret %s (its staged copy: %v)", n, err))
			continue
		}
		if v := bytes.TrimSpace(b); len(v) >= 6 {
			out[n] = v
		}
	}
	return out, unread
}

func leaks(hay []byte, secrets map[string][]byte) []string {
	var out []string
	for n, v := range secrets {
		if bytes.Contains(hay, v) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// listeners are the local addresses with a TCP socket listening on port,
// from /proc/net/tcp and tcp6 of the host's network namespace.
func listeners(port int) []string {
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		out = append(out, parseListeners(fh, port)...)
		fh.Close()
	}
	return out
}

func parseListeners(r io.Reader, port int) []string {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		if a, ok := procNetAddr(hexAddr); ok {
			out = append(out, a.String())
		}
	}
	return out
}

// procNetAddr decodes /proc/net/tcp's address: 32-bit words in host (little
// endian) order.
func procNetAddr(h string) (netip.Addr, bool) {
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.Addr{}, false
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	a, _ := netip.AddrFromSlice(b)
	return a.Unmap(), true
}

// explainSet traces every member of the sandbox's egress set to an
// allowlist entry: a cidr: entry, or an allowlisted name the DNS gate
// resolved to that address. The gate publishes its bindings a moment after
// it writes the set, so a member without a binding gets a short grace.
func (s *Supervisor) explainSet(name string, p *profiles.Profile, policy *allowlist.Policy) (unexplained, forbidden []string) {
	members, err := s.net.Members(name)
	if err != nil {
		return []string{"the egress set could not be read: " + err.Error()}, nil
	}
	for attempt := 0; attempt < 10; attempt++ {
		unexplained, forbidden = nil, nil
		snap, _ := egress.Read(s.layout.egressFile(name))
		for _, m := range members {
			label := fmt.Sprintf("%s %s/%d", m.Addr, m.Proto, m.Port)
			if !explained(m, p, snap) {
				unexplained = append(unexplained, label)
			}
			if _, private := allowlist.Blocked(m.Addr); private && !policy.ExplicitlyAllowed(m.Addr) {
				forbidden = append(forbidden, label)
			}
		}
		if len(unexplained) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return unexplained, forbidden
}

func explained(m netrules.SetMember, p *profiles.Profile, snap *egress.Snapshot) bool {
	for _, a := range p.Egress.Allow {
		if a.CIDR == "" || !slices.Contains(a.Ports, int(m.Port)) || !slices.Contains(a.Protos(), m.Proto) {
			continue
		}
		pfx, err := netip.ParsePrefix(a.CIDR)
		if err != nil {
			continue
		}
		// A member of the ranges set must lie within an entry's range.
		if m.Prefix.IsValid() && m.Prefix.Bits() >= pfx.Bits() && pfx.Contains(m.Prefix.Addr()) {
			return true
		}
		if !m.Prefix.IsValid() && pfx.Contains(m.Addr) {
			return true
		}
	}
	if snap == nil || m.Prefix.IsValid() {
		return false
	}
	for _, b := range snap.Bindings {
		proto, _ := allowlist.ProtoNumber(m.Proto)
		if b.Addr == m.Addr && slices.Contains(b.Ports, allowlist.Port{Proto: proto, Num: m.Port}) {
			return true
		}
	}
	return false
}
