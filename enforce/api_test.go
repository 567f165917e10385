package enforce

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/clawguard/clawguard/profiles"
)

// asRoot is a request as root would send it through the socket.
func asRoot(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), peerKey{}, &unix.Ucred{Uid: 0, Gid: 0, Pid: 1}))
}

func TestAPIRefusesNamesThatAreNotSandboxNames(t *testing.T) {
	w := newFakeWorld("")
	d := NewDaemon(New(testConfig(t.TempDir()), w, w), DaemonConfig{SocketGID: -1}, nil)
	h := d.handler()
	tests := []struct {
		name, method, target string
		want                 int
	}{
		// Control: a well-formed name reaches the supervisor, which has
		// no such sandbox.
		{"a valid unknown name is looked up", "DELETE", "/v1/sandboxes/nosuch", http.StatusNotFound},
		{"an escaped slash in stop", "DELETE", "/v1/sandboxes/..%2Fsandboxes", http.StatusBadRequest},
		{"an escaped dot-dot in stop", "DELETE", "/v1/sandboxes/%2E%2E", http.StatusBadRequest},
		{"an escaped slash in verify", "POST", "/v1/sandboxes/..%2F..%2Fetc/verify", http.StatusBadRequest},
		{"upper case", "POST", "/v1/sandboxes/Agent/verify", http.StatusBadRequest},
		{"a path in the status filter", "GET", "/v1/sandboxes?name=..%2Fx", http.StatusBadRequest},
		{"a NUL in the status filter", "GET", "/v1/sandboxes?name=a%00b", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(w.calls)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, asRoot(httptest.NewRequest(tt.method, tt.target, nil)))
			if rec.Code != tt.want {
				t.Fatalf("%s %s: %d, want %d: %s", tt.method, tt.target, rec.Code, tt.want, rec.Body)
			}
			if tt.want == http.StatusBadRequest {
				if !strings.Contains(rec.Body.String(), "not a valid name") {
					t.Errorf("the error does not say what is wrong: %s", rec.Body)
				}
				if len(w.calls) != before {
					t.Errorf("a refused name reached the runtime: %v", w.calls[before:])
				}
			}
		})
	}
}

func TestAPIRefusesOversizedBodies(t *testing.T) {
	w := newFakeWorld("")
	d := NewDaemon(New(testConfig(t.TempDir()), w, w), DaemonConfig{SocketGID: -1}, nil)
	big := `{"dir": "/` + strings.Repeat("a", maxRequestBody) + `"}`
	for _, target := range []string{"/v1/sandboxes", "/v1/sandboxes/agent/verify"} {
		rec := httptest.NewRecorder()
		d.handler().ServeHTTP(rec, asRoot(httptest.NewRequest("POST", target, strings.NewReader(big))))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "too large") {
			t.Errorf("POST %s with %d bytes: %d %s", target, len(big), rec.Code, rec.Body)
		}
	}
}

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
			_, err := decodeRunRequest(strings.NewReader(tt.body))
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
		`{"blocked_probes": ` + `["` + strings.Repeat(`a:1", "`, maxBlockedProbes) + `a:1"]}`: "at most",
		`{"probes": []}`: "unknown field",
	} {
		_, err := decodeVerifyRequest(strings.NewReader(body))
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
		req, err := decodeRunRequest(bytes.NewReader(b))
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
		req, err := decodeVerifyRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(req.BlockedProbes) > maxBlockedProbes || req.TimeoutMs < 0 || req.TimeoutMs > 60000 {
			t.Fatalf("accepted %+v", req)
		}
	})
}

func TestTheSocketGroupReadsAndVerifiesButActsOnNothing(t *testing.T) {
	w := newFakeWorld("")
	d := NewDaemon(New(testConfig(t.TempDir()), w, w), DaemonConfig{SocketGID: 65534}, nil)
	member := func(r *http.Request) *http.Request {
		return r.WithContext(context.WithValue(r.Context(), peerKey{}, &unix.Ucred{Uid: 65534, Gid: 65534, Pid: 1}))
	}
	tests := []struct {
		method, target, body string
		want                 int
	}{
		{"GET", "/v1/sandboxes", "", http.StatusOK},
		{"GET", "/v1/health", "", http.StatusOK},
		{"POST", "/v1/sandboxes", `{"dir": "/tmp", "name": "x"}`, http.StatusForbidden},
		{"DELETE", "/v1/sandboxes/x", "", http.StatusForbidden},
		{"POST", "/v1/reconcile", "", http.StatusForbidden},
		{"POST", "/v1/sandboxes/x/verify", `{"blocked_probes": ["198.51.100.1:22"]}`, http.StatusForbidden},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		d.handler().ServeHTTP(rec, member(httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))))
		if rec.Code != tt.want {
			t.Errorf("%s %s as a member: %d %s, want %d", tt.method, tt.target, rec.Code, rec.Body, tt.want)
		}
	}
	if len(w.calls) != 0 {
		t.Errorf("a member's request reached the runtime: %v", w.calls)
	}
}
