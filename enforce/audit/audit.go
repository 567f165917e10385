// Package audit is the append-only JSONL record of what every sandbox was
// denied and what happened to it, kept in the state directory.
package audit

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Event is one line of the audit log: something a sandbox was denied,
// or a lifecycle step. Fields are added, never renamed.
type Event struct {
	Time        time.Time `json:"time"`
	Sandbox     string    `json:"sandbox"`
	Kind        string    `json:"kind"` // started, stopped, denied_packet, refused_query, dropped_answer
	Name        string    `json:"name,omitempty"`
	QueryType   string    `json:"query_type,omitempty"`
	Destination string    `json:"destination,omitempty"`
	Port        uint16    `json:"port,omitempty"`
	Protocol    string    `json:"protocol,omitempty"`
	Reason      string    `json:"reason,omitempty"`
}

// Log appends events as JSON lines to audit.jsonl in the state
// directory. Each event is one write on an O_APPEND file, so lines from
// several clawguard processes do not interleave. Past maxBytes the file is
// rotated to audit.jsonl.1 (one generation kept).
//
// Lifecycle events (a start, a stop, an adoption, a repaired firewall) go
// to lifecycle.jsonl as well. What an agent can cause at will is sampled
// per sandbox, but many sandboxes sampled still fill audit.jsonl as fast as
// they like, and its rotation would push out every sandbox's history with
// their noise; lifecycle.jsonl holds nothing an agent can repeat at will.
type Log struct {
	mu       sync.Mutex
	path     string
	log      *slog.Logger
	maxBytes int64
}

// noise are the kinds of event an agent causes at will.
func noise(kind string) bool {
	switch kind {
	case "denied_packet", "refused_query", "dropped_answer":
		return true
	}
	return false
}

const maxBytes = 10 << 20

// Write appends e about sandbox; failures are logged, never returned: the
// audit log must not stop enforcement.
func (a *Log) Write(sandbox string, e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	e.Sandbox = sandbox
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.append(a.path, b)
	if !noise(e.Kind) {
		a.append(LifecyclePath(filepath.Dir(a.path)), b)
	}
}

// append writes one line to path, rotating it first when it is full.
func (a *Log) append(path string, line []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		a.log.Warn("audit log", "error", err)
		return
	}
	limit := a.maxBytes
	if limit <= 0 {
		limit = maxBytes
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() >= limit {
		if err := os.Rename(path, path+".1"); err != nil {
			a.log.Warn("audit log rotation", "error", err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		a.log.Warn("audit log", "error", err)
		return
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		a.log.Warn("audit log", "error", err)
	}
}

// Path is where the audit log of stateDir is.
func Path(stateDir string) string { return filepath.Join(stateDir, "audit.jsonl") }

// LifecyclePath is where stateDir's lifecycle events are kept apart.
func LifecyclePath(stateDir string) string { return filepath.Join(stateDir, "lifecycle.jsonl") }

// New returns the audit log of stateDir.
func New(stateDir string, log *slog.Logger) *Log { return &Log{path: Path(stateDir), log: log} }
