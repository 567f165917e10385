package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawguard/clawguard/netrules/namegate"
)

const (
	placeholder = "cg-placeholder-0123456789abcdef"
	realKey     = "sk-real-key-never-in-the-sandbox"
)

// api is the real host: it records the credential headers of every request
// it receives.
type api struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []string
}

func newAPI(t *testing.T, handle http.HandlerFunc) *api {
	t.Helper()
	a := &api{}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.got = append(a.got, fmt.Sprintf("%s x-api-key=%q authorization=%q", r.Proto, r.Header.Get("X-Api-Key"), r.Header.Get("Authorization")))
		a.mu.Unlock()
		if handle != nil {
			handle(w, r)
			return
		}
		fmt.Fprintf(w, "answer to %s", r.URL.Path)
	}))
	a.srv.EnableHTTP2 = true
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

func (a *api) received() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got...)
}

// sandbox runs a broker for host (httptest's certificate is for
// example.com) in front of a, the way the name gate hands it connections:
// the ClientHello read first, then replayed. It returns the agent's client,
// trusting the sandbox's CA only, and the refusals.
func sandbox(t *testing.T, a *api, bind Binding, h2 bool, tune ...func(*Config)) (*http.Client, func() []Refusal) {
	t.Helper()
	ca, err := NewCA("test", []string{bind.Host}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	upstream := x509.NewCertPool()
	upstream.AddCert(a.srv.Certificate())
	dst := netip.MustParseAddrPort(a.srv.Listener.Addr().String())
	var mu sync.Mutex
	var refused []Refusal
	cfg := Config{
		Bindings: []Binding{bind}, CA: ca, RootCAs: upstream,
		Dial: func(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", to.String())
		},
		Refused: func(r Refusal) { mu.Lock(); refused = append(refused, r); mu.Unlock() },
	}
	for _, f := range tune {
		f(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				hello, err := namegate.ReadHello(c, 5*time.Second)
				if err != nil || hello.ServerName != bind.Host {
					t.Errorf("ClientHello: %+v, %v", hello.ServerName, err)
					return
				}
				if err := b.Serve(ctx, c, hello.Raw, hello.ServerName, dst); err != nil {
					t.Error(err)
				}
			})
		}
	})
	trust := x509.NewCertPool()
	trust.AppendCertsFromPEM(ca.CertPEM())
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
		},
		TLSClientConfig: &tls.Config{RootCAs: trust},
	}
	tr.ForceAttemptHTTP2 = h2
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, func() []Refusal {
		mu.Lock()
		defer mu.Unlock()
		return append([]Refusal(nil), refused...)
	}
}

var anthropic = Binding{Host: "example.com", Header: "x-api-key", Placeholder: placeholder, Key: realKey}

func get(t *testing.T, c *http.Client, header map[string]string, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://example.com"+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Proto + " " + string(b)
}

// The agent's placeholder reaches the host as the real key, over HTTP/1.1
// and HTTP/2, and the answer comes back.
func TestThePlaceholderReachesTheHostAsTheRealKey(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			a := newAPI(t, nil)
			c, _ := sandbox(t, a, anthropic, h2)
			code, body := get(t, c, map[string]string{"X-Api-Key": placeholder}, "/v1/messages")
			proto := "HTTP/1.1"
			if h2 {
				proto = "HTTP/2.0"
			}
			if code != 200 || body != proto+" answer to /v1/messages" {
				t.Fatalf("%d %q", code, body)
			}
			// Upstream, HTTP/1.1 whatever the agent spoke: a large answer
			// moves faster through Go's HTTP/1.1 client (docs/benchmarks.md).
			if got := a.received(); len(got) != 1 || got[0] != "HTTP/1.1 x-api-key=\""+realKey+"\" authorization=\"\"" {
				t.Fatalf("the host received %q", got)
			}
		})
	}
}

// A request with another credential, none, or the placeholder in the wrong
// place is refused with 403, and the host receives nothing: the attacker's
// own key never reaches it.
func TestARequestWithAnyOtherCredentialNeverReachesTheHost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header map[string]string
		path   string
		kind   string
	}{
		{"the attacker's own key", map[string]string{"X-Api-Key": "sk-attacker"}, "/", ForeignCredential},
		{"no key", nil, "/", MissingCredential},
		{"the placeholder, and another key beside it", map[string]string{"X-Api-Key": placeholder, "Authorization": "Bearer sk-attacker"}, "/", ForeignCredential},
		{"the key in another header", map[string]string{"Authorization": "Bearer " + placeholder}, "/", MissingCredential},
		{"a proxy credential", map[string]string{"X-Api-Key": placeholder, "Proxy-Authorization": "Basic eDp5"}, "/", ForeignCredential},
		{"the placeholder in the URL", map[string]string{"X-Api-Key": placeholder}, "/?k=" + placeholder, LeakAttempt},
		{"the placeholder in the URL, escaped", map[string]string{"X-Api-Key": placeholder}, "/%63" + placeholder[1:], LeakAttempt},
		{"the placeholder in another header", map[string]string{"X-Api-Key": placeholder, "X-Note": placeholder}, "/", LeakAttempt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPI(t, nil)
			c, refused := sandbox(t, a, anthropic, false)
			if code, body := get(t, c, tc.header, tc.path); code != http.StatusForbidden {
				t.Errorf("%d %q, want 403", code, body)
			}
			if got := a.received(); len(got) != 0 {
				t.Errorf("the host received %q", got)
			}
			if r := refused(); len(r) != 1 || r[0].Kind != tc.kind || r[0].Host != "example.com" {
				t.Errorf("refusals %+v, want one %s", r, tc.kind)
			}
		})
	}
	// The control: the same client with the placeholder alone is served.
	a := newAPI(t, nil)
	c, _ := sandbox(t, a, anthropic, false)
	if code, _ := get(t, c, map[string]string{"X-Api-Key": placeholder}, "/"); code != 200 {
		t.Fatalf("control: the placeholder alone: %d", code)
	}
}

