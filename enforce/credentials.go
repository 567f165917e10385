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
	return bindCredentials(p, d, nil, nil, now)
}

// bindCredentials is prepareCredentials keeping what a running sandbox
// already has: its placeholders (by secret) and its authority, if given.
func bindCredentials(p *profiles.Profile, d *profiles.SecretsDir, placeholders map[string]string, ca *broker.CA, now time.Time) (*credentials, error) {
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
		placeholder, ok := placeholders[cr.Secret]
		if !ok {
			if placeholder, err = newPlaceholder(pres.Prefix); err != nil {
				return nil, err
			}
		}
		c.placeholders[cr.Secret] = placeholder
		for _, h := range pres.Hosts {
			c.bindings = append(c.bindings, broker.Binding{Host: h, Header: pres.Header, Scheme: pres.Scheme, Placeholder: placeholder, Key: key})
			hosts = append(hosts, h)
		}
	}
	if ca == nil {
		var err error
		if ca, err = broker.NewCA(p.Name, hosts, now); err != nil {
			return nil, err
		}
	}
	c.ca = ca
	return c, nil
}

// adoptCredentials binds a running sandbox's credentials again: its keys
// read anew from its secrets directory (they are kept nowhere else), its
// placeholders and authority as its state keeps them.
func (s *Supervisor) adoptCredentials(st *State) (*credentials, error) {
	p := st.Spec
	d, err := profiles.OpenSecrets(p.Dir, p.Secrets.Dir, s.Policy())
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	defer d.Close()
	cert, err := os.ReadFile(s.layout.caFile(st.Name))
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(s.layout.caKeyFile(st.Name))
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, cr := range p.Credentials {
		hosts = append(hosts, cr.Presentation().Hosts...)
	}
	ca, err := broker.LoadCA(cert, key, hosts)
	if err != nil {
		return nil, err
	}
	for _, cr := range p.Credentials {
		if _, ok := st.Placeholders[cr.Secret]; !ok {
			return nil, fmt.Errorf("no placeholder kept for %s", cr.Secret)
		}
	}
	return bindCredentials(p, d, st.Placeholders, ca, time.Now())
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
// store and it) for the sandbox to read, and the authority's key for root
// alone.
func (c *credentials) writeCA(cert, bundle, key string) error {
	kp, err := c.ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.WriteFile(key, kp, 0o600); err != nil {
		return fmt.Errorf("write the sandbox's CA key: %w", err)
	}
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
