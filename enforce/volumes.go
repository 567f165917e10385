package enforce

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime"
	"github.com/clawguard/clawguard/runtime/volume"
)

// MemberVolumeBudget is what the volumes of one socket-group member may take
// together. Each volume's blocks are reserved on the host's disk when it is
// made, so without a budget a member could reserve the whole disk by naming
// sandboxes.
const MemberVolumeBudget = 8 << 30

// VolumeStatus is one volume as `clawguard volume ls` shows it.
type VolumeStatus struct {
	volume.Info
	UsedBytes int64 `json:"used_bytes"`
	// InUse says that a sandbox of that name exists and has it mounted.
	InUse bool `json:"in_use"`
	// Err says why the usage could not be read.
	Err string `json:"error,omitempty"`
}

// stageVolumes makes each of p's volumes that does not exist yet and mounts
// them all under the sandbox's state directory, where runc binds them from.
func (s *Supervisor) stageVolumes(ctx context.Context, p *profiles.Profile, owner, uid, gid uint32) error {
	// Under the host lock: two starts of one member must not both find
	// room in the budget for what only one fits.
	unlock, err := s.layout.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if owner != 0 {
		if err := s.withinBudget(p, owner); err != nil {
			return err
		}
	}
	for _, v := range p.Volumes {
		created, err := s.vols.Ensure(ctx, p.Name, v.Name, v.Size.Bytes, owner, uid, gid)
		if err != nil {
			return err
		}
		if created {
			s.cfg.Log.Info("volume created", "sandbox", p.Name, "volume", v.Name, "size", v.Size.String())
		}
		if err := s.vols.Mount(p.Name, v.Name, s.layout.volumeMount(p.Name, v.Name), uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// withinBudget checks that the volumes owner has, with those p would add,
// fit MemberVolumeBudget.
func (s *Supervisor) withinBudget(p *profiles.Profile, owner uint32) error {
	all, err := s.vols.List()
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	var total int64
	have := map[string]bool{}
	for _, v := range all {
		if v.Owner == owner {
			total += v.SizeBytes
			if v.Sandbox == p.Name {
				have[v.Name] = true
			}
		}
	}
	for _, v := range p.Volumes {
		if !have[v.Name] {
			total += v.Size.Bytes
		}
	}
	if total > MemberVolumeBudget {
		return fmt.Errorf("volumes: your volumes would take %s together, more than the %s a member of the socket group may have: remove some with `clawguard volume rm` (see `clawguard volume ls`) or ask for less",
			profiles.FormatSize(total), profiles.FormatSize(MemberVolumeBudget))
	}
	return nil
}

// unstageVolumes unmounts every volume of the sandbox and removes their
// mount points. The images stay: a volume outlives its sandbox.
func unstageVolumes(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, volume.Unmount(filepath.Join(dir, e.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Volumes lists every volume with what it holds. owner limits the list to
// one user's (a socket-group member's); root passes 0 and sees them all.
func (s *Supervisor) Volumes(owner uint32) ([]VolumeStatus, error) {
	all, err := s.vols.List()
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	out := []VolumeStatus{}
	for _, v := range all {
		if owner != 0 && v.Owner != owner {
			continue
		}
		vs := VolumeStatus{Info: v}
		mnt := s.layout.volumeMount(v.Sandbox, v.Name)
		if _, err := os.Stat(mnt); err == nil {
			vs.InUse = true
		} else {
			mnt = ""
		}
		if vs.UsedBytes, err = volume.Usage(v, mnt); err != nil {
			vs.Err = err.Error()
		}
		out = append(out, vs)
	}
	return out, nil
}

// RemoveVolumes deletes the sandbox's volumes of the given names (all of
// them when names is empty) and what they hold. A sandbox that exists keeps
// its volumes: stop it first. A member (owner != 0) removes only its own.
func (s *Supervisor) RemoveVolumes(ctx context.Context, sandbox string, names []string, owner uint32) ([]string, error) {
	unlock, err := s.layout.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if s.Exists(ctx, sandbox) {
		return nil, fmt.Errorf("sandbox %s exists and uses its volumes: stop it first (`clawguard stop %s`): %w", sandbox, sandbox, volume.ErrInUse)
	}
	all, err := s.vols.List()
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var todo []volume.Info
	for _, v := range all {
		if v.Sandbox == sandbox && (len(names) == 0 || slices.Contains(names, v.Name)) {
			todo = append(todo, v)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(todo, func(v volume.Info) bool { return v.Name == n }) {
			return nil, fmt.Errorf("sandbox %s has no volume %s (see `clawguard volume ls`): %w", sandbox, n, runtime.ErrNotFound)
		}
	}
	if len(todo) == 0 {
		return nil, fmt.Errorf("sandbox %s has no volumes: %w", sandbox, runtime.ErrNotFound)
	}
	for _, v := range todo {
		if owner != 0 && v.Owner != owner {
			return nil, fmt.Errorf("volume %s of sandbox %s: %w (uid %d)", v.Name, sandbox, volume.ErrNotOwner, v.Owner)
		}
	}
	var removed []string
	for _, v := range todo {
		if err := s.vols.Remove(sandbox, v.Name); err != nil {
			return removed, err
		}
		removed = append(removed, v.Name)
		s.cfg.Log.Info("volume removed", "sandbox", sandbox, "volume", v.Name)
	}
	return removed, nil
}