// Server-sent events pass one by one: the host sends the next only once the
// agent has read the last, so a broker that held the answer back would
// never finish.
func TestServerSentEventsPassAsTheyAreSent(t *testing.T) {
	const events = 20
	read := make(chan int, events)
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range events {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case got := <-read:
				if got != i {
					return
				}
			case <-time.After(5 * time.Second):
				fmt.Fprintf(w, "data: event %d was not read within 5 s\n\n", i)
				return
			}
		}
	})
	for _, h2 := range []bool{false, true} {
		c, _ := sandbox(t, a, anthropic, h2)
		req, _ := http.NewRequest("GET", "https://example.com/stream", nil)
		req.Header.Set("X-Api-Key", placeholder)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "data: ") {
				continue
			}
			if line != fmt.Sprintf("data: %d", n) {
				t.Fatalf("h2=%v: event %q, want %d", h2, line, n)
			}
			read <- n
			n++
		}
		resp.Body.Close()
		if n != events {
			t.Errorf("h2=%v: %d of %d events arrived", h2, n, events)
		}
	}
}

// The broker forwards only to a host whose certificate its trust store
// verifies: one it does not is a 502, and the request never reached it.
func TestAnUpstreamTheBrokerCannotVerifyGetsNothing(t *testing.T) {
	a := newAPI(t, nil)
	c, _ := sandbox(t, a, anthropic, false, func(cfg *Config) { cfg.RootCAs = x509.NewCertPool() })
	if code, _ := get(t, c, map[string]string{"X-Api-Key": placeholder}, "/"); code != http.StatusBadGateway {
		t.Errorf("%d, want 502", code)
	}
	if got := a.received(); len(got) != 0 {
		t.Errorf("the unverified host received %q", got)
	}
}

// The sandbox's CA signs its bound hosts only: a certificate for another
// name made with its key does not verify, so trusting it inside the sandbox
// vouches for no other site.
func TestTheSandboxCAVouchesForItsBoundHostsOnly(t *testing.T) {
	ca, err := NewCA("test", []string{"api.example.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	leaf, err := ca.leaf("api.example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "api.example.com"}); err != nil {
		t.Fatalf("the bound host's certificate: %v", err)
	}
	if _, err := ca.leaf("evil.example", time.Now()); err == nil {
		t.Fatal("the CA made a certificate for a host it does not bind")
	}
	forged := &CA{cert: ca.cert, key: ca.key, hosts: []string{"evil.example"}, leaves: map[string]*tls.Certificate{}}
	bad, err := forged.leaf("evil.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "evil.example"}); err == nil {
		t.Fatal("a certificate for another name, signed with the CA's key, verifies: the name constraints do not hold")
	}
}

// The authority a daemon kept for a running sandbox loads again, only with
// its own key and only for the hosts it was made for.
func TestTheSandboxCALoadsAgainFromWhatWasKept(t *testing.T) {
	ca, err := NewCA("test", []string{"api.example.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadCA(ca.CertPEM(), key, []string{"api.example.com"})
	if err != nil || !again.Certificate().Equal(ca.Certificate()) {
		t.Fatalf("LoadCA: %v", err)
	}
	if _, err := again.leaf("api.example.com", time.Now()); err != nil {
		t.Fatal(err)
	}
	other, _ := NewCA("other", []string{"api.example.com"}, time.Now())
	otherKey, _ := other.KeyPEM()
	if _, err := LoadCA(ca.CertPEM(), otherKey, []string{"api.example.com"}); err == nil {
		t.Error("a CA loaded with another's key")
	}
	if _, err := LoadCA(ca.CertPEM(), key, []string{"evil.example"}); err == nil {
		t.Error("a CA loaded for a host it was not made for")
	}
}

// An agent's HTTP/2 connection may carry many streams at once; the broker
// opens at most maxUpstreamConns connections for them, and the rest wait.
func TestTheBrokerOpensABoundedNumberOfUpstreamConnections(t *testing.T) {
	var mu sync.Mutex
	now, most := 0, 0
	release := make(chan struct{})
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		now++
		most = max(most, now)
		mu.Unlock()
		<-release
		mu.Lock()
		now--
		mu.Unlock()
	})
	c, _ := sandbox(t, a, anthropic, true)
	const streams = maxUpstreamConns + 8
	var wg sync.WaitGroup
	for range streams {
		wg.Go(func() {
			// Not get: t.Fatal may not be called off the test's goroutine.
			req, _ := http.NewRequest("GET", "https://example.com/", nil)
			req.Header.Set("X-Api-Key", placeholder)
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := now
		mu.Unlock()
		if n >= maxUpstreamConns {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // room for any over the cap to arrive
	close(release)
	wg.Wait()
	if most != maxUpstreamConns {
		t.Errorf("%d requests reached the host at once, want the cap of %d", most, maxUpstreamConns)
	}
}
