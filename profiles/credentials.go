package profiles

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Credential binds a secret to the hosts it is for: the sandbox gets a
// placeholder where the secret would be, and the name gate's broker puts
// the real value in the header on the way out (see netrules/broker).
type Credential struct {
	// Secret is a file of secrets.dir.
	Secret string `yaml:"secret" json:"secret"`
	// Preset names a known API (anthropic, openai): its host, header and
	// scheme. Without one, hosts and header are required.
	Preset string   `yaml:"preset" json:"preset,omitempty"`
	Hosts  []string `yaml:"hosts" json:"hosts,omitempty"`
	Header string   `yaml:"header" json:"header,omitempty"`
	// Scheme is what precedes the key in the header ("Bearer ").
	Scheme string `yaml:"scheme" json:"scheme,omitempty"`
}

// Tripwire actions: what the placeholder seen where it does not belong
// does to the sandbox, beyond the refusal and the audit event.
const (
	TripwireLog    = "log"
	TripwireFreeze = "freeze"
	TripwireStop   = "stop"
)

// CredentialPreset is a known API's way of taking its key.
type CredentialPreset struct {
	Hosts  []string
	Header string
	Scheme string
	// Prefix starts the placeholder, so a client that checks the key's
	// shape before sending it takes the placeholder for one.
	Prefix string
}

// CredentialPresets are the APIs the threat model names.
var credentialPresets = map[string]CredentialPreset{
	"anthropic": {Hosts: []string{"api.anthropic.com"}, Header: "x-api-key", Prefix: "sk-ant-api03-"},
	"openai":    {Hosts: []string{"api.openai.com"}, Header: "Authorization", Scheme: "Bearer ", Prefix: "sk-proj-"},
}

// Presentation is how the credential is presented: its hosts, header,
// scheme and the placeholder's prefix, from its preset or its own fields.
func (c Credential) Presentation() CredentialPreset {
	if p, ok := credentialPresets[c.Preset]; ok {
		return CredentialPreset{Hosts: slices.Clone(p.Hosts), Header: p.Header, Scheme: p.Scheme, Prefix: p.Prefix}
	}
	hosts := make([]string, len(c.Hosts))
	for i, h := range c.Hosts {
		hosts[i] = strings.TrimSuffix(strings.ToLower(h), ".")
	}
	return CredentialPreset{Hosts: hosts, Header: c.Header, Scheme: c.Scheme, Prefix: "cg-"}
}

// reHeader is an HTTP field name (RFC 9110 token).
var reHeader = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")

func (v validator) credentials() {
	p, c := v.p, v.c
	switch p.OnTripwire {
	case "", TripwireLog, TripwireFreeze, TripwireStop:
	default:
		c.add("on_tripwire", fmt.Sprintf("%q is not log, freeze or stop", p.OnTripwire), "on_tripwire: freeze stops the agent where it is until you look")
	}
	if len(p.Credentials) > 0 && p.Secrets.Dir == "" {
		c.add("credentials", "needs secrets.dir, where its secrets are", "secrets: {dir: ./secrets}")
	}
	secrets, hosts := map[string]int{}, map[string]int{}
	for i, cr := range p.Credentials {
		field := fmt.Sprintf("credentials[%d]", i)
		switch {
		case cr.Secret == "" || strings.ContainsAny(cr.Secret, "/\x00") || cr.Secret == "." || cr.Secret == "..":
			c.add(field+".secret", fmt.Sprintf("%q is not a file name", cr.Secret), "name a file of secrets.dir, e.g. secret: anthropic_api_key")
		case secrets[cr.Secret] > 0:
			c.add(field+".secret", fmt.Sprintf("%s is bound by credentials[%d] already", cr.Secret, secrets[cr.Secret]-1), "bind each secret once; list all its hosts in one entry")
		}
		secrets[cr.Secret] = i + 1
		if cr.Preset != "" {
			if _, ok := credentialPresets[cr.Preset]; !ok {
				c.add(field+".preset", fmt.Sprintf("%q is not a preset", cr.Preset), "use anthropic or openai, or give hosts and header")
				continue
			}
			if len(cr.Hosts) > 0 || cr.Header != "" || cr.Scheme != "" {
				c.add(field, "a preset names its hosts, header and scheme", "drop hosts, header and scheme, or the preset")
			}
		} else {
			if len(cr.Hosts) == 0 {
				c.add(field+".hosts", "is empty", "name the hosts the key is for, e.g. hosts: [api.example.com], or use a preset")
			}
			if !reHeader.MatchString(cr.Header) {
				c.add(field+".header", fmt.Sprintf("%q is not a header name", cr.Header), "e.g. header: Authorization, with scheme: \"Bearer \"")
			}
			if strings.ContainsFunc(cr.Scheme, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
				c.add(field+".scheme", "holds characters a header may not", "printable ASCII, e.g. \"Bearer \"")
			}
		}
		for _, h := range cr.Presentation().Hosts {
			if j := hosts[h]; j > 0 {
				c.add(field+".hosts", fmt.Sprintf("%s is bound by credentials[%d] already", h, j-1), "one credential per host")
			}
			hosts[h] = i + 1
			if !v.behindNameGate(h) {
				c.add(field+".hosts", fmt.Sprintf("%s is not an allowlisted host on a TLS port", h),
					fmt.Sprintf("allow it: egress.allow: [{host: %s, ports: [443]}] (the broker works at the name gate)", h))
			}
		}
	}
}

// behindNameGate reports whether host is an exact allowlist entry with a
// port behind the name gate.
func (v validator) behindNameGate(host string) bool {
	for _, a := range v.p.Egress.Allow {
		if strings.TrimSuffix(strings.ToLower(a.Host), ".") == host && len(a.TLSPorts()) > 0 {
			return true
		}
	}
	return false
}
