package logfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCopyOlderThenTheCurrentFileIsTheOutputInOrder(t *testing.T) {
	tests := []struct {
		name string
		keep int
		want string // what survives of lines 0..9, each a file of its own
	}{
		{"nothing kept", 0, "line 9\n"},
		{"two kept", 2, "line 7\nline 8\nline 9\n"},
		{"more kept than written", 20, "line 0\nline 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\nline 8\nline 9\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sb.log")
			w, err := Open(path, int64(len("line 0\n")), tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				fmt.Fprintf(w, "line %d\n", i)
			}
			w.Close()
			var out bytes.Buffer
			if err := CopyOlder(path, &out); err != nil {
				t.Fatal(err)
			}
			if err := Follow(context.Background(), path, &out, false, time.Millisecond, nil); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Fatalf("got %q, want %q", out.String(), tt.want)
			}
		})
	}
}

func TestFollowGoesOnAcrossRotations(t *testing.T) {
	tests := []struct {
		name string
		keep int
	}{
		{"rotated to PATH.1", 2},
		{"removed, nothing kept", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sb.log")
			const lineLen = len("line 00\n")
			// Two lines a file: every second line rotates.
			w, err := Open(path, 2*int64(lineLen), tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			out := &lockedBuffer{}
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() { done <- Follow(context.Background(), path, out, true, time.Millisecond, stop) }()
			var want strings.Builder
			for i := range 20 {
				line := fmt.Sprintf("line %02d\n", i)
				want.WriteString(line)
				if _, err := w.Write([]byte(line)); err != nil {
					t.Fatal(err)
				}
				// The next line only once this one was seen: the
				// follower is never two rotations behind.
				deadline := time.Now().Add(5 * time.Second)
				for !strings.Contains(out.String(), line) {
					if time.Now().After(deadline) {
						t.Fatalf("%q not followed; got %q", line, out.String())
					}
					time.Sleep(time.Millisecond)
				}
			}
			close(stop)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != want.String() {
				t.Fatalf("followed %q, want %q", got, want.String())
			}
		})
	}
}

func TestFollowTakesTheLastOutputAfterARotationWhenStopped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sb.log")
	w, err := Open(path, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("aaaa")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	out := &lockedBuffer{}
	done := make(chan error, 1)
	// A poll that never comes: only the stop can make it look again.
	go func() { done <- Follow(context.Background(), path, out, true, time.Hour, stop) }()
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "aaaa" {
		if time.Now().After(deadline) {
			t.Fatalf("first file not read: %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	// The sandbox's last words land in a new file, then it exits.
	if _, err := w.Write([]byte("bbbb")); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "aaaabbbb" {
		t.Fatalf("got %q, want the output of both files", got)
	}
}

func TestFollowOfAMissingLogSaysWhichFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sb.log")
	err := Follow(context.Background(), path, &bytes.Buffer{}, false, time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}
