package runtime

import (
	"maps"
	"net/url"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/pkg/cio"
)

// shimArgv is what containerd's shim makes of a binary:// log URI (see
// NewBinaryCmd in cmd/containerd-shim-runc-v2/process/io_util.go): the
// URI's path is the program, each query key and its first value are two
// arguments.
func shimArgv(t *testing.T, uri string) (string, map[string]string) {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "binary" {
		t.Fatalf("scheme %q, want binary (the only one containerd 1.6's shim knows)", u.Scheme)
	}
	pairs := map[string]string{}
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			t.Fatalf("key %q has %d values", k, len(vs))
		}
		pairs[k] = vs[0]
	}
	return u.Path, pairs
}

func TestLogWriterArgumentsSurviveTheLogURI(t *testing.T) {
	tests := []struct {
		name string
		log  Log
		want map[string]string
	}{
		{"plain path", Log{Path: "/var/lib/clawguard/logs/agent.log", MaxSize: 10 << 20, Keep: 2},
			map[string]string{LogWriterCommand: "/var/lib/clawguard/logs/agent.log", "--max-size": "10485760", "--keep": "2"}},
		{"a path with characters a query escapes", Log{Path: "/srv/my state/a&b=c%d+é.log", MaxSize: 65536, Keep: 0},
			map[string]string{LogWriterCommand: "/srv/my state/a&b=c%d+é.log", "--max-size": "65536", "--keep": "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const bin = "/usr/local/bin/clawguard"
			logIO, err := cio.BinaryIO(bin, LogWriterArgs(tt.log))("sb")
			if err != nil {
				t.Fatal(err)
			}
			cfg := logIO.Config()
			if cfg.Stdout != cfg.Stderr {
				t.Fatalf("stdout %q and stderr %q go to different places", cfg.Stdout, cfg.Stderr)
			}
			prog, got := shimArgv(t, cfg.Stdout)
			if prog != bin {
				t.Fatalf("program %q, want %q", prog, bin)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("arguments %v, want %v", slices.Sorted(maps.Keys(got)), tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}
