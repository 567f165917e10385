package profiles

import (
	"testing"
)

// FuzzParseAndValidate feeds the profile loader any text: it must answer
// with a profile or an error, never panic, and a profile it accepts must
// validate without panicking either (against an empty directory).
func FuzzParseAndValidate(f *testing.F) {
	for _, s := range []string{
		"name: a\nimage: busybox\n",
		"name: a\nimage: busybox\nuser: \"1000:1000\"\nresources: {memory: 512m, cpus: 0.5, pids: 64, connections: 100}\n",
		"name: a\nimage: busybox\negress: {allow: [{host: '*.example.com', ports: [443], protocols: [tcp, udp]}, {cidr: 198.51.100.0/24, ports: [5432]}], dns: {min_ttl: 1s, max_ttl: 1h}}\n",
		"name: a\nimage: busybox\nmounts: [{source: ./w, target: /w, read_only: false}]\nsecrets: {dir: ./s}\npublish: [\"127.0.0.1:8080:80\"]\n",
		"name: a\nimage: busybox\ntmpfs: [{path: /tmp, size: 10m, options: [noexec]}]\nseccomp: strict\nagent: openclaw\n",
		"---\n---\n",
		"name: [\n",
		"name: a\nimage: busybox\nstop_timeout: 99999h\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.yaml", t.TempDir())
		if err != nil {
			return
		}
		_ = Validate(p, SourcePolicy{})
		_ = Warnings(p)
	})
}
