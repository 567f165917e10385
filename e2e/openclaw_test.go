package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/verify"
)

// openClawImage builds the real OpenClaw image once per run, from the npm
// registry at the versions deploy/openclaw-image pins.
var openClawImage = sync.OnceValues(func() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(env.dir, "openclaw.tar")
	cmd := exec.Command(filepath.Join(root, "deploy", "openclaw-image", "build.sh"), filepath.Join(env.dir, "cgimage"), out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build the OpenClaw image: %v\n%s", err, b)
	}
	fmt.Print(string(b))
	return out, nil
})

// TestOpenClawGatewayRunsUnderTheBuiltinProfile runs the real OpenClaw
// gateway in a sandbox made by `profile init` from the built-in profile,
// changed only to import the locally built image: it must become ready,
// answer on its published loopback port, stay under its memory limit and
// pass verify.
func TestOpenClawGatewayRunsUnderTheBuiltinProfile(t *testing.T) {
	archive, err := openClawImage()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := env.cg("profile", "init", dir); code != 0 {
		t.Fatalf("profile init: exit %d\n%s%s", code, out, stderr)
	}
	file := filepath.Join(dir, "openclaw.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "\nimage: ", "\nimage_archive: "+archive+"\nimage: ", 1)
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	sb := env.startFile(t, "openclaw", dir, file, nil, append([]string{"--verify"}, blockedProbes...)...)
	ready := waitFor(t, sb, "[gateway] ready", 120*time.Second)
	t.Logf("gateway ready %s after `clawguard run` (image import included)", ready.Sub(began).Round(100*time.Millisecond))
	if !strings.Contains(sb.out.String(), "none failed") {
		t.Errorf("run --verify did not pass:\n%s", sb.out.String())
	}

	// The published port answers the host on loopback.
	resp, err := http.Get("http://127.0.0.1:18789/healthz")
	if err != nil {
		t.Fatalf("the gateway does not answer on its published port: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok":true`) {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}

	// The gateway, now fully up, passes every check.
	v, code := env.verifySandbox(t, "openclaw")
	if code != 0 || len(v.with(verify.Fail)) > 0 || len(v.warnings()) > 0 {
		t.Fatalf("verify of the running gateway: exit %d\n%s", code, v.explain())
	}

	// The gateway's own TLS stack (Node's) passes the name gate on 443
	// under an allowlisted name, and is refused under another name at the
	// same address, which the address serves from the host.
	const nodeTLS = `const tls = require("tls"); const [host, name] = process.argv.slice(1);
const s = tls.connect({host, port: 443, servername: name, rejectUnauthorized: false});
s.on("data", d => { process.stdout.write(d); s.end(); });
s.on("error", e => { console.log("error " + e.code); });
s.setTimeout(3000, () => { console.log("timeout"); s.destroy(); });`
	if got, err := hostTLS(apiAddr+":443", "evil.example.org"); err != nil || !strings.HasPrefix(got, "served evil.example.org") {
		t.Fatalf("control: the API's address does not serve another name from the host (%q, %v)", got, err)
	}
	for _, tc := range []struct {
		name   string
		served bool
	}{{"api.anthropic.com", true}, {"evil.example.org", false}} {
		out, stderr, _ := env.exec(t, "openclaw", "node", "-e", nodeTLS, "api.anthropic.com", tc.name)
		if served := strings.HasPrefix(out, "served "+tc.name); served != tc.served {
			t.Errorf("node's TLS to api.anthropic.com:443 naming %s: %q %s (want served: %v)", tc.name, out, stderr, tc.served)
		}
	}

	st := env.status(t, "openclaw")
	mem := cgroupMemory(t, st.Pid)
	t.Logf("gateway memory: rss %d MiB, page cache %d MiB, peak %d MiB of %d MiB, oom kills %d",
		mem.rss>>20, mem.cache>>20, mem.peak>>20, int64(1<<30)>>20, mem.oomKills)
	if mem.oomKills != 0 || mem.peak >= 1<<30 {
		t.Errorf("the gateway hit its memory limit: %+v", mem)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	heap := fmt.Sprintf("NODE_OPTIONS=--max-old-space-size=%d", profiles.NodeHeapMiB(1<<30))
	if !strings.Contains(string(environ), heap) {
		t.Errorf("the gateway runs without %s", heap)
	}
	writeOpenClawReport(t, ready.Sub(began), mem)
}

// waitFor waits until the sandbox's output has line, and returns when.
func waitFor(t *testing.T, sb *sandbox, line string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(sb.out.String(), line) {
			return time.Now()
		}
		select {
		case <-sb.exited:
			t.Fatalf("the sandbox exited before %q:\n%s", line, sb.out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("no %q within %s:\n%s", line, timeout, sb.out.String())
	return time.Time{}
}

type memoryUse struct{ rss, cache, peak, oomKills int64 }

// cgroupMemory reads the memory of the cgroup pid is in (v1 or v2).
func cgroupMemory(t *testing.T, pid uint32) memoryUse {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	var v1, v2 string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case strings.Contains(","+parts[1]+",", ",memory,"):
			v1 = parts[2]
		}
	}
	stat := func(path string) map[string]int64 {
		m := map[string]int64{}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), " ")
			m[k], _ = strconv.ParseInt(v, 10, 64)
		}
		return m
	}
	one := func(path string) int64 {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	if v1 != "" {
		d := "/sys/fs/cgroup/memory" + v1
		s := stat(d + "/memory.stat")
		return memoryUse{rss: s["total_rss"], cache: s["total_cache"], peak: one(d + "/memory.max_usage_in_bytes"), oomKills: stat(d + "/memory.oom_control")["oom_kill"]}
	}
	d := "/sys/fs/cgroup" + v2
	s := stat(d + "/memory.stat")
	return memoryUse{rss: s["anon"], cache: s["file"], peak: one(d + "/memory.peak"), oomKills: stat(d + "/memory.events")["oom_kill"]}
}

func writeOpenClawReport(t *testing.T, ready time.Duration, m memoryUse) {
	text := fmt.Sprintf(`## OpenClaw gateway in the built-in profile

The real gateway (OpenClaw %s from the npm registry, Node 24), started by
`+"`clawguard run --verify`"+` from a `+"`profile init`"+` directory with a 1 GiB memory limit.
One run of TestOpenClawGatewayRunsUnderTheBuiltinProfile.

| measure | value |
|---|---|
| run to "[gateway] ready" (image import and unpack included) | %s |
| resident memory once ready | %d MiB |
| page cache once ready | %d MiB |
| peak (memory.max_usage / memory.peak) | %d MiB |
| OOM kills | %d |
`, strings.TrimPrefix(openClawVersion(t), "v"), ready.Round(100*time.Millisecond), m.rss>>20, m.cache>>20, m.peak>>20, m.oomKills)
	writeSection(t, "50-openclaw.md", text)
}

func openClawVersion(t *testing.T) string {
	b, err := profiles.BuiltinYAML(profiles.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if ref, ok := strings.CutPrefix(line, "image: "); ok {
			_, v, _ := strings.Cut(ref, ":")
			return v
		}
	}
	return "?"
}
