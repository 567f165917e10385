package logfile

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// stream is a deterministic byte stream, so that what is on disk can be
// compared with what was written.
type stream struct {
	all []byte
	src *rand.ChaCha8
}

func (s *stream) next(n int) []byte {
	p := make([]byte, n)
	_, _ = s.src.Read(p)
	s.all = append(s.all, p...)
	return p
}

// onDisk is every file in dir, by name, and their total size.
func onDisk(t *testing.T, dir string) (map[string]int64, int64) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	var total int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		sizes[e.Name()] = info.Size()
		total += info.Size()
	}
	return sizes, total
}

func concat(t *testing.T, path string) []byte {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, data...)
	}
	return b
}

func TestTheFilesOnDiskNeverHoldMoreThanKeepPlusOneTimesMaxSize(t *testing.T) {
	tests := []struct {
		name    string
		maxSize int64
		keep    int
		writes  func(r *rand.Rand) int // size of the next write
	}{
		{"one byte at a time, nothing kept", 64, 0, func(*rand.Rand) int { return 1 }},
		{"one byte at a time, two kept", 64, 2, func(*rand.Rand) int { return 1 }},
		{"writes of exactly max size", 64, 1, func(*rand.Rand) int { return 64 }},
		{"writes that leave a remainder", 64, 2, func(*rand.Rand) int { return 24 }},
		{"writes larger than max size are split", 64, 2, func(*rand.Rand) int { return 64*3 + 17 }},
		{"writes larger than max size, nothing kept", 64, 0, func(*rand.Rand) int { return 200 }},
		{"mixed sizes, ten kept", 100, 10, func(r *rand.Rand) int { return 1 + r.IntN(250) }},
		{"pipe-sized chunks into a 1M file", 1 << 20, 1, func(*rand.Rand) int { return 65536 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sb.log")
			w, err := Open(path, tt.maxSize, tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			r := rand.New(rand.NewPCG(1, 2))
			s := &stream{src: rand.NewChaCha8([32]byte{1})}
			bound := int64(tt.keep+1) * tt.maxSize
			for written := int64(0); written < 8*bound; {
				p := s.next(tt.writes(r))
				n, err := w.Write(p)
				if err != nil || n != len(p) {
					t.Fatalf("write %d bytes: %d, %v", len(p), n, err)
				}
				written += int64(n)
				sizes, total := onDisk(t, dir)
				if total > bound {
					t.Fatalf("after %d bytes: %d bytes on disk, more than (keep+1)*max = %d: %v", written, total, bound, sizes)
				}
				for name, size := range sizes {
					if size > tt.maxSize {
						t.Fatalf("%s holds %d bytes, more than max %d", name, size, tt.maxSize)
					}
				}
				if len(sizes) > tt.keep+1 {
					t.Fatalf("%d files, want at most %d: %v", len(sizes), tt.keep+1, sizes)
				}
			}
			// What is kept is the newest output, in order, without gaps.
			kept := concat(t, path)
			if !bytes.HasSuffix(s.all, kept) {
				t.Fatalf("the files do not hold the end of the output in order (%d bytes kept)", len(kept))
			}
			if min := int64(tt.keep) * tt.maxSize / 2; int64(len(kept)) < min {
				t.Fatalf("only %d bytes kept, want at least %d", len(kept), min)
			}
		})
	}
}

func TestRotationShiftsGenerationsAndDropsTheOldest(t *testing.T) {
	tests := []struct {
		name string
		keep int
		want map[string]string // file suffix -> content
	}{
		{"nothing kept: only the current file", 0, map[string]string{"": "eeee"}},
		{"one kept", 1, map[string]string{"": "eeee", ".1": "dddd"}},
		{"three kept", 3, map[string]string{"": "eeee", ".1": "dddd", ".2": "cccc", ".3": "bbbb"}},
		{"more kept than written", 6, map[string]string{"": "eeee", ".1": "dddd", ".2": "cccc", ".3": "bbbb", ".4": "aaaa"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sb.log")
			w, err := Open(path, 4, tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range "abcde" {
				if _, err := w.Write([]byte(strings.Repeat(string(c), 4))); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			sizes, _ := onDisk(t, dir)
			if len(sizes) != len(tt.want) {
				t.Fatalf("files %v, want %v", sizes, tt.want)
			}
			for suffix, want := range tt.want {
				got, err := os.ReadFile(path + suffix)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Fatalf("sb.log%s = %q, want %q", suffix, got, want)
				}
			}
		})
	}
}

func TestAWriteThatDoesNotFitStartsTheNextFileWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sb.log")
	w, err := Open(path, 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, line := range []string{"one\n", "two\n", "three\n"} {
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	for suffix, want := range map[string]string{".1": "one\ntwo\n", "": "three\n"} {
		if got, _ := os.ReadFile(path + suffix); string(got) != want {
			t.Fatalf("sb.log%s = %q, want %q", suffix, got, want)
		}
	}
}

func TestReopeningAppendsAndCountsWhatTheFileHolds(t *testing.T) {
	tests := []struct {
		name     string
		existing string
		write    string
		want     map[string]string
	}{
		{"no file yet", "", "xyz", map[string]string{"": "xyz"}},
		{"room left: appended", "abc", "xyz", map[string]string{"": "abcxyz"}},
		{"exactly full: rotated first", "abcdefgh", "xyz", map[string]string{".1": "abcdefgh", "": "xyz"}},
		{"not enough room: rotated first", "abcdef", "xyz", map[string]string{".1": "abcdef", "": "xyz"}},
		{"larger than max (a lower cap than before): rotated first", "abcdefghijkl", "xyz", map[string]string{".1": "abcdefghijkl", "": "xyz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sb.log")
			if tt.existing != "" {
				if err := os.WriteFile(path, []byte(tt.existing), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			w, err := Open(path, 8, 1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte(tt.write)); err != nil {
				t.Fatal(err)
			}
			w.Close()
			sizes, _ := onDisk(t, dir)
			if len(sizes) != len(tt.want) {
				t.Fatalf("files %v, want %v", sizes, tt.want)
			}
			for suffix, want := range tt.want {
				if got, _ := os.ReadFile(path + suffix); string(got) != want {
					t.Fatalf("sb.log%s = %q, want %q", suffix, got, want)
				}
			}
		})
	}
}

func TestEveryFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sb.log")
	// One left by a version that wrote logs world-readable.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := w.Write([]byte("data")); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("want 3 files, got %d", len(entries))
	}
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
}

func TestALinkWhereTheLogGoesIsRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sb.log")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if w, err := Open(path, 64, 1); err == nil {
		w.Close()
		t.Fatal("opened a log through a symlink")
	}
}

