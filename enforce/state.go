package enforce

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime"
)

// stateVersion is bumped whenever State changes incompatibly.
const stateVersion = 1

// State is what clawguard remembers about one sandbox between commands. It
// never holds a secret value: only the names of the secret files.
type State struct {
	Version    int       `json:"version"`
	Name       string    `json:"name"`
	Image      string    `json:"image"`
	Profile    string    `json:"profile"`
	Status     string    `json:"status"` // starting, running
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	Pid        uint32    `json:"pid,omitempty"`
	Supervisor int       `json:"supervisor_pid"`
	// Owner is the uid that asked for the sandbox: 0 for root, a member
	// of the socket group's own otherwise.
	Owner       uint32          `json:"owner_uid"`
	NetNS       string          `json:"netns"`
	IP          netip.Addr      `json:"ip,omitzero"`
	Gateway     netip.Addr      `json:"gateway,omitzero"`
	DNSPort     int             `json:"dns_port,omitempty"`
	Secrets     []string        `json:"secrets,omitempty"`
	LogPath     string          `json:"log_path"`
	StopTimeout string          `json:"stop_timeout"`
	Egress      profiles.Egress `json:"egress"`
	Publish     []string        `json:"publish,omitempty"`
	Memory      int64           `json:"memory_bytes"`
	CPUs        float64         `json:"cpus"`
	Pids        int64           `json:"pids"`
	// Spec is the validated profile the sandbox was started from, for
	// verify; Probe whether the verify probe is mounted.
	Spec  *profiles.Profile `json:"spec,omitempty"`
	Probe bool              `json:"probe,omitempty"`
	// Seccomp is the text of a seccomp file the sandbox was started
	// with, so verify judges it by what was applied and never opens the
	// profile's path again (its owner may have swapped it since).
	Seccomp []byte `json:"seccomp,omitempty"`
	// Placeholders are what the sandbox holds in place of each bound
	// secret (by file name): worthless outside the broker, and kept so a
	// daemon that adopts the sandbox binds the same ones.
	Placeholders map[string]string `json:"placeholders,omitempty"`
}

// Owner is the uid that asked for the sandbox name (0 for root).
func (s *Supervisor) Owner(name string) (uint32, error) {
	st, err := s.layout.read(name)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("sandbox %s: %w", name, runtime.ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return st.Owner, nil
}

// layout names the files under the state directory.
type layout struct{ root string }

func (l layout) sandboxes() string            { return filepath.Join(l.root, "sandboxes") }
func (l layout) dir(name string) string       { return filepath.Join(l.sandboxes(), name) }
func (l layout) stateFile(name string) string { return filepath.Join(l.dir(name), "state.json") }
func (l layout) secretsDir(name string) string {
	return filepath.Join(l.dir(name), "secrets")
}

// mountsDir holds a sandbox's bind sources, each mounted there from the
// descriptor that was judged (see stageMounts).
func (l layout) mountsDir(name string) string { return filepath.Join(l.dir(name), "mounts") }

// volumes holds the volumes' images, which outlive their sandboxes.
func (l layout) volumes() string               { return filepath.Join(l.root, "volumes") }
func (l layout) egressFile(name string) string { return filepath.Join(l.dir(name), "egress.json") }
func (l layout) resolvConf(name string) string { return filepath.Join(l.dir(name), "resolv.conf") }

// caFile and caBundleFile are the sandbox's certificate authority, and the
// host's trust store with it, as the sandbox reads them.
func (l layout) caFile(name string) string       { return filepath.Join(l.dir(name), "ca.pem") }
func (l layout) caBundleFile(name string) string { return filepath.Join(l.dir(name), "ca-bundle.pem") }

// caKeyFile is the authority's key, root's alone, for adoption.
func (l layout) caKeyFile(name string) string { return filepath.Join(l.dir(name), "ca-key.pem") }
func (l layout) logFile(name string) string   { return filepath.Join(l.root, "logs", name+".log") }
func (l layout) lockFile() string             { return filepath.Join(l.root, "clawguard.lock") }

// claim creates the sandbox's directory; it fails if the name is taken.
func (l layout) claim(name string) error {
	if err := os.MkdirAll(l.sandboxes(), 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := os.Mkdir(l.dir(name), 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("sandbox %q already exists: stop it first with `clawguard stop %s`, or choose another --name: %w", name, name, ErrExists)
		}
		return fmt.Errorf("claim sandbox %s: %w", name, err)
	}
	return nil
}

// ErrExists is returned when a sandbox name is already in use.
var ErrExists = errors.New("sandbox exists")

func (l layout) write(st *State) error {
	st.Version = stateVersion
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state of %s: %w", st.Name, err)
	}
	tmp := l.stateFile(st.Name) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write state of %s: %w", st.Name, err)
	}
	if err := os.Rename(tmp, l.stateFile(st.Name)); err != nil {
		return fmt.Errorf("write state of %s: %w", st.Name, err)
	}
	return nil
}

