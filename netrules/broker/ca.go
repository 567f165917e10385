// Package broker keeps a sandbox's API keys out of the sandbox. For a host
// bound to a credential, the name gate hands the agent's TLS connection here
// instead of splicing it: the broker terminates TLS with a certificate of
// the sandbox's own authority, puts the real key in place of the
// placeholder the agent holds, refuses any request that carries another
// credential (the attacker's own key among them), and forwards the rest to
// the real host over TLS it verifies. Hosts without a binding are never
// decrypted.
//
// This file is the sandbox's certificate authority: made at sandbox start,
// its key never leaves the daemon's memory, and it can sign only the bound
// hosts (X.509 name constraints), so the one trust anchor the sandbox holds
// vouches for nothing else even if its key were taken.
package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"time"
)

// caLifetime bounds the authority's and its certificates' validity: a
// sandbox that runs longer gets a new one at its next start.
const caLifetime = 90 * 24 * time.Hour

// CA is one sandbox's certificate authority.
type CA struct {
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	pem   []byte
	hosts []string

	mu     sync.Mutex
	leaves map[string]*tls.Certificate
}

// NewCA makes the authority of sandbox, able to sign hosts only.
func NewCA(sandbox string, hosts []string, now time.Time) (*CA, error) {
	if len(hosts) == 0 {
		return nil, errors.New("broker: a certificate authority for no host")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("broker: CA key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("broker: CA serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     pkix.Name{CommonName: "clawguard sandbox " + sandbox, Organization: []string{"clawguard"}},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(caLifetime),
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         slices.Clone(hosts),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("broker: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("broker: CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key, hosts: slices.Clone(hosts), leaves: map[string]*tls.Certificate{},
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// CertPEM is the authority's certificate, for the sandbox to trust.
func (ca *CA) CertPEM() []byte { return slices.Clone(ca.pem) }

// Certificate is the authority's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// leaf is the server certificate for host, made on first use.
func (ca *CA) leaf(host string, now time.Time) (*tls.Certificate, error) {
	if !slices.Contains(ca.hosts, host) {
		return nil, fmt.Errorf("broker: %s is not a bound host", host)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c, ok := ca.leaves[host]; ok && c.Leaf.NotAfter.After(now.Add(time.Hour)) {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("broker: key for %s: %w", host, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("broker: serial for %s: %w", host, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     ca.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("broker: certificate for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("broker: certificate for %s: %w", host, err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
	ca.leaves[host] = c
	return c, nil
}

// KeyPEM is the authority's private key, for the daemon to keep beside
// the sandbox's state (root's, 0600) so that a daemon restarted while the
// sandbox runs signs with the authority the sandbox trusts.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("broker: CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// LoadCA is the authority written by CertPEM and KeyPEM, for hosts (which
// must be among those it was made for).
func LoadCA(certPEM, keyPEM []byte, hosts []string) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("broker: CA: not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("broker: CA certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("broker: CA key: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("broker: CA key and certificate do not match")
	}
	for _, h := range hosts {
		if !slices.Contains(cert.PermittedDNSDomains, h) {
			return nil, fmt.Errorf("broker: the CA was not made for %s", h)
		}
	}
	return &CA{cert: cert, key: key, hosts: slices.Clone(hosts), leaves: map[string]*tls.Certificate{},
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}, nil
}
