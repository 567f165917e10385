package profiles

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tailscale/hujson"
	"golang.org/x/sys/unix"
)

// AgentOpenClaw is the agent value of profiles that run OpenClaw: verify
// then also judges OpenClaw's own configuration.
const AgentOpenClaw = "openclaw"

// Where an OpenClaw sandbox finds its configuration: a read-only mount of
// the profile's config directory, named by OPENCLAW_CONFIG_PATH.
const (
	OpenClawConfigDir     = "/etc/openclaw"
	OpenClawConfigPath    = OpenClawConfigDir + "/openclaw.json"
	OpenClawApprovalsPath = OpenClawConfigDir + "/exec-approvals.json"
	// ApprovalsFile is the approvals document's name in the config
	// directory on the host.
	ApprovalsFile = "exec-approvals.json"
)

// OpenClawStateDir is where OpenClaw keeps its databases, sessions and log:
// the one writable mount an OpenClaw sandbox has besides the workspace.
const OpenClawStateDir = "/home/node/.openclaw"

// OpenClaw's measured appetite: the gateway idles at about 650 MiB RSS and
// users report 1.4-1.6 GB peaks; below OpenClawComfortableMemory run warns.
const OpenClawComfortableMemory = 1536 << 20

// NodeHeapMiB is the V8 old-space limit for an agent given memoryBytes: 5/8
// of the limit, leaving the rest for code, buffers and native memory, so
// Node collects garbage harder instead of the kernel killing it.
func NodeHeapMiB(memoryBytes int64) int64 { return memoryBytes * 5 / 8 >> 20 }

// ChangeLogFile is the command allowlist's change log, kept beside the
// profile: every command in the allowlist needs a row here.
const ChangeLogFile = "allowlist-changes.md"

// BaselineCommands is the allowlist every OpenClaw sandbox starts from:
// read-only or informational commands. OpenClaw matches executables, so
// "pip" stands for the baseline's "pip list"; approval on every call is
// what keeps it to listing.
var BaselineCommands = []string{"ls", "cat", "head", "tail", "wc", "echo", "python3", "pip", "env"}

// ChangeLogHeader starts a new change log.
const ChangeLogHeader = `# Command allowlist change log

Every change to the OpenClaw command allowlist (exec-approvals.json in the
config directory), oldest first. ` + "`clawguard allowlist add|remove`" + ` appends the
rows; ` + "`clawguard verify`" + ` fails on an allowlisted command without one.

| Date | Change | Commands | Reason | Risk assessment |
|------|--------|----------|--------|-----------------|
`

// ChangeRow is one row of the change log.
type ChangeRow struct {
	Date     time.Time
	Change   string // baseline, add or remove
	Commands []string
	Reason   string
	Risk     string
}

// String renders the row as a Markdown table line.
func (r ChangeRow) String() string {
	esc := func(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "|", `\|`) }
	return fmt.Sprintf("| %s | %s | %s | %s | %s |\n", r.Date.Format(time.DateOnly), r.Change,
		esc(strings.Join(r.Commands, ", ")), esc(r.Reason), esc(r.Risk))
}

// BaselineRow is the first row of every change log.
func BaselineRow(now time.Time) ChangeRow {
	return ChangeRow{Date: now, Change: "baseline", Commands: BaselineCommands,
		Reason: "Baseline safe exploration set", Risk: "Low: read-only or informational"}
}

// ChangeLogPath is where p's change log lives.
func ChangeLogPath(p *Profile) string { return p.Path(ChangeLogFile) }

// AllowedCommands replays p's change log: the commands its allowlist may
// hold. Without a change log only the baseline is allowed.
//
// The log is read beneath the profile's directory with no link on the way,
// and only if it is a regular file: verify reads it as root, on behalf of
// anyone in the socket group, and whoever owns the directory could
// otherwise point it at a FIFO (verify hangs), a device or a file of
// someone else's.
func AllowedCommands(p *Profile) ([]string, error) {
	dir, err := openNoLinks(unix.AT_FDCWD, p.Dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, fmt.Errorf("open the profile's directory %s: %w", p.Dir, err)
	}
	defer unix.Close(dir)
	b, err := ReadBeneath(dir, ChangeLogFile, MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return slices.Clone(BaselineCommands), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the allowlist change log: %w", err)
	}
	var allowed []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		row, ok, err := parseChangeRow(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", ChangeLogPath(p), line, err)
		}
		if !ok {
			continue
		}
		for _, c := range row.Commands {
			allowed = slices.DeleteFunc(allowed, func(a string) bool { return a == c })
			if row.Change != "remove" {
				allowed = append(allowed, c)
			}
		}
	}
	return allowed, sc.Err()
}

// parseChangeRow reads one table line; other lines (text, the header and
// its rule) are not rows.
func parseChangeRow(line string) (ChangeRow, bool, error) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|--") || strings.HasPrefix(line, "| Date") {
		return ChangeRow{}, false, nil
	}
	cells := strings.Split(strings.Trim(line, "|"), " | ")
	if len(cells) < 5 {
		return ChangeRow{}, false, fmt.Errorf("a row needs five cells: date, change, commands, reason, risk")
	}
	d, err := time.Parse(time.DateOnly, strings.TrimSpace(cells[0]))
	if err != nil {
		return ChangeRow{}, false, fmt.Errorf("date %q: want YYYY-MM-DD", strings.TrimSpace(cells[0]))
	}
	row := ChangeRow{Date: d, Change: strings.TrimSpace(cells[1]), Reason: cells[3], Risk: cells[4]}
	switch row.Change {
	case "baseline", "add", "remove":
	default:
		return ChangeRow{}, false, fmt.Errorf("change %q: want baseline, add or remove", row.Change)
	}
	for _, c := range strings.Split(cells[2], ",") {
		if c = strings.TrimSpace(c); c != "" {
			row.Commands = append(row.Commands, c)
		}
	}
	return row, true, nil
}

