package enforce

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/clawguard/clawguard/netrules/broker"
	"github.com/clawguard/clawguard/profiles"
)

// Where the sandbox finds its certificate authority: the certificate alone
// (for Node, which adds it to its own), and the host's trust store with it
// (for OpenSSL and Python, which take one file for all).
const (
	sandboxCA       = "/.clawguard/ca.pem"
	sandboxCABundle = "/.clawguard/ca-bundle.pem"
)

// hostCABundle is the host's trust store, which the sandbox's bundle holds
// beside its own authority.
const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// credentials are a sandbox's bound secrets: what its broker needs, and
// the placeholders staged where the secrets would be.
type credentials struct {
	bindings     []broker.Binding
	placeholders map[string]string // secret file -> its placeholder
	ca           *broker.CA
}

// prepareCredentials reads each bound secret from the secrets directory
// judged for the sandbox, and makes its placeholder and the sandbox's
// authority. The keys stay in this process's memory only.
func prepareCredentials(p *profiles.Profile, d *profiles.SecretsDir, now time.Time) (*credentials, error) {
	if len(p.Credentials) == 0 {
		return nil, nil
	}
	if d == nil {
		return nil, fmt.Errorf("credentials: no secrets directory")
	}
	c := &credentials{placeholders: map[string]string{}}
	var hosts []string
	for i, cr := range p.Credentials {
		at := slices.Index(d.Names, cr.Secret)
		if at < 0 {
			return nil, fmt.Errorf("credentials[%d]: %s is not a file of the secrets directory", i, cr.Secret)
		}
		key, err := readKey(d.Files[at])
		if err != nil {
			return nil, fmt.Errorf("credentials[%d]: secret %s: %w", i, cr.Secret, err)
		}
		pres := cr.Presentation()
		placeholder, err := newPlaceholder(pres.Prefix)
		if err != nil {
			return nil, err
		}
		c.placeholders[cr.Secret] = placeholder
		for _, h := range pres.Hosts {
			c.bindings = append(c.bindings, broker.Binding{Host: h, Header: pres.Header, Scheme: pres.Scheme, Placeholder: placeholder, Key: key})
			hosts = append(hosts, h)
		}
	}
	ca, err := broker.NewCA(p.Name, hosts, now)
	if err != nil {
		return nil, err
	}
	c.ca = ca
	return c, nil
}

// readKey reads a key: one line, surrounding white space dropped. The
// file's offset is put back, though its copy is never staged.
func readKey(f *os.File) (string, error) {
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	key := string(bytes.TrimSpace(b))
	switch {
	case key == "":
		return "", fmt.Errorf("is empty: write the key into it")
	case strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", fmt.Errorf("is not one line of printable characters: a key goes in a header as it is")
	}
	return key, nil
}

// newPlaceholder is prefix and 40 random hex digits: unguessable, and
// nothing of the key.
func newPlaceholder(prefix string) (string, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("placeholder: %w", err)
	}
	return prefix + hex.EncodeToString(b), nil
}

// tripwords are what the tripwire looks for: each placeholder's random
// part, which no other text holds.
func (c *credentials) tripwords() []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, p := range c.placeholders {
		out = append(out, p[len(p)-40:])
	}
	slices.Sort(out)
	return out
}

// writeCA writes the sandbox's certificate and its bundle (the host's trust
// store and it) for the sandbox to read.
func (c *credentials) writeCA(cert, bundle string) error {
	pem := c.ca.CertPEM()
	if err := writeReadable(cert, pem); err != nil {
		return fmt.Errorf("write the sandbox's CA: %w", err)
	}
	host, err := os.ReadFile(hostCABundle)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read the host's trust store: %w", err)
	}
	if len(host) > 0 && !bytes.HasSuffix(host, []byte("\n")) {
		host = append(host, '\n')
	}
	if err := writeReadable(bundle, append(host, pem...)); err != nil {
		return fmt.Errorf("write the sandbox's CA bundle: %w", err)
	}
	return nil
}
