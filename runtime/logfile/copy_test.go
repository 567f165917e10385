package logfile

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a writer two streams may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// failingWriter fails its first n writes, then takes everything.
type failingWriter struct {
	lockedBuffer
	fail int
}

func (f *failingWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	if f.fail > 0 {
		f.fail--
		f.mu.Unlock()
		return 0, errors.New("no space left on device")
	}
	f.mu.Unlock()
	return f.lockedBuffer.Write(p)
}

func TestCopy(t *testing.T) {
	tests := []struct {
		name      string
		failFirst int
		wantErr   bool
		// wantAll: every byte arrives; otherwise only what was written
		// after the failures.
		wantAll bool
	}{
		{"both streams are copied to their end", 0, false, true},
		{"a failed write is dropped and copying goes on to the end", 3, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outR, outW := io.Pipe()
			errR, errW := io.Pipe()
			w := &failingWriter{fail: tt.failFirst}
			done := make(chan error, 1)
			go func() { done <- Copy(context.Background(), w, time.Second, outR, errR) }()
			// The agent's side: every write must be taken, failures or
			// not, or the agent would block.
			for range 50 {
				if _, err := io.WriteString(outW, "out line\n"); err != nil {
					t.Fatal(err)
				}
				if _, err := io.WriteString(errW, "err line\n"); err != nil {
					t.Fatal(err)
				}
			}
			outW.Close()
			select {
			case <-done:
				t.Fatal("Copy returned while stderr was still open")
			case <-time.After(50 * time.Millisecond):
			}
			errW.Close()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Copy did not return after both streams ended")
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("Copy: %v, want error %v", err, tt.wantErr)
			}
			got := w.String()
			outs, errs := strings.Count(got, "out line\n"), strings.Count(got, "err line\n")
			if tt.wantAll && (outs != 50 || errs != 50) {
				t.Fatalf("copied %d stdout and %d stderr lines, want 50 each", outs, errs)
			}
			if !tt.wantAll && outs+errs != 100-tt.failFirst {
				t.Fatalf("copied %d lines, want the %d not refused", outs+errs, 100-tt.failFirst)
			}
		})
	}
}

func TestCopyReturnsWithinGraceOnceCancelled(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close() // ends the abandoned reader's goroutine
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Copy(ctx, io.Discard, 100*time.Millisecond, r) }()
	select {
	case <-done:
		t.Fatal("Copy returned before its stream ended or ctx ended")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Copy did not return after ctx ended and the grace passed")
	}
}

func TestCopyDrainsWhatIsLeftAfterCancel(t *testing.T) {
	r, w := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out lockedBuffer
	done := make(chan error, 1)
	go func() { done <- Copy(ctx, &out, 5*time.Second, r) }()
	// Written after the cancel, within the grace: still kept.
	if _, err := io.WriteString(w, "last words\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Copy did not return at end of stream")
	}
	if got := out.b.String(); got != "last words\n" {
		t.Fatalf("copied %q", got)
	}
}
