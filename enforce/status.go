package enforce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/clawguard/clawguard/runtime"
)

// Status is one sandbox as `clawguard status` shows it. The JSON form is
// stable: fields are added, never renamed.
type Status struct {
	Name          string    `json:"name"`
	State         string    `json:"state"`
	Image         string    `json:"image"`
	Pid           uint32    `json:"pid,omitempty"`
	Profile       string    `json:"profile,omitempty"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	UptimeSeconds float64   `json:"uptime_seconds,omitempty"`
	Network       string    `json:"network"`
	MemoryBytes   int64     `json:"memory_limit_bytes,omitempty"`
	CPUs          float64   `json:"cpus,omitempty"`
	Pids          int64     `json:"pids_limit,omitempty"`
	Secrets       []string  `json:"secrets,omitempty"`
	LogPath       string    `json:"log_path,omitempty"`
	Problem       string    `json:"problem,omitempty"`
}

// Status reports one sandbox (name != "") or all of them, merging what the
// state directory remembers with what containerd has, so that leftovers of
// either kind are shown rather than hidden.
func (s *Supervisor) Status(ctx context.Context, name string, now time.Time) ([]Status, error) {
	infos := map[string]runtime.Info{}
	list, err := s.rt.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, i := range list {
		infos[i.Name] = i
	}
	names, err := s.layout.names()
	if err != nil {
		return nil, fmt.Errorf("read state directory: %w", err)
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	for n := range infos {
		if !seen[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []Status
	for _, n := range names {
		if name != "" && n != name {
			continue
		}
		out = append(out, s.status(n, infos, now))
	}
	if name != "" && len(out) == 0 {
		return nil, fmt.Errorf("status %s: %w", name, runtime.ErrNotFound)
	}
	return out, nil
}

func (s *Supervisor) status(name string, infos map[string]runtime.Info, now time.Time) Status {
	st := Status{Name: name, Network: "none (loopback only)"}
	info, hasContainer := infos[name]
	state, err := s.layout.read(name)
	switch {
	case err == nil:
		st.Image, st.Profile, st.StartedAt = state.Image, state.Profile, state.StartedAt
		st.MemoryBytes, st.CPUs, st.Pids = state.Memory, state.CPUs, state.Pids
		st.Secrets, st.LogPath = state.Secrets, state.LogPath
	case errors.Is(err, os.ErrNotExist):
		if hasContainer {
			st.Problem = "container labelled as a clawguard sandbox but unknown to this state directory"
		}
	default:
		st.Problem = err.Error()
	}
	switch {
	case hasContainer:
		st.Image, st.Pid = info.Image, info.Pid
		st.State = info.State
		if st.State == "" {
			st.State = "created"
		}
	case state != nil && state.Status == "starting":
		st.State = "starting"
	default:
		st.State = "missing"
		st.Problem = "state remains but the container is gone: run `clawguard stop " + name + "` to clean up"
	}
	if st.State == "running" && !st.StartedAt.IsZero() {
		st.UptimeSeconds = now.Sub(st.StartedAt).Seconds()
	}
	return st
}

// FollowLog copies a sandbox's log to w. With follow it keeps reading until
// ctx ends or stop is closed (the sandbox exited), then drains what is left.
func FollowLog(ctx context.Context, path string, w io.Writer, follow bool, stop <-chan struct{}) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open log %s: %w", path, err)
	}
	defer f.Close()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := io.Copy(w, f); err != nil {
			return fmt.Errorf("read log %s: %w", path, err)
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			_, err := io.Copy(w, f)
			return err
		case <-tick.C:
		}
	}
}
