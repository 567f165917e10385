package daemon

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/enforce/api"
	"github.com/clawguard/clawguard/enforce/enforcetest"
)

// asRoot is a request as root would send it through the socket.
func asRoot(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), peerKey{}, &unix.Ucred{Uid: 0, Gid: 0, Pid: 1}))
}

func TestAPIRefusesNamesThatAreNotSandboxNames(t *testing.T) {
	w := enforcetest.NewWorld("")
	d := New(enforce.New(testConfig(t.TempDir()), w, w), Config{SocketGID: -1}, nil)
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
			before := len(w.Calls)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, asRoot(httptest.NewRequest(tt.method, tt.target, nil)))
			if rec.Code != tt.want {
				t.Fatalf("%s %s: %d, want %d: %s", tt.method, tt.target, rec.Code, tt.want, rec.Body)
			}
			if tt.want == http.StatusBadRequest {
				if !strings.Contains(rec.Body.String(), "not a valid name") {
					t.Errorf("the error does not say what is wrong: %s", rec.Body)
				}
				if len(w.Calls) != before {
					t.Errorf("a refused name reached the runtime: %v", w.Calls[before:])
				}
			}
		})
	}
}

func TestAPIRefusesOversizedBodies(t *testing.T) {
	w := enforcetest.NewWorld("")
	d := New(enforce.New(testConfig(t.TempDir()), w, w), Config{SocketGID: -1}, nil)
	big := `{"dir": "/` + strings.Repeat("a", api.MaxRequestBody) + `"}`
	for _, target := range []string{"/v1/sandboxes", "/v1/sandboxes/agent/verify"} {
		rec := httptest.NewRecorder()
		d.handler().ServeHTTP(rec, asRoot(httptest.NewRequest("POST", target, strings.NewReader(big))))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "too large") {
			t.Errorf("POST %s with %d bytes: %d %s", target, len(big), rec.Code, rec.Body)
		}
	}
}

// Without sandbox_ids a member reads and verifies; it starts nothing, stops
// only a sandbox it started, and never reconciles.
func TestTheSocketGroupActsOnlyOnItsOwn(t *testing.T) {
	w := enforcetest.NewWorld("")
	sup := enforce.New(testConfig(t.TempDir()), w, w)
	d := New(sup, Config{SocketGID: 65534}, nil)
	ctx := context.Background()
	roots, err := sup.Start(ctx, enforcetest.Profile(t, "roots"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer roots.Close()
	pr, err := sup.Prepare(enforcetest.Profile(t, "members"))
	if err != nil {
		t.Fatal(err)
	}
	pr.Owner = 65534
	members, err := sup.StartPrepared(ctx, pr, nil)
	pr.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer members.Close()

	member := func(r *http.Request) *http.Request {
		return r.WithContext(context.WithValue(r.Context(), peerKey{}, &unix.Ucred{Uid: 65534, Gid: 65534, Pid: 1}))
	}
	tests := []struct {
		method, target, body string
		want                 int
		says                 string
	}{
		{"GET", "/v1/sandboxes", "", http.StatusOK, ""},
		{"GET", "/v1/health", "", http.StatusOK, ""},
		{"POST", "/v1/sandboxes", `{"dir": "/tmp", "name": "x"}`, http.StatusForbidden, "sets no sandbox_ids"},
		{"DELETE", "/v1/sandboxes/roots", "", http.StatusForbidden, "started by uid 0"},
		{"POST", "/v1/reconcile", "", http.StatusForbidden, "only root may reconcile"},
		{"POST", "/v1/sandboxes/x/verify", `{"blocked_probes": ["198.51.100.1:22"]}`, http.StatusForbidden, "blocked probes"},
		// Control: its own sandbox is the member's to stop.
		{"DELETE", "/v1/sandboxes/members", "", http.StatusNoContent, ""},
	}
	for _, tt := range tests {
		before := len(w.Calls)
		rec := httptest.NewRecorder()
		d.handler().ServeHTTP(rec, member(httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))))
		if rec.Code != tt.want || !strings.Contains(rec.Body.String(), tt.says) {
			t.Errorf("%s %s as a member: %d %s, want %d saying %q", tt.method, tt.target, rec.Code, rec.Body, tt.want, tt.says)
		}
		if tt.want == http.StatusForbidden && len(w.Calls) != before {
			t.Errorf("%s %s: a refused request reached the runtime: %v", tt.method, tt.target, w.Calls[before:])
		}
	}
	if !sup.Exists(ctx, "roots") || sup.Exists(ctx, "members") {
		t.Errorf("after the member's requests: roots exists %v, members exists %v", sup.Exists(ctx, "roots"), sup.Exists(ctx, "members"))
	}
}

// A member of the socket group may verify, but not flood the host with
// verifications: past maxVerifying at once the answer is 429, and the
// supervisor is not asked.
func TestVerificationsAreBounded(t *testing.T) {
	w := enforcetest.NewWorld("")
	d := New(enforce.New(testConfig(t.TempDir()), w, w), Config{SocketGID: -1}, nil)
	for range maxVerifying {
		d.verifying <- struct{}{}
	}
	rec := httptest.NewRecorder()
	d.handler().ServeHTTP(rec, asRoot(httptest.NewRequest("POST", "/v1/sandboxes/agent/verify", nil)))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("with every slot taken: %d %s", rec.Code, rec.Body)
	}
	// Control: with a slot free, the request reaches the supervisor (which
	// knows no such sandbox).
	<-d.verifying
	rec = httptest.NewRecorder()
	d.handler().ServeHTTP(rec, asRoot(httptest.NewRequest("POST", "/v1/sandboxes/agent/verify", nil)))
	if rec.Code == http.StatusTooManyRequests {
		t.Fatalf("a free slot was refused: %d %s", rec.Code, rec.Body)
	}
}
