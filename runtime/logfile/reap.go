package logfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Reap keeps the logs in dir of sandboxes that no longer run within
// budget bytes together: a running sandbox's log is bounded by its own cap,
// but every sandbox that ever ran leaves its files behind, and names are
// free to make up. The logs of sandboxes keep reports as gone (stopped) are
// removed whole, least recently written first, until the rest fits. It
// returns the names whose logs went.
func Reap(dir string, budget int64, keep func(name string) bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list logs in %s: %w", dir, err)
	}
	type group struct {
		name  string
		files []string
		size  int64
		last  time.Time
	}
	groups := map[string]*group{}
	var total int64
	for _, e := range entries {
		name, ok := logOwner(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		g := groups[name]
		if g == nil {
			g = &group{name: name}
			groups[name] = g
		}
		g.files = append(g.files, filepath.Join(dir, e.Name()))
		g.size += fi.Size()
		if fi.ModTime().After(g.last) {
			g.last = fi.ModTime()
		}
		total += fi.Size()
	}
	var gone []*group
	for _, g := range groups {
		if keep(g.name) {
			total -= g.size // bounded by its own cap, and not ours to remove
			continue
		}
		gone = append(gone, g)
	}
	slices.SortFunc(gone, func(a, b *group) int { return a.last.Compare(b.last) })
	var reaped []string
	for _, g := range gone {
		if total <= budget {
			break
		}
		for _, f := range g.files {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return reaped, fmt.Errorf("remove old log %s: %w", f, err)
			}
		}
		total -= g.size
		reaped = append(reaped, g.name)
	}
	return reaped, nil
}

// logOwner is the sandbox a log file belongs to: NAME.log, NAME.log.N or
// NAME.log.prev.
func logOwner(file string) (string, bool) {
	i := strings.LastIndex(file, ".log")
	if i <= 0 {
		return "", false
	}
	switch rest := file[i+len(".log"):]; {
	case rest == "", rest == ".prev":
	case strings.HasPrefix(rest, "."):
		for _, c := range rest[1:] {
			if c < '0' || c > '9' {
				return "", false
			}
		}
	default:
		return "", false
	}
	return file[:i], true
}
