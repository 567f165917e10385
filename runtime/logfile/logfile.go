// Package logfile keeps a sandbox's output in files of bounded size: the
// current file and a fixed number of older generations beside it (PATH.1 the
// newest, PATH.KEEP the oldest), so an agent that prints without end cannot
// fill the disk that the daemon and every other sandbox share.
package logfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ErrClosed is returned by a write to a closed Writer.
var ErrClosed = errors.New("log writer is closed")

// Writer appends to PATH until the next write would take it past MaxSize,
// then shifts the generations (PATH -> PATH.1 -> ... -> PATH.Keep, the oldest
// dropped) and starts PATH afresh. No file ever holds more than MaxSize
// bytes, so the files on disk hold at most (Keep+1)*MaxSize. It is safe for
// concurrent use; it starts no goroutines and holds no buffer.
type Writer struct {
	path    string
	maxSize int64
	keep    int

	mu     sync.Mutex
	f      *os.File // nil after a failed rotation: the next write opens PATH again
	size   int64
	closed bool
}

// Open opens PATH for appending (creating it 0600), counting what it already
// holds against MaxSize, and removes generations beyond keep that an earlier
// run with a larger keep left.
func Open(path string, maxSize int64, keep int) (*Writer, error) {
	if maxSize <= 0 {
		return nil, fmt.Errorf("open log %s: max size %d: must be positive", path, maxSize)
	}
	if keep < 0 {
		return nil, fmt.Errorf("open log %s: keep %d: must not be negative", path, keep)
	}
	w := &Writer{path: path, maxSize: maxSize, keep: keep}
	if err := w.prune(); err != nil {
		return nil, err
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// Write writes p whole or returns why not. A p that does not fit in what is
// left of the current file goes to a fresh one, so a line written at once
// is not split across files when it need not be; a p larger than MaxSize
// is split over as many files as it takes (the oldest of them may then be
// rotated away in the same call).
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	n := 0
	for len(p) > 0 {
		if w.f == nil {
			if err := w.open(); err != nil {
				return n, err
			}
		}
		room := w.maxSize - w.size
		if room <= 0 || (int64(len(p)) > room && w.size > 0) {
			if err := w.rotate(); err != nil {
				return n, err
			}
			continue
		}
		chunk := p[:min(int64(len(p)), room)]
		m, err := w.f.Write(chunk)
		w.size += int64(m)
		n += m
		p = p[m:]
		if err != nil {
			return n, fmt.Errorf("write log %s: %w", w.path, err)
		}
	}
	return n, nil
}

// Close closes the current file. Later writes fail with ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("close log %s: %w", w.path, err)
	}
	return nil
}

// open opens PATH for appending and takes its size as the starting point.
// O_NOFOLLOW: a link planted where the log goes is refused, not written
// through.
func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open log %s: %w", w.path, err)
	}
	// An existing file keeps its mode on open: one written before logs
	// were private is made so here.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("open log %s: chmod: %w", w.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open log %s: %w", w.path, err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// rotate closes PATH, shifts the generations and opens a fresh PATH. The
// file is closed before it is renamed, so a reader that follows PATH finds
// everything in the renamed file once it sees PATH replaced.
func (w *Writer) rotate() error {
	if w.f != nil {
		err := w.f.Close()
		w.f = nil
		if err != nil {
			return fmt.Errorf("rotate log %s: close: %w", w.path, err)
		}
	}
	if err := shift(w.path, w.keep); err != nil {
		return err
	}
	return w.open()
}

// prune removes numbered generations above keep.
func (w *Writer) prune() error {
	gens, err := numbered(w.path)
	if err != nil {
		return err
	}
	for _, g := range gens {
		if g.n > w.keep {
			if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove old log %s: %w", g.path, err)
			}
		}
	}
	return nil
}

// shift moves PATH's generations by one: PATH.keep-1 becomes PATH.keep
// (replacing the oldest), ..., PATH becomes PATH.1. With keep 0, PATH is
// removed. Missing files are skipped.
func shift(path string, keep int) error {
	if keep <= 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate log %s: %w", path, err)
		}
		return nil
	}
	for i := keep - 1; i >= 0; i-- {
		from := genPath(path, i)
		if err := os.Rename(from, genPath(path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate log %s: %w", from, err)
		}
	}
	return nil
}

// genPath is the name of PATH's i-th older file; 0 is PATH itself.
func genPath(path string, i int) string {
	if i == 0 {
		return path
	}
	return path + "." + strconv.Itoa(i)
}

// prevPath is where StartOver keeps the last file of the previous run.
func prevPath(path string) string { return path + ".prev" }

// StartOver begins a new run's log: PATH becomes PATH.prev (so the end of
// the previous run stays readable, and the new run's log starts empty) and
// the previous run's numbered generations are removed.
func StartOver(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	if err := os.Rename(path, prevPath(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("keep previous log %s: %w", path, err)
	}
	gens, err := numbered(path)
	if err != nil {
		return err
	}
	for _, g := range gens {
		if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove previous log %s: %w", g.path, err)
		}
	}
	return nil
}

// Files lists PATH's numbered generations that exist, oldest first, then
// PATH itself: the order their contents were written in.
func Files(path string) ([]string, error) {
	gens, err := numbered(path)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(gens)+1)
	for _, g := range gens {
		out = append(out, g.path)
	}
	return append(out, path), nil
}

type generation struct {
	n    int
	path string
}

// numbered finds PATH.N files (N >= 1), highest N (oldest) first.
func numbered(path string) ([]generation, error) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list logs of %s: %w", path, err)
	}
	prefix := filepath.Base(path) + "."
	var gens []generation
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(suffix)
		// Only the canonical spelling: "01" or "+1" is not ours.
		if err != nil || n < 1 || strconv.Itoa(n) != suffix {
			continue
		}
		gens = append(gens, generation{n: n, path: filepath.Join(filepath.Dir(path), e.Name())})
	}
	slices.SortFunc(gens, func(a, b generation) int { return b.n - a.n })
	return gens, nil
}
