package enforce

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/clawguard/clawguard/runtime"

	"github.com/clawguard/clawguard/enforce/audit"
)

// ReconcileReport says what reconcile found and did.
type ReconcileReport struct {
	Kept    []string `json:"kept"`    // sandboxes that are live and were left alone
	Removed []string `json:"removed"` // everything removed, one object per line
}

// Reconcile makes the host hold exactly the objects of the live sandboxes.
// A sandbox is live when its container has a task, or when a supervisor that
// is still alive is starting it. Sandboxes that are not live are torn down;
// containers labelled as ours with no state, kernel objects named after no
// live sandbox, and snapshots no container uses are removed.
func (s *Supervisor) Reconcile(ctx context.Context) (ReconcileReport, error) {
	rep := ReconcileReport{Kept: []string{}, Removed: []string{}}
	infos, err := s.rt.List(ctx)
	if err != nil {
		return rep, err
	}
	containers := map[string]runtime.Info{}
	for _, i := range infos {
		containers[i.Name] = i
	}
	names, err := s.layout.names()
	if err != nil {
		return rep, fmt.Errorf("read state directory: %w", err)
	}
	var errs []error
	for _, n := range names {
		if s.live(n, containers) {
			rep.Kept = append(rep.Kept, n)
			continue
		}
		if err := s.Teardown(ctx, n); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Removed = append(rep.Removed, "sandbox "+n+" (no running task)")
	}
	for n := range containers {
		if slices.Contains(names, n) {
			continue
		}
		if err := s.rt.Delete(ctx, n); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Removed = append(rep.Removed, "container "+n+" (labelled as a sandbox, no state)")
	}
	swept, err := s.net.Sweep(rep.Kept)
	rep.Removed = append(rep.Removed, swept...)
	if err != nil {
		errs = append(errs, err)
	}
	snaps, err := s.rt.SweepSnapshots(ctx)
	for _, k := range snaps {
		rep.Removed = append(rep.Removed, "snapshot "+k)
	}
	if err != nil {
		errs = append(errs, err)
	}
	slices.Sort(rep.Kept)
	if len(rep.Removed) > 0 {
		s.audit.Write("", audit.Event{Kind: "reconciled", Reason: fmt.Sprint(rep.Removed)})
	}
	return rep, errors.Join(errs...)
}

// live reports whether a sandbox with state should be kept.
func (s *Supervisor) live(name string, containers map[string]runtime.Info) bool {
	if info, ok := containers[name]; ok && info.State != "" && info.State != "stopped" {
		return true
	}
	st, err := s.layout.read(name)
	return err == nil && st.Status == "starting" && processAlive(st.Supervisor)
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