func TestAFailedRotationDropsTheWriteInsteadOfGrowingTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sb.log")
	w, err := Open(path, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("12345678")); err != nil {
		t.Fatal(err)
	}
	// A non-empty directory where PATH.1 goes: the rename fails.
	if err := os.MkdirAll(filepath.Join(path+".1", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Fatal("write succeeded although the log could not be rotated")
	}
	if got, _ := os.ReadFile(path); string(got) != "12345678" {
		t.Fatalf("sb.log = %q: grew past its cap", got)
	}
	// Once the way is clear again, writing resumes.
	if err := os.RemoveAll(path + ".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("again")); err != nil {
		t.Fatalf("write after the obstacle went: %v", err)
	}
	for suffix, want := range map[string]string{".1": "12345678", "": "again"} {
		if got, _ := os.ReadFile(path + suffix); string(got) != want {
			t.Fatalf("sb.log%s = %q, want %q", suffix, got, want)
		}
	}
}

func TestConcurrentWritersKeepTheCap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sb.log")
	w, err := Open(path, 1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := []byte(strings.Repeat(string(rune('a'+g)), 99) + "\n")
			for range 500 {
				if _, err := w.Write(line); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	w.Close()
	if _, total := onDisk(t, dir); total > 3000 {
		t.Fatalf("%d bytes on disk, cap 3000", total)
	}
	// Each write is whole in one file: no line is torn.
	for _, line := range strings.SplitAfter(string(concat(t, path)), "\n") {
		if line != "" && (len(line) != 100 || strings.Count(line, line[:1]) != 99) {
			t.Fatalf("torn line %q", line)
		}
	}
}

func TestAClosedWriterRefusesWrites(t *testing.T) {
	w, err := Open(filepath.Join(t.TempDir(), "sb.log"), 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v, want ErrClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestOpenRefusesSettingsThatCapNothing(t *testing.T) {
	tests := []struct {
		name    string
		maxSize int64
		keep    int
	}{
		{"zero max size", 0, 1},
		{"negative max size", -1, 1},
		{"negative keep", 64, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w, err := Open(filepath.Join(t.TempDir(), "sb.log"), tt.maxSize, tt.keep); err == nil {
				w.Close()
				t.Fatal("accepted")
			}
		})
	}
}

func TestOpenRemovesGenerationsBeyondKeep(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sb.log")
	for _, name := range []string{"sb.log", "sb.log.1", "sb.log.2", "sb.log.3", "sb.log.7", "sb.log.prev", "sb.log.01", "other.log.5"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w, err := Open(path, 64, 2)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	sizes, _ := onDisk(t, dir)
	for _, name := range []string{"sb.log", "sb.log.1", "sb.log.2", "sb.log.prev", "sb.log.01", "other.log.5"} {
		if _, ok := sizes[name]; !ok {
			t.Errorf("%s was removed", name)
		}
	}
	for _, name := range []string{"sb.log.3", "sb.log.7"} {
		if _, ok := sizes[name]; ok {
			t.Errorf("%s beyond keep 2 is still there", name)
		}
	}
}

func TestFilesListsTheGenerationsOldestFirstThenTheCurrentFile(t *testing.T) {
	tests := []struct {
		name  string
		exist []string
		want  []string
	}{
		{"only the current file", []string{"sb.log"}, []string{"sb.log"}},
		{"no file at all", nil, []string{"sb.log"}},
		{"generations in order", []string{"sb.log", "sb.log.1", "sb.log.2", "sb.log.10"}, []string{"sb.log.10", "sb.log.2", "sb.log.1", "sb.log"}},
		{"other names are not generations", []string{"sb.log", "sb.log.prev", "sb.log.01", "sb.log.x", "sb.log.0", "sb.logger.1"}, []string{"sb.log"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range tt.exist {
				if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Files(filepath.Join(dir, "sb.log"))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, g := range got {
				names = append(names, filepath.Base(g))
			}
			if strings.Join(names, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("Files = %v, want %v", names, tt.want)
			}
		})
	}
}

func TestStartOverKeepsThePreviousRunsLastFileAside(t *testing.T) {
	tests := []struct {
		name     string
		exist    map[string]string
		wantPrev string // "" means no .prev file
	}{
		{"first run", nil, ""},
		{"a previous run with generations", map[string]string{"sb.log": "last", "sb.log.1": "older", "sb.log.2": "oldest", "sb.log.prev": "the run before"}, "last"},
		{"a previous run's .prev only", map[string]string{"sb.log.prev": "the run before"}, "the run before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "logs")
			if len(tt.exist) > 0 {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for name, content := range tt.exist {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "sb.log")
			if err := StartOver(path); err != nil {
				t.Fatal(err)
			}
			sizes, _ := onDisk(t, dir)
			if tt.wantPrev == "" {
				if len(sizes) != 0 {
					t.Fatalf("files left: %v", sizes)
				}
				return
			}
			if len(sizes) != 1 {
				t.Fatalf("files %v, want only sb.log.prev", sizes)
			}
			if got, _ := os.ReadFile(prevPath(path)); string(got) != tt.wantPrev {
				t.Fatalf("sb.log.prev = %q, want %q", got, tt.wantPrev)
			}
		})
	}
}
