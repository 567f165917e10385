package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogsKeepOneRunEach: a sandbox's output is kept after it stops, and a
// new run of the same name starts with a fresh log (the old one is kept as
// NAME.log.prev, which logs does not print).
func TestLogsKeepOneRunEach(t *testing.T) {
	h := env
	for i, word := range []string{"first-run", "second-run"} {
		sb := h.start(t, profile{Name: "logs", Args: []string{"sh", "-c", "echo " + word + "; trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"}})
		h.stopSandbox(t, sb)
		out, stderr, code := h.cg("logs", "logs")
		if code != 0 {
			t.Fatalf("run %d: logs: %s", i, stderr)
		}
		if !strings.Contains(out, word) {
			t.Fatalf("run %d: log lacks %q:\n%s", i, word, out)
		}
		if i == 1 && strings.Contains(out, "first-run") {
			t.Fatalf("second run's log still holds the first run's output:\n%s", out)
		}
		if !strings.Contains(sb.out.String(), word) {
			t.Fatalf("run %d: foreground output lacks %q:\n%s", i, word, sb.out.String())
		}
	}
	if _, _, code := h.cg("logs", "never-ran"); code != 1 {
		t.Fatalf("logs of an unknown sandbox: exit %d, want 1", code)
	}
}

// TestLogsDoNotLetTheAgentDriveTheTerminal: the agent writes escape
// sequences (a window title, a colour, a carriage return that hides what
// came before); on the operator's terminal they are shown, not obeyed.
// The control: --raw and a pipe pass the very bytes through.
func TestLogsDoNotLetTheAgentDriveTheTerminal(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "logs-esc", Args: []string{"sh", "-c",
		`printf 'rm -rf ~\rharmless \033]0;pwned\007\033[31mred\n'; trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done`}})
	h.stopSandbox(t, sb)
	onTerminal := func(args ...string) string {
		t.Helper()
		// script gives the command a pseudo-terminal, as an operator's
		// shell would.
		cmdline := h.bin + " " + strings.Join(append(h.globalFlags(), args...), " ")
		out, err := exec.Command("script", "-qfec", cmdline, "/dev/null").Output()
		if err != nil {
			t.Fatalf("%s on a terminal: %v\n%s", cmdline, err, out)
		}
		return string(out)
	}
	raw, _, _ := h.cg("logs", "logs-esc")
	if !strings.Contains(raw, "\x1b]0;pwned\x07") {
		t.Fatalf("control: the agent's escape sequence is not in the piped log: %q", raw)
	}
	if got := onTerminal("logs", "logs-esc", "--raw"); !strings.Contains(got, "\x1b]0;pwned") {
		t.Fatalf("control: --raw on a terminal does not pass the bytes through: %q", got)
	}
	got := onTerminal("logs", "logs-esc")
	if strings.ContainsAny(got, "\x1b\x07") || strings.Contains(got, "~\rharmless") {
		t.Fatalf("a control character reached the terminal: %q", got)
	}
	if !strings.Contains(got, `\x1b]0;pwned\x07\x1b[31mred`) || !strings.Contains(got, `rm -rf ~\x0dharmless`) {
		t.Fatalf("the escaped output does not show what the agent wrote: %q", got)
	}
}

// TestExecPassesTheExitCodeThrough and reports a missing sandbox clearly.
func TestExecPassesTheExitCodeThrough(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "exitcode"})
	if _, _, code := h.exec(t, sb.name, "sh", "-c", "exit 7"); code != 7 {
		t.Fatalf("exit code %d, want 7", code)
	}
	_, stderr, code := h.exec(t, "no-such-sandbox", "true")
	if code != 1 || !strings.Contains(stderr, "no-such-sandbox") {
		t.Fatalf("exec in a missing sandbox: exit %d: %s", code, stderr)
	}
	if _, stderr, code := h.cg("exec", sb.name, "true"); code != 2 || !strings.Contains(stderr, "--") {
		t.Fatalf("exec without --: exit %d: %s", code, stderr)
	}
}

// TestStatusJSONIsStable checks the machine-readable fields of a running sandbox.
func TestStatusJSONIsStable(t *testing.T) {
	h := env
	sb := h.start(t, profile{Name: "status-json"})
	out, stderr, code := h.cg("status", "--json")
	if code != 0 {
		t.Fatalf("status: %s", stderr)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var mine map[string]any
	for _, s := range list {
		if s["name"] == sb.name {
			mine = s
		}
	}
	if mine == nil {
		t.Fatalf("%s missing from %s", sb.name, out)
	}
	for _, k := range []string{"name", "state", "image", "pid", "started_at", "uptime_seconds", "memory_limit_bytes", "cpus", "pids_limit", "secrets", "network"} {
		if _, ok := mine[k]; !ok {
			t.Errorf("status JSON lacks %q: %v", k, mine)
		}
	}
	if mine["state"] != "running" || mine["memory_limit_bytes"] != float64(1<<30) {
		t.Errorf("status %v", mine)
	}
	if secrets, _ := mine["secrets"].([]any); len(secrets) != 1 || secrets[0] != "anthropic_api_key" {
		t.Errorf("secrets %v", mine["secrets"])
	}
	table, _, _ := h.cg("status", sb.name)
	if !strings.Contains(table, "NAME") || !strings.Contains(table, sb.name) || !strings.Contains(table, "running") {
		t.Errorf("table:\n%s", table)
	}
}

// TestSystemdUnitsVerify runs systemd-analyze verify on the shipped units,
// pointed at the binary under test.
func TestSystemdUnitsVerify(t *testing.T) {
	h := env
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for unit, as := range map[string]string{"clawguard@.service": "clawguard@openclaw.service", "clawguard.service": "clawguard.service"} {
		t.Run(unit, func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", unit))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), as)
			if err := os.WriteFile(path, bytes.ReplaceAll(text, []byte("/usr/local/bin/clawguard"), []byte(h.bin)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
			}
		})
	}
}
