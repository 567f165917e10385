package netrules

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// ipam hands out sandbox addresses from the subnet and remembers them in a
// file, so an address is never given to two sandboxes and a sandbox keeps its
// address across supervisor restarts. The gateway is the first host address;
// the network and broadcast addresses are never used.
type ipam struct {
	path   string
	subnet netip.Prefix
}

type leases struct {
	Subnet string            `json:"subnet"`
	Leases map[string]string `json:"leases"` // sandbox -> address
}

// Gateway is the subnet's first host address.
func Gateway(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }

// allocate returns the sandbox's address, leasing the lowest free one if it
// has none.
func (a ipam) allocate(sandbox string) (_ netip.Addr, fresh bool, _ error) {
	var out netip.Addr
	err := a.update(func(l *leases) error {
		if s, ok := l.Leases[sandbox]; ok {
			addr, err := netip.ParseAddr(s)
			if err == nil {
				out = addr
				return nil
			}
		}
		fresh = true
		used := map[netip.Addr]bool{}
		for _, s := range l.Leases {
			if addr, err := netip.ParseAddr(s); err == nil {
				used[addr] = true
			}
		}
		base := a.subnet.Masked()
		for addr := Gateway(base).Next(); base.Contains(addr); addr = addr.Next() {
			if !base.Contains(addr.Next()) {
				break // the broadcast address
			}
			if !used[addr] {
				l.Leases[sandbox] = addr.String()
				out = addr
				return nil
			}
		}
		return fmt.Errorf("no free address in %s (%d sandboxes): use a larger --subnet", a.subnet, len(l.Leases))
	})
	return out, fresh, err
}

// release frees the sandbox's address; releasing twice is fine.
func (a ipam) release(sandbox string) error {
	return a.update(func(l *leases) error {
		delete(l.Leases, sandbox)
		return nil
	})
}

// list returns the current leases, sandbox -> address.
func (a ipam) list() (map[string]netip.Addr, error) {
	out := map[string]netip.Addr{}
	err := a.update(func(l *leases) error {
		for n, s := range l.Leases {
			if addr, err := netip.ParseAddr(s); err == nil {
				out[n] = addr
			}
		}
		return nil
	})
	return out, err
}

// read returns the leases as last written, without taking the lock or
// writing anything: the file is replaced by rename, so it is never seen
// half written. For the guard, which looks every second.
func (a ipam) read() (map[string]netip.Addr, error) {
	out := map[string]netip.Addr{}
	b, err := os.ReadFile(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: read %s: %w", a.path, err)
	}
	var l leases
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("ipam: %s is corrupt: %w", a.path, err)
	}
	for n, s := range l.Leases {
		if addr, err := netip.ParseAddr(s); err == nil {
			out[n] = addr
		}
	}
	return out, nil
}

// update runs fn on the lease file under an exclusive lock and writes the
// result atomically.
func (a ipam) update(fn func(*leases) error) error {
	if err := os.MkdirAll(filepath.Dir(a.path), 0o700); err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	lock, err := os.OpenFile(a.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("ipam lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("ipam lock: %w", err)
	}
	l := leases{Subnet: a.subnet.String(), Leases: map[string]string{}}
	b, err := os.ReadFile(a.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("ipam: read %s: %w", a.path, err)
	default:
		if err := json.Unmarshal(b, &l); err != nil {
			return fmt.Errorf("ipam: %s is corrupt: %w", a.path, err)
		}
		if l.Leases == nil {
			l.Leases = map[string]string{}
		}
		if l.Subnet != a.subnet.String() && len(l.Leases) > 0 {
			names := make([]string, 0, len(l.Leases))
			for n := range l.Leases {
				names = append(names, n)
			}
			sort.Strings(names)
			return fmt.Errorf("ipam: sandboxes %v hold addresses in %s; stop them before changing --subnet to %s", names, l.Subnet, a.subnet)
		}
		l.Subnet = a.subnet.String()
	}
	if err := fn(&l); err != nil {
		return err
	}
	out, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := a.path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return fmt.Errorf("ipam: write: %w", err)
	}
	return os.Rename(tmp, a.path)
}
