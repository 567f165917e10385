package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawguard/clawguard/runtime"
	"github.com/clawguard/clawguard/runtime/logfile"
)

// asMain makes the test binary act as clawguard itself, so a test can run
// it the way containerd's shim runs the log writer.
const asMain = "CLAWGUARD_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// shimArgs lays out args as containerd's shim does (NewBinaryCmd in
// cmd/containerd-shim-runc-v2/process/io_util.go): for each query key, the
// key then its value, keys in map order, that is in no fixed order. order
// picks the order of the keys.
func shimArgs(args map[string]string, order []string) []string {
	var out []string
	for _, k := range order {
		out = append(out, k, args[k])
	}
	return out
}

func permutations(keys []string) [][]string {
	if len(keys) <= 1 {
		return [][]string{slices.Clone(keys)}
	}
	var out [][]string
	for i, k := range keys {
		rest := slices.Concat(keys[:i], keys[i+1:])
		for _, p := range permutations(rest) {
			out = append(out, append([]string{k}, p...))
		}
	}
	return out
}

// logWriter is the log writer running as the shim runs it: stdout on fd
// 3, stderr on fd 4, the ready pipe on fd 5, and only CONTAINER_ID and
// CONTAINER_NAMESPACE in its environment.
type logWriter struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File // the task's ends
	ready          *os.File
	exited         chan error
}

func startLogWriter(t *testing.T, argv []string) *logWriter {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], argv...)
	// GORACE: a race-enabled binary otherwise waits a second at exit.
	cmd.Env = []string{asMain + "=1", "GORACE=atexit_sleep_ms=0", "CONTAINER_ID=sb", "CONTAINER_NAMESPACE=" + runtime.Namespace}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The shim keeps only its ends.
	outR.Close()
	errR.Close()
	readyW.Close()
	lw := &logWriter{cmd: cmd, stdout: outW, stderr: errW, ready: readyR, exited: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, stderr.String())
		}
		lw.exited <- err
	}()
	t.Cleanup(func() {
		outW.Close()
		errW.Close()
		readyR.Close()
		_ = cmd.Process.Kill()
	})
	return lw
}

// waitReady reads the ready pipe as the shim does: a byte, or end of file.
func (lw *logWriter) waitReady(t *testing.T) (gotByte bool) {
	t.Helper()
	b := make([]byte, 1)
	n, err := lw.ready.Read(b)
	if err != nil && err != io.EOF {
		t.Fatalf("read ready pipe: %v", err)
	}
	return n == 1
}

func (lw *logWriter) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-lw.exited:
		return err
	case <-time.After(within):
		t.Fatalf("log writer still running %v after both streams ended", within)
		return nil
	}
}

func TestTheLogWriterKeepsBothStreamsWithinItsCapWhateverTheArgumentOrder(t *testing.T) {
	const maxSize, keep = 64 << 10, 1
	for _, order := range permutations([]string{runtime.LogWriterCommand, "--max-size", "--keep"}) {
		t.Run(strings.Join(order, ","), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sb.log")
			argv := shimArgs(runtime.LogWriterArgs(runtime.Log{Path: path, MaxSize: maxSize, Keep: keep}), order)
			lw := startLogWriter(t, argv)
			if !lw.waitReady(t) {
				t.Fatalf("the log writer did not say it was ready: %v", lw.wait(t, 5*time.Second))
			}
			// A flood: 30 times the cap on stdout, interleaved with
			// stderr, ending with lines that must be kept.
			line := strings.Repeat("x", 1023) + "\n"
			for range 30 * (keep + 1) * maxSize / len(line) {
				if _, err := io.WriteString(lw.stdout, line); err != nil {
					t.Fatal(err)
				}
				if _, err := io.WriteString(lw.stderr, "e\n"); err != nil {
					t.Fatal(err)
				}
			}
			io.WriteString(lw.stdout, "last stdout line\n")
			lw.stdout.Close()
			// The two streams are read apart, so the order between
			// them holds only once the first one's line is written:
			// wait for it before the last line on stderr.
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(readLog(t, path), "last stdout line\n") {
				if time.Now().After(deadline) {
					t.Fatal("the last stdout line never reached the log")
				}
				time.Sleep(10 * time.Millisecond)
			}
			io.WriteString(lw.stderr, "last stderr line\n")
			lw.stderr.Close()
			if err := lw.wait(t, 10*time.Second); err != nil {
				t.Fatalf("log writer: %v", err)
			}
			var total int64
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				info, _ := e.Info()
				total += info.Size()
				if info.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %v", e.Name(), info.Mode().Perm())
				}
			}
			if total > (keep+1)*maxSize {
				t.Fatalf("%d bytes on disk, cap %d", total, (keep+1)*maxSize)
			}
			kept := readLog(t, path)
			for _, want := range []string{"last stdout line\n", "last stderr line\n"} {
				if !strings.Contains(kept, want) {
					t.Errorf("the newest output %q is not in the log", want)
				}
			}
		})
	}
}

