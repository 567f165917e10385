package profiles

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// InitResult says what Init wrote and what it left alone.
type InitResult struct {
	Written []string `json:"written"`
	Kept    []string `json:"kept"`
}

// Init lays out everything a built-in profile needs in dir: the profile as
// NAME.yaml, the agent's hardened configuration, the allowlist change log,
// the workspace and state directories (owned by the sandbox user) and a
// random gateway token. Files that exist are kept, never overwritten.
func Init(name, dir string, now time.Time) (InitResult, error) {
	var res InitResult
	text, err := BuiltinYAML(name)
	if err != nil {
		return res, fmt.Errorf("no built-in profile %q", name)
	}
	files, err := BuiltinFiles(name)
	if err != nil {
		return res, err
	}
	p, err := LoadBuiltin(name, dir)
	if err != nil {
		return res, err
	}
	uid, gid, err := p.IDs()
	if err != nil {
		return res, err
	}
	files[name+".yaml"] = text
	if p.Agent == AgentOpenClaw {
		files[ChangeLogFile] = []byte(ChangeLogHeader + BaselineRow(now).String())
	}
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		return res, err
	}
	dir = p.Dir // its real path, pinned by LoadBuiltin
	write := func(rel string, data []byte, mode os.FileMode) error {
		path := filepath.Join(dir, rel)
		if _, err := os.Lstat(path); err == nil {
			res.Kept = append(res.Kept, rel)
			return nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := createBeneath(dir, rel, data, mode); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		res.Written = append(res.Written, rel)
		return nil
	}
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		if err := write(rel, files[rel], 0o644); err != nil {
			return res, err
		}
	}
	if p.Agent == AgentOpenClaw && p.Secrets.Dir != "" {
		if err := os.MkdirAll(p.Path(p.Secrets.Dir), 0o700); err != nil {
			return res, err
		}
		rel, _ := filepath.Rel(dir, filepath.Join(p.Path(p.Secrets.Dir), "gateway-token"))
		if err := write(rel, []byte(hex.EncodeToString(token)+"\n"), 0o600); err != nil {
			return res, err
		}
	}
	for _, m := range p.Mounts {
		if !m.Writable() {
			continue
		}
		path := p.Path(m.Source)
		rel, _ := filepath.Rel(dir, path)
		if _, err := os.Stat(path); err == nil {
			res.Kept = append(res.Kept, rel+"/")
			continue
		}
		if err := os.MkdirAll(path, 0o750); err != nil {
			return res, err
		}
		if err := chownBeneath(dir, rel, uid, gid); err != nil {
			return res, fmt.Errorf("give %s to the sandbox user %d:%d: %w", path, uid, gid, err)
		}
		res.Written = append(res.Written, rel+"/")
	}
	return res, nil
}

// createBeneath writes a new file dir/rel, never through a link: its
// directory is opened beneath dir with no link on the way, and the file
// created there exclusively. Run as root in a directory another user owns,
// a planted or swapped link (secrets -> /etc/sudoers.d, a file -> /etc/passwd)
// gets an error, not a root-owned write.
func createBeneath(dir, rel string, data []byte, mode os.FileMode) error {
	dfd, err := openNoLinks(unix.AT_FDCWD, dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	pfd, err := openNoLinks(dfd, filepath.Dir(rel), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("%s: %w (a symbolic link on the way is refused)", filepath.Dir(rel), err)
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, filepath.Base(rel), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode.Perm()))
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), rel)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// chownBeneath gives dir/rel to uid:gid through a descriptor opened beneath
// dir without following any symbolic link: whoever owns dir may swap rel for
// a link to /etc between the mkdir and the chown, and must then get an
// error, not /etc owned by the sandbox user.
func chownBeneath(dir, rel string, uid, gid uint32) error {
	dfd, err := openNoLinks(unix.AT_FDCWD, dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	fd, err := openNoLinks(dfd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("open %s beneath %s without following links: %w", rel, dir, err)
	}
	defer unix.Close(fd)
	return unix.Fchown(fd, int(uid), int(gid))
}
