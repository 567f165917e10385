// Package fakecdn is a CDN's edge in miniature, for the fake internets of
// the end-to-end tests and the demo: one listener serves every server name
// over TLS, as an edge serves every site it carries from the same
// addresses, and a client that speaks no TLS gets a plain greeting.
package fakecdn

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// PlainWait is how long a client may stay silent before it is taken to be
// one of a server-first protocol and greeted in plain text.
const PlainWait = 300 * time.Millisecond

// Serve answers each connection accepted on ln until ln is closed: a TLS
// handshake with any server name gets "served NAME at ADDR"; anything else,
// or silence for PlainWait, gets "hello from ADDR (plain)".
func Serve(ln net.Listener, cert tls.Certificate) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			serve(c, cert)
		}()
	}
}

func serve(c net.Conn, cert tls.Certificate) {
	_ = c.SetDeadline(time.Now().Add(PlainWait))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil || first[0] != 0x16 { // not a TLS handshake record
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "hello from %s (plain)\n", c.LocalAddr())
		return
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Server(peeked{c, br}, &tls.Config{Certificates: []tls.Certificate{cert}})
	if tc.Handshake() != nil {
		return
	}
	fmt.Fprintf(tc, "served %s at %s\n", tc.ConnectionState().ServerName, c.LocalAddr())
	_ = tc.CloseWrite()
	_, _ = io.Copy(io.Discard, tc)
}

// peeked reads through the buffer that peeked at the connection.
type peeked struct {
	net.Conn
	r *bufio.Reader
}

func (p peeked) Read(b []byte) (int, error) { return p.r.Read(b) }

// Certificate is a self-signed certificate for names, valid for a day. The
// clients of a fake CDN do not check it: what they reach is decided by the
// name gate, not by the certificate.
func Certificate(names ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("fake cdn key: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake cdn"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: names}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("fake cdn certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