func (l layout) read(name string) (*State, error) {
	b, err := os.ReadFile(l.stateFile(name))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state of %s: %w", name, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state of %s: version %d, this clawguard reads %d", name, st.Version, stateVersion)
	}
	return &st, nil
}

// names lists the sandboxes that have a state directory.
func (l layout) names() ([]string, error) {
	entries, err := os.ReadDir(l.sandboxes())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// lock serialises claims and teardowns between clawguard processes (a
// foreground `run` and a `stop` from another terminal tear down the same
// sandbox at the same moment).
func (l layout) lock() (func(), error) {
	if err := os.MkdirAll(l.root, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", l.root, err)
	}
	f, err := os.OpenFile(l.lockFile(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", l.lockFile(), err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", l.lockFile(), err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// ErrDaemonRunning means another daemon holds the state directory.
var ErrDaemonRunning = errors.New("another clawguard daemon is running")

// daemonLock is held by a daemon for its whole life: two daemons on one
// state directory would both reconcile and adopt, and fight over every
// sandbox. flock, not a pid check: the kernel drops it when the holder dies,
// however it dies, and no two processes can both win it.
func (l layout) daemonLock() (release func(), err error) {
	if err := os.MkdirAll(l.root, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", l.root, err)
	}
	path := filepath.Join(l.root, "daemon.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: pid %s holds %s (stop it first: systemctl stop clawguard)", ErrDaemonRunning, strings.TrimSpace(string(holder)), path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// LogPathIn is where the log of sandbox name is kept under stateDir.
func LogPathIn(stateDir, name string) string { return layout{root: stateDir}.logFile(name) }

// CheckStateDir refuses a state directory that someone other than this
// process's user could change: root writes logs, state and audit lines
// there, and follows the names in it. A directory, or any directory above
// it, that another user may write to (and is not sticky) lets that user
// swap a component for a link to /etc between two of root's writes; so
// does a link of theirs on the way. Both the path as given and the one it
// leads to are checked. A directory not there yet is judged by its nearest
// existing ancestor.
func CheckStateDir(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", path, err)
	}
	real := abs
	for p := abs; ; p = filepath.Dir(p) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			real = filepath.Join(r, strings.TrimPrefix(abs, p))
			break
		}
		if p == "/" {
			break
		}
	}
	for _, chain := range []string{abs, real} {
		if err := checkOwnedChain(abs, chain); err != nil {
			return err
		}
	}
	return nil
}

func checkOwnedChain(dir, path string) error {
	uid := uint32(os.Geteuid())
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("state directory %s: %w", dir, err)
		default:
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return fmt.Errorf("state directory %s: cannot read the owner of %s", dir, p)
			}
			mode := fi.Mode()
			switch {
			case st.Uid != uid && st.Uid != 0:
				return fmt.Errorf("state directory %s: %s belongs to uid %d, who could swap what clawguard writes there: use a directory only root owns, such as /var/lib/clawguard", dir, p, st.Uid)
			case mode&os.ModeSymlink == 0 && mode.Perm()&0o022 != 0 && mode&os.ModeSticky == 0:
				return fmt.Errorf("state directory %s: %s is writable by group or others (%s): chmod go-w %s, or use /var/lib/clawguard", dir, p, mode.Perm(), p)
			}
		}
		if p == "/" {
			return nil
		}
	}
}
