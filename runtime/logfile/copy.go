package logfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// copyBuffer is what each stream reads at once: a pipe holds 64 KiB, so a
// reader that keeps up needs no more.
const copyBuffer = 32 << 10

// Copy writes everything read from rs to w, each reader in its own
// goroutine, until every reader is at end of file, and returns the first
// write error (nil if there was none). A failed write drops what it could not
// write and copying goes on: a full disk must neither stall the agent on a
// pipe nobody reads nor kill it with SIGPIPE.
//
// When ctx ends, Copy waits up to grace more for the readers to reach their
// end (what the pipes still hold), then returns. A reader still blocked then
// keeps its goroutine until the caller closes it or exits, as the logging
// binary does right after.
func Copy(ctx context.Context, w io.Writer, grace time.Duration, rs ...io.Reader) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := drain(w, r); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}

// drain copies r to w until r ends, going on past failed writes, and
// returns the first write error.
func drain(w io.Writer, r io.Reader) error {
	buf := make([]byte, copyBuffer)
	var first error
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil && first == nil {
				first = werr
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return first
			}
			return errors.Join(first, fmt.Errorf("read output: %w", rerr))
		}
	}
}
