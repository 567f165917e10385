package profiles

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SourcePolicy decides which host paths may be bind-mounted into a sandbox or
// used as its secrets directory. Paths are judged after every symlink is
// resolved, parents included, so a link to /etc is /etc.
type SourcePolicy struct {
	// StateDir is clawguard's state directory: never visible to a sandbox.
	StateDir string
	// Homes are the host's home directories; see HostHomes.
	Homes []string
}

// protectedRoots may not be mounted, nor anything under them, nor anything
// that contains them.
var protectedRoots = []string{"/etc", "/proc", "/sys", "/dev", "/boot", "/run", "/var/run", "/var/lib/containerd"}

// credentialDirs are refused anywhere under a home directory.
var credentialDirs = []string{".ssh", ".gnupg", ".aws", ".docker", ".kube", ".config", ".netrc", ".npm"}

// runtimeSockets are refused by name wherever they are, and so is a directory
// that holds one directly.
var runtimeSockets = []string{"docker.sock", "containerd.sock"}

// HostHomes returns /root, every directory under /home and the home of every
// account with uid >= 1000 in /etc/passwd (other than nobody).
func HostHomes() []string {
	homes := []string{"/root"}
	if entries, err := os.ReadDir("/home"); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				homes = append(homes, filepath.Join("/home", e.Name()))
			}
		}
	}
	if f, err := os.Open("/etc/passwd"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			parts := strings.Split(sc.Text(), ":")
			if len(parts) < 7 {
				continue
			}
			uid, err := strconv.Atoi(parts[2])
			if err != nil || uid < 1000 || uid == 65534 || parts[5] == "" || parts[5] == "/" {
				continue
			}
			homes = append(homes, filepath.Clean(parts[5]))
		}
	}
	return homes
}

// Check resolves path and returns its real location, or an error saying why it
// may not be given to a sandbox. A missing path is an error too.
func (sp SourcePolicy) Check(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s does not exist", abs)
		}
		return "", fmt.Errorf("resolve %s: %w", abs, unwrapPathError(err))
	}
	via := ""
	if real != abs {
		via = fmt.Sprintf(" (%s resolves to %s)", abs, real)
	}
	if real == "/" {
		return "", fmt.Errorf("the host's root directory may not be given to a sandbox%s", via)
	}
	refused := slicesClone(protectedRoots)
	if sp.StateDir != "" {
		refused = append(refused, resolveIfExists(sp.StateDir))
	}
	for _, r := range refused {
		if within(real, r) {
			return "", fmt.Errorf("%s is under %s, which a sandbox may not see%s", real, r, via)
		}
		if within(r, real) {
			return "", fmt.Errorf("%s contains %s, which a sandbox may not see%s", real, r, via)
		}
	}
	for _, h := range sp.Homes {
		h = resolveIfExists(h)
		if within(h, real) {
			return "", fmt.Errorf("%s is or contains the home directory %s; mount a project folder inside it instead%s", real, h, via)
		}
		if rel, ok := relWithin(real, h); ok {
			for _, part := range strings.Split(rel, string(filepath.Separator)) {
				for _, c := range credentialDirs {
					if part == c {
						return "", fmt.Errorf("%s is inside the credential directory %s of %s%s", real, c, h, via)
					}
				}
			}
		}
	}
	base := filepath.Base(real)
	for _, s := range runtimeSockets {
		if base == s {
			return "", fmt.Errorf("%s is a container runtime socket: it would give the sandbox control of the host%s", real, via)
		}
		if _, err := os.Lstat(filepath.Join(real, s)); err == nil {
			return "", fmt.Errorf("%s holds the container runtime socket %s%s", real, s, via)
		}
	}
	if fi, err := os.Stat(real); err == nil && fi.Mode()&fs.ModeSocket != 0 {
		return "", fmt.Errorf("%s is a unix socket: a sandbox may not reach host services through mounts%s", real, via)
	}
	return real, nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	_, ok := relWithin(p, dir)
	return ok
}

func relWithin(p, dir string) (string, bool) {
	if p == dir {
		return ".", true
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	if strings.HasPrefix(p, prefix) {
		return strings.TrimPrefix(p, prefix), true
	}
	return "", false
}

func resolveIfExists(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