// readLog is what `clawguard logs` shows: the older files, then the current.
func readLog(t *testing.T, path string) string {
	t.Helper()
	var b bytes.Buffer
	if err := logfile.CopyOlder(path, &b); err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	b.Write(cur)
	return b.String()
}

func TestTheLogWriterKeepsTheLastOutputWhenTheShimStopsIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sb.log")
	argv := shimArgs(runtime.LogWriterArgs(runtime.Log{Path: path, MaxSize: 1 << 20, Keep: 1}), []string{"--keep", runtime.LogWriterCommand, "--max-size"})
	lw := startLogWriter(t, argv)
	if !lw.waitReady(t) {
		t.Fatal("not ready")
	}
	io.WriteString(lw.stdout, "before the signal\n")
	// The shim closes its ends of the pipes, then sends SIGTERM; the task's
	// last processes may still hold theirs a moment longer. The signal
	// first, then: what comes within the grace is kept.
	if err := lw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	io.WriteString(lw.stdout, "after the signal\n")
	lw.stdout.Close()
	lw.stderr.Close()
	if err := lw.wait(t, 10*time.Second); err != nil {
		// A logger that died of the signal shows as "signal: terminated".
		t.Fatalf("log writer: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "before the signal\nafter the signal\n" {
		t.Fatalf("log = %q", got)
	}
}

func TestTheLogWriterIsNotReadyWhenItCannotOpenTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "sb.log")
	argv := shimArgs(runtime.LogWriterArgs(runtime.Log{Path: path, MaxSize: 1 << 20, Keep: 1}), []string{runtime.LogWriterCommand, "--max-size", "--keep"})
	lw := startLogWriter(t, argv)
	// The shim of containerd 1.6 takes a bare end of file for ready too,
	// which is why runtime.Start opens the log itself first.
	if lw.waitReady(t) {
		t.Fatal("said ready without a log to write to")
	}
	if err := lw.wait(t, 10*time.Second); err == nil {
		t.Fatal("exited 0 without a log to write to")
	}
}

func TestTheLogWriterRefusesArgumentsThatCapNothing(t *testing.T) {
	tests := []struct {
		name string
		argv []string
	}{
		{"no max size", []string{runtime.LogWriterCommand, "/tmp/x.log", "--keep", "1"}},
		{"negative keep", []string{"--keep", "-1", runtime.LogWriterCommand, "/tmp/x.log", "--max-size", "65536"}},
		{"no path", []string{runtime.LogWriterCommand, "--max-size", "65536", "--keep", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lw := startLogWriter(t, tt.argv)
			if lw.waitReady(t) {
				t.Fatal("said ready")
			}
			if err := lw.wait(t, 10*time.Second); err == nil {
				t.Fatal("exited 0")
			}
		})
	}
}

func TestTheLogWriterIsHiddenFromHelp(t *testing.T) {
	root := rootCmd(&globals{})
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "logs") {
		t.Fatalf("help lists no commands:\n%s", out.String())
	}
	if strings.Contains(out.String(), runtime.LogWriterCommand) {
		t.Fatalf("help lists %s:\n%s", runtime.LogWriterCommand, out.String())
	}
}
