package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/journal"
)

// underJournal reports whether stderr is systemd's journal stream (systemd
// sets JOURNAL_STREAM to its device:inode).
func underJournal() bool {
	js := os.Getenv("JOURNAL_STREAM")
	if js == "" || !journal.Enabled() {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		return false
	}
	return js == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// journalHandler sends each record to the journal with its attributes as
// fields (SANDBOX=openclaw, ERROR=...), so `journalctl SANDBOX=openclaw`
// finds a sandbox's lines.
type journalHandler struct {
	level slog.Leveler
	attrs []slog.Attr
	group string
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{"SYSLOG_IDENTIFIER": "clawguard"}
	add := func(a slog.Attr) {
		key := strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(h.group + a.Key))
		vars[key] = a.Value.String()
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	prio := journal.PriInfo
	switch {
	case r.Level >= slog.LevelError:
		prio = journal.PriErr
	case r.Level >= slog.LevelWarn:
		prio = journal.PriWarning
	case r.Level < slog.LevelInfo:
		prio = journal.PriDebug
	}
	return journal.Send(r.Message, prio, vars)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.group = h.group + name + "_"
	return &n
}