// OpenClawConfigSource is the host directory p mounts as OpenClaw's
// configuration, or "" if it mounts none.
func OpenClawConfigSource(p *Profile) string {
	for _, m := range p.Mounts {
		if m.Target == OpenClawConfigDir {
			return p.Path(m.Source)
		}
	}
	return ""
}

// Allowlist returns the command patterns of every agent in the approvals
// document under dir, each once.
func Allowlist(dir string) ([]string, error) {
	doc, err := readApprovals(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, agent := range doc.Agents {
		for _, e := range agent.Allowlist {
			if !slices.Contains(out, e.Pattern) {
				out = append(out, e.Pattern)
			}
		}
	}
	return out, nil
}

// approvals is the part of OpenClaw's exec approvals document clawguard
// reads; editing goes through JSON patches so everything else, comments
// included, stays as written.
type approvals struct {
	Agents map[string]struct {
		Allowlist []approvalEntry `json:"allowlist"`
	} `json:"agents"`
}

type approvalEntry struct {
	Pattern string `json:"pattern"`
}

func approvalsPath(dir string) string { return filepath.Join(dir, ApprovalsFile) }

func readApprovals(dir string) (*approvals, error) {
	v, err := readHuJSON(approvalsPath(dir))
	if err != nil {
		return nil, err
	}
	std := v.Clone()
	std.Standardize()
	var doc approvals
	if err := json.Unmarshal(std.Pack(), &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", approvalsPath(dir), err)
	}
	return &doc, nil
}

func readHuJSON(path string) (hujson.Value, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return hujson.Value{}, fmt.Errorf("read %s: %w", path, err)
	}
	v, err := hujson.Parse(b)
	if err != nil {
		return hujson.Value{}, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// EditAllowlist adds pattern to (or removes it from) every agent's
// allowlist in the approvals document under dir, and reports whether the
// document changed. Agents with no allowlist get one on add; a document
// with no agents gets the "*" agent.
func EditAllowlist(dir, pattern string, add bool) (bool, error) {
	doc, err := readApprovals(dir)
	if err != nil {
		return false, err
	}
	v, err := readHuJSON(approvalsPath(dir))
	if err != nil {
		return false, err
	}
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value,omitempty"`
	}
	var ops []op
	ptr := func(s string) string { return strings.NewReplacer("~", "~0", "/", "~1").Replace(s) }
	entry := map[string]string{"pattern": pattern}
	if len(doc.Agents) == 0 && add {
		if doc.Agents == nil {
			ops = append(ops, op{Op: "add", Path: "/agents", Value: map[string]any{}})
		}
		ops = append(ops, op{Op: "add", Path: "/agents/*", Value: map[string]any{"allowlist": []any{entry}}})
	}
	ids := make([]string, 0, len(doc.Agents))
	for id := range doc.Agents {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		list := doc.Agents[id].Allowlist
		has := slices.IndexFunc(list, func(e approvalEntry) bool { return e.Pattern == pattern })
		switch {
		case add && has < 0 && list == nil:
			ops = append(ops, op{Op: "add", Path: "/agents/" + ptr(id) + "/allowlist", Value: []any{entry}})
		case add && has < 0:
			ops = append(ops, op{Op: "add", Path: "/agents/" + ptr(id) + "/allowlist/-", Value: entry})
		case !add:
			// Remove from the end so earlier indexes stay valid.
			for i := len(list) - 1; i >= 0; i-- {
				if list[i].Pattern == pattern {
					ops = append(ops, op{Op: "remove", Path: fmt.Sprintf("/agents/%s/allowlist/%d", ptr(id), i)})
				}
			}
		}
	}
	if len(ops) == 0 {
		return false, nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return false, err
	}
	if err := v.Patch(patch); err != nil {
		return false, fmt.Errorf("edit %s: %w", approvalsPath(dir), err)
	}
	v.Format()
	return true, writeAtomic(approvalsPath(dir), v.Pack())
}

// AppendChange appends a row to p's change log, starting the log (header
// and baseline row) if there is none.
func AppendChange(p *Profile, row ChangeRow) error {
	path := ChangeLogPath(p)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open the change log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var b strings.Builder
	if st.Size() == 0 {
		b.WriteString(ChangeLogHeader)
		b.WriteString(BaselineRow(row.Date).String())
	}
	b.WriteString(row.String())
	if _, err := f.WriteString(b.String()); err != nil {
		return fmt.Errorf("append to the change log %s: %w", path, err)
	}
	return f.Sync()
}

func writeAtomic(path string, data []byte) error {
	fi, err := os.Stat(path)
	mode := os.FileMode(0o644)
	if err == nil {
		mode = fi.Mode().Perm()
	}
	tmp := path + ".clawguard-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}
