package api

import (
	"bytes"
	"strings"
	"testing"

	"github.com/clawguard/clawguard/profiles"
)

func TestDecodeRunRequest(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"the built-in profile", `{"dir": "/home/u/agent"}`, ""},
		{"a profile and a name", `{"profile": "/home/u/a.yaml", "dir": "/", "name": "agent-2"}`, ""},
		{"unknown field", `{"dir": "/", "user": "0:0"}`, "unknown field"},
		{"a name that is a path", `{"dir": "/", "name": "../../etc"}`, "not a valid name"},
		{"trailing data", `{"dir": "/"} {"dir": "/"}`, "trailing data"},
		{"empty body", ``, "EOF"},
		{"NUL in a path", `{"profile": "/a\u0000b", "dir": "/"}`, "NUL"},
		{"wrong type", `{"dir": 5}`, "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRunRequest(strings.NewReader(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeVerifyRequest(t *testing.T) {
	for body, wantErr := range map[string]string{
		``:   "",
		`{}`: "",
		`{"blocked_probes": ["198.51.100.1:443"], "timeout_ms": 1500}`: "",
		`{"timeout_ms": -1}`:      "out of range",
		`{"timeout_ms": 3600000}`: "out of range",
		`{"blocked_probes": ` + `["` + strings.Repeat(`a:1", "`, MaxBlockedProbes) + `a:1"]}`: "at most",
		`{"probes": []}`: "unknown field",
	} {
		_, err := DecodeVerifyRequest(strings.NewReader(body))
		if (wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%.60s: err = %v, want %q", body, err, wantErr)
		}
	}
}

// The decoders take bytes from any member of the socket group: they must
// never panic, and what they accept must be safe to act on.
func FuzzDecodeRunRequest(f *testing.F) {
	for _, s := range []string{`{"dir": "/home/u"}`, `{"profile": "/a.yaml", "dir": "/", "name": "a", "image": "docker.io/library/busybox:latest"}`, `{"name": "../x"}`, `[]`, `{"dir": "/"} x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeRunRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		if req.Name != "" && profiles.ValidName(req.Name) != nil {
			t.Fatalf("accepted name %q", req.Name)
		}
		if strings.ContainsRune(req.Profile+req.Dir+req.Image, 0) {
			t.Fatalf("accepted a NUL: %+v", req)
		}
	})
}

func FuzzDecodeVerifyRequest(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"blocked_probes": ["198.51.100.1:443"], "timeout_ms": 1500}`, `{"timeout_ms": 1e99}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeVerifyRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(req.BlockedProbes) > MaxBlockedProbes || req.TimeoutMs < 0 || req.TimeoutMs > 60000 {
			t.Fatalf("accepted %+v", req)
		}
	})
}
