package logfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// CopyOlder copies PATH's numbered generations to w, oldest first: what
// was written before the current file. A generation rotated away while
// they are read is skipped.
func CopyOlder(path string, w io.Writer) error {
	files, err := Files(path)
	if err != nil {
		return err
	}
	for _, name := range files[:len(files)-1] {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open log %s: %w", name, err)
		}
		_, err = io.Copy(w, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("read log %s: %w", name, err)
		}
	}
	return nil
}

// Follow copies PATH to w, then, with follow, what is appended to it, until
// ctx ends or stop is closed (then what is left). When the writer rotates
// PATH away, Follow finishes the old file and goes on with the new one from
// its start; output that is written and rotated away again between two
// polls is not seen.
func Follow(ctx context.Context, path string, w io.Writer, follow bool, poll time.Duration, stop <-chan struct{}) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open log %s: %w", path, err)
	}
	defer func() { f.Close() }()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if err := copyAll(w, f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			if f, err = reopenIfRotated(w, f, path); err != nil {
				return err
			}
			return copyAll(w, f)
		case <-tick.C:
		}
		if f, err = reopenIfRotated(w, f, path); err != nil {
			return err
		}
	}
}

// reopenIfRotated returns f, or, once PATH names another file (the writer
// rotated), finishes f and returns PATH newly opened. The writer closes a
// file before it renames it, so f holds everything by then. f's inode
// cannot be reused while f is open, so "another file" is never a false
// "the same".
func reopenIfRotated(w io.Writer, f *os.File, path string) (*os.File, error) {
	was, err := f.Stat()
	if err != nil {
		return f, fmt.Errorf("read log %s: %w", path, err)
	}
	now, err := os.Stat(path)
	if err != nil || os.SameFile(was, now) {
		// Missing: between the rename and the new file; seen next poll.
		return f, nil
	}
	next, err := os.Open(path)
	if err != nil {
		return f, nil
	}
	if err := copyAll(w, f); err != nil {
		next.Close()
		return f, err
	}
	f.Close()
	return next, nil
}

func copyAll(w io.Writer, f *os.File) error {
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("read log %s: %w", f.Name(), err)
	}
	return nil
}
