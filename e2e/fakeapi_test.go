package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// The fake internet's HTTPS API, for the credential broker: its own
// certificate authority (which the suite's clawguard trusts through
// --upstream-ca, and nothing else does), one host name, and a record of the
// credential headers of every request it receives.
const (
	apiHost = "api.broker.test" // at api2Addr
	apiPort = 8443
)

type fakeAPI struct {
	srv    *http.Server
	caFile string

	mu  sync.Mutex
	got []apiRequest
}

// apiRequest is what the API saw of one request.
type apiRequest struct {
	Path, APIKey, Authorization string
}

// startFakeAPI serves on ln with a certificate for apiHost from a new CA,
// whose certificate it writes to caFile.
func startFakeAPI(ln net.Listener, caFile string) (*fakeAPI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake internet CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: apiHost}, DNSNames: []string{apiHost},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return nil, err
	}
	a := &fakeAPI{caFile: caFile}
	a.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.mu.Lock()
			a.got = append(a.got, apiRequest{Path: r.URL.Path, APIKey: r.Header.Get("X-Api-Key"), Authorization: r.Header.Get("Authorization")})
			if len(a.got) > 10000 { // the benchmarks' thousands
				a.got = a.got[len(a.got)-1000:]
			}
			a.mu.Unlock()
			switch r.URL.Path {
			case "/big": // MIB MiB of zeros
				mib, _ := strconv.Atoi(r.URL.Query().Get("mib"))
				buf := make([]byte, 1<<20)
				for range min(mib, 4096) {
					if _, err := w.Write(buf); err != nil {
						return
					}
				}
			case "/sse": // N events MS apart, each the time it was sent (Unix ns)
				n, _ := strconv.Atoi(r.URL.Query().Get("n"))
				gap, _ := strconv.Atoi(r.URL.Query().Get("ms"))
				w.Header().Set("Content-Type", "text/event-stream")
				for range min(n, 10000) {
					fmt.Fprintf(w, "data: %d\n\n", time.Now().UnixNano())
					w.(http.Flusher).Flush()
					time.Sleep(time.Duration(gap) * time.Millisecond)
				}
			default:
				fmt.Fprintf(w, "api answered %s over %s", r.URL.Path, r.Proto)
			}
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go a.srv.ServeTLS(ln, "", "") //nolint:errcheck // ends with close
	return a, nil
}

// received is what the API has been sent so far.
func (a *fakeAPI) received() []apiRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]apiRequest(nil), a.got...)
}
