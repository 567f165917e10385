package verify

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tailscale/hujson"
)

// AgentConfig locates the agent's configuration inside the sandbox and
// says what it may contain.
type AgentConfig struct {
	// ConfigPath is OpenClaw's openclaw.json; ApprovalsPath the exec
	// approvals document the sandbox loads at start.
	ConfigPath    string
	ApprovalsPath string
	// Allowed are the command patterns the change log accounts for.
	Allowed []string
}

// Files lists the agent files the probe must read back.
func (a AgentConfig) Files() []string {
	var out []string
	for _, p := range []string{a.ConfigPath, a.ApprovalsPath} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func openClawChecks() []Check {
	oc := func(id, risks, title, proves string, fn func(e Expect, r Report, cfg, appr map[string]any) (Status, string, string)) Check {
		return Check{ID: id, Risks: risks, Title: title, Proves: proves, agent: "openclaw", judge: func(e Expect, r Report, _ Host) (Status, string, string) {
			cfg, err := readJSON(r, e.AgentConfig.ConfigPath)
			if err != nil {
				return Fail, "a readable configuration", err.Error()
			}
			appr, err := readJSON(r, e.AgentConfig.ApprovalsPath)
			if err != nil {
				return Fail, "a readable exec approvals document", err.Error()
			}
			return fn(e, r, cfg, appr)
		}}
	}
	return []Check{
		oc("openclaw-config", "T1, T10", "OpenClaw configuration read-only", "openclaw.json and the exec approvals are on a read-only mount the agent cannot change", checkOCReadOnly),
		oc("openclaw-exec", "T1, T10", "commands by allowlist, approval on every call", "tools.exec and the approvals defaults say security allowlist, ask always, no fallback to running unapproved", checkOCExec),
		oc("openclaw-allowlist", "T1", "command allowlist matches the change log", "every allowlisted command was recorded with a reason and a risk", checkOCAllowlist),
		oc("openclaw-channels", "T4", "no messaging channels", "no channel is configured", checkOCChannels),
		oc("openclaw-browser", "T8", "no browser automation", "the browser tool is disabled", checkOCBrowser),
		oc("openclaw-skills", "T7", "no skills from ClawHub", "no bundled skill is allowed and every skill or plugin install fails closed", checkOCSkills),
		oc("openclaw-transcripts", "T4, T5, T10", "transcript logging on", "the gateway writes a JSONL log at debug level, which carries the transcripts", checkOCTranscripts),
	}
}

func readJSON(r Report, path string) (map[string]any, error) {
	f, ok := r.Files[path]
	if !ok {
		return nil, fmt.Errorf("%s was not read", path)
	}
	if f.Err != "" {
		return nil, fmt.Errorf("%s: %s", path, f.Err)
	}
	std, err := hujson.Standardize([]byte(f.Content))
	if err != nil {
		return nil, fmt.Errorf("%s: %v (verify reads JSON with comments and trailing commas; quote every key)", path, err)
	}
	var m map[string]any
	if err := json.Unmarshal(std, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return m, nil
}

// get walks a dotted path through nested objects.
func get(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func str(m map[string]any, path string) string {
	v, _ := get(m, path)
	s, _ := v.(string)
	return s
}

func show(m map[string]any, path string) string {
	v, ok := get(m, path)
	if !ok {
		return path + " unset"
	}
	b, _ := json.Marshal(v)
	return path + "=" + string(b)
}

// containing returns the mount a path lives on: the longest target that is
// a prefix of it.
func containing(ms []Mount, path string) (Mount, bool) {
	best, found := Mount{}, false
	for _, m := range ms {
		t := strings.TrimSuffix(m.Target, "/")
		if path == m.Target || strings.HasPrefix(path, t+"/") {
			if !found || len(m.Target) >= len(best.Target) {
				best, found = m, true
			}
		}
	}
	return best, found
}

func checkOCReadOnly(e Expect, r Report, _, _ map[string]any) (Status, string, string) {
	var bad, seen []string
	for _, p := range e.AgentConfig.Files() {
		m, ok := containing(r.Mounts, p)
		if !ok || !slices.Contains(m.Options, "ro") || m.Target == "/" && !e.ReadOnlyRoot {
			bad = append(bad, p+" is writable")
			continue
		}
		seen = append(seen, p+" on "+m.Target+" (ro)")
	}
	if len(bad) > 0 {
		return Fail, "read-only", strings.Join(bad, "; ")
	}
	return Pass, "read-only", strings.Join(seen, "; ")
}

func checkOCExec(_ Expect, _ Report, cfg, appr map[string]any) (Status, string, string) {
	want := "tools.exec security=allowlist ask=always; approvals askFallback=deny autoAllowSkills=false"
	var bad []string
	if _, ok := get(cfg, "tools.exec.mode"); ok {
		// No mode expresses ask=always; a mode replaces the pair.
		bad = append(bad, show(cfg, "tools.exec.mode")+" overrides security/ask")
	}
	if s := str(cfg, "tools.exec.security"); s != "allowlist" {
		bad = append(bad, show(cfg, "tools.exec.security"))
	}
	if s := str(cfg, "tools.exec.ask"); s != "always" {
		bad = append(bad, show(cfg, "tools.exec.ask"))
	}
	scopes := []string{"defaults"}
	if agents, ok := get(appr, "agents"); ok {
		if am, ok := agents.(map[string]any); ok {
			for _, k := range slices.Sorted(maps.Keys(am)) {
				scopes = append(scopes, "agents."+k)
			}
		}
	}
	for _, sc := range scopes {
		for k, w := range map[string]any{"security": "allowlist", "ask": "always", "askFallback": "deny", "autoAllowSkills": false} {
			v, ok := get(appr, sc+"."+k)
			if !ok && sc != "defaults" {
				continue // agents inherit the defaults
			}
			if v != w {
				bad = append(bad, "approvals "+show(appr, sc+"."+k))
			}
		}
	}
	slices.Sort(bad)
	if len(bad) > 0 {
		return Fail, want, strings.Join(bad, "; ")
	}
	return Pass, want, "as expected, in both"
}

func checkOCAllowlist(e Expect, _ Report, _, appr map[string]any) (Status, string, string) {
	var patterns, extra []string
	agents, _ := get(appr, "agents")
	am, _ := agents.(map[string]any)
	for _, id := range slices.Sorted(maps.Keys(am)) {
		list, _ := get(am, id+".allowlist")
		items, _ := list.([]any)
		for _, it := range items {
			entry, _ := it.(map[string]any)
			p, _ := entry["pattern"].(string)
			patterns = append(patterns, p)
			if !slices.Contains(e.AgentConfig.Allowed, p) {
				extra = append(extra, fmt.Sprintf("%q (agent %s)", p, id))
			}
		}
	}
	want := fmt.Sprintf("only the %d patterns of the change log", len(e.AgentConfig.Allowed))
	if len(extra) > 0 {
		return Fail, want, "not in the change log: " + strings.Join(extra, ", ") + " (record it with `clawguard allowlist add`)"
	}
	return Pass, want, strings.Join(patterns, " ")
}

func checkOCChannels(_ Expect, _ Report, cfg, _ map[string]any) (Status, string, string) {
	v, _ := get(cfg, "channels")
	m, _ := v.(map[string]any)
	var on []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == "defaults" {
			continue
		}
		if en, ok := get(m, k+".enabled"); ok && en == false {
			continue
		}
		on = append(on, k)
	}
	if len(on) > 0 {
		return Fail, "none", "configured: " + strings.Join(on, ", ")
	}
	return Pass, "none", "none configured"
}

func checkOCBrowser(_ Expect, _ Report, cfg, _ map[string]any) (Status, string, string) {
	v, _ := get(cfg, "browser.enabled")
	return verdict(v == false, "browser.enabled=false", show(cfg, "browser.enabled"))
}

func checkOCSkills(_ Expect, _ Report, cfg, _ map[string]any) (Status, string, string) {
	want := "skills.allowBundled=[], security.installPolicy enabled without an approving command"
	var bad []string
	v, ok := get(cfg, "skills.allowBundled")
	if l, isList := v.([]any); !ok || !isList || len(l) > 0 {
		bad = append(bad, show(cfg, "skills.allowBundled"))
	}
	if en, _ := get(cfg, "security.installPolicy.enabled"); en != true {
		bad = append(bad, show(cfg, "security.installPolicy.enabled"))
	}
	if _, ok := get(cfg, "security.installPolicy.exec"); ok {
		bad = append(bad, "security.installPolicy.exec set: a command may approve installs")
	}
	if len(bad) > 0 {
		return Fail, want, strings.Join(bad, "; ")
	}
	return Pass, want, "installs fail closed"
}

func checkOCTranscripts(_ Expect, _ Report, cfg, _ map[string]any) (Status, string, string) {
	lvl, file := str(cfg, "logging.level"), str(cfg, "logging.file")
	ok := (lvl == "debug" || lvl == "trace") && file != ""
	return verdict(ok, "logging.level debug or trace, logging.file set", show(cfg, "logging.level")+", "+show(cfg, "logging.file"))
}
