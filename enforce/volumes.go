package enforce

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"

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
	// InUse says that the volume's image is attached: its sandbox runs,
	// or a process still holds the last run's mounts.
	InUse bool `json:"in_use"`
	// Err says why the usage could not be read.
	Err string `json:"error,omitempty"`
}

// attachVolumes makes each of p's volumes that does not exist yet and
// attaches them all, for the runtime to mount inside the sandbox. The
// devices are returned open: close them once the task has mounted them (or
// the start failed).
func (s *Supervisor) attachVolumes(ctx context.Context, p *profiles.Profile, owner, uid, gid uint32) (mounts []runtime.Volume, devs []*os.File, err error) {
	// Under the host lock: two starts of one member must not both find
	// room in the budget for what only one fits.
	unlock, err := s.layout.lock()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	if owner != 0 {
		if err := s.withinBudget(p, owner); err != nil {
			return nil, nil, err
		}
	}
	wants := make([]volume.Want, len(p.Volumes))
	for i, v := range p.Volumes {
		wants[i] = volume.Want{Name: v.Name, Size: v.Size.Bytes}
	}
	created, err := s.vols.Ensure(ctx, p.Name, wants, owner, uid, gid)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range created {
		s.cfg.Log.Info("volume created", "sandbox", p.Name, "volume", n)
	}
	defer func() {
		if err != nil {
			closeAll(devs)
			devs, mounts = nil, nil
			// A volume this start made holds nothing yet: it goes with
			// the start, not left reserving its size.
			for _, n := range created {
				_ = s.vols.Remove(p.Name, n)
			}
		}
	}()
	for _, v := range p.Volumes {
		dev, err := s.vols.Attach(ctx, p.Name, v.Name, uid, gid)
		if err != nil {
			return mounts, devs, err
		}
		devs = append(devs, dev)
		mounts = append(mounts, runtime.Volume{Device: dev.Name(), Target: v.Target})
	}
	return mounts, devs, nil
}

// withinBudget checks that the volumes owner has, with those p would add,
// fit MemberVolumeBudget.
func (s *Supervisor) withinBudget(p *profiles.Profile, owner uint32) error {
	// A record that cannot be read is nobody's to count.
	all, _ := s.vols.List()
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

// Volumes lists every volume with what it holds. owner limits the list to
// one user's (a socket-group member's); root passes 0 and sees them all.
// Records that cannot be read are shown as such.
func (s *Supervisor) Volumes(owner uint32) ([]VolumeStatus, error) {
	all, listErr := s.vols.List()
	out := []VolumeStatus{}
	for _, v := range all {
		if owner != 0 && v.Owner != owner {
			continue
		}
		vs := VolumeStatus{Info: v}
		dev, err := volume.InUse(v)
		vs.InUse = dev != "" && err == nil
		if vs.UsedBytes, err = volume.Usage(v, s.insideVolume(v)); err != nil {
			vs.Err = err.Error()
		}
		out = append(out, vs)
	}
	if listErr != nil && owner == 0 {
		out = append(out, VolumeStatus{Err: listErr.Error()})
	}
	return out, nil
}

// insideVolume is a path into the volume as its running sandbox mounted
// it, or "" when it has none: the superblock on the host is brought up to
// date only when the filesystem is unmounted.
func (s *Supervisor) insideVolume(v volume.Info) string {
	st, err := s.layout.read(v.Sandbox)
	if err != nil || st.Pid == 0 || st.Spec == nil {
		return ""
	}
	for _, pv := range st.Spec.Volumes {
		if pv.Name == v.Name {
			return "/proc/" + strconv.FormatUint(uint64(st.Pid), 10) + "/root" + pv.Target
		}
	}
	return ""
}

// RemoveVolumes deletes the sandbox's volumes of the given names (all of
// them when names is empty) and what they hold. A sandbox that exists keeps
// its volumes: stop it first. A member (owner != 0) sees only its own: to
// it another's volume does not exist.
func (s *Supervisor) RemoveVolumes(ctx context.Context, sandbox string, names []string, owner uint32) ([]string, error) {
	unlock, err := s.layout.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, _ := s.vols.List()
	var todo []volume.Info
	for _, v := range all {
		if v.Sandbox == sandbox && (owner == 0 || v.Owner == owner) && (len(names) == 0 || slices.Contains(names, v.Name)) {
			todo = append(todo, v)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(todo, func(v volume.Info) bool { return v.Name == n }) {
			return nil, fmt.Errorf("sandbox %s has no volume %s (see `clawguard volume ls`): %w", sandbox, n, runtime.ErrNotFound)
		}
	}
	if len(todo) == 0 {
		return nil, fmt.Errorf("sandbox %s has no volumes (see `clawguard volume ls`): %w", sandbox, runtime.ErrNotFound)
	}
	if s.Exists(ctx, sandbox) {
		return nil, fmt.Errorf("sandbox %s exists and uses its volumes: stop it first (`clawguard stop %s`): %w", sandbox, sandbox, volume.ErrInUse)
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
