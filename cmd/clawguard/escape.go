package main

import (
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal (the same ioctl x/term uses).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// agentOutput is where the agent's output goes: w itself, or, when w is a
// terminal and raw is not asked for, w through a controlEscaper. Call flush
// when done.
func agentOutput(w io.Writer, raw bool) (out io.Writer, flush func()) {
	if f, ok := w.(*os.File); ok && !raw && isTerminal(f) {
		e := &controlEscaper{w: f}
		return e, func() { _ = e.Flush() }
	}
	return w, func() {}
}

// controlEscaper makes what the agent wrote safe to show on the operator's
// terminal: escape sequences could retitle it, rewrite earlier lines, hide
// text or, on some terminals, answer back as if typed. Every C0 and C1
// control but newline and tab, DEL and every byte that is not UTF-8 is
// written as a visible \xNN or \u00NN instead. Output may arrive in any
// pieces, so an incomplete UTF-8 sequence at the end of a write waits for the
// next.
type controlEscaper struct {
	w       io.Writer
	pending []byte
}

func (e *controlEscaper) Write(p []byte) (int, error) {
	b := append(e.pending, p...)
	e.pending = nil
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(b) {
				e.pending = append([]byte(nil), b...)
				break
			}
			out = fmt.Appendf(out, `\x%02x`, b[0])
			b = b[1:]
			continue
		}
		switch {
		case r == '\n' || r == '\t':
			out = append(out, byte(r))
		case r < 0x20 || r == 0x7f:
			out = fmt.Appendf(out, `\x%02x`, r)
		case r >= 0x80 && r < 0xa0:
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	if _, err := e.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes an incomplete sequence left at the end of the output.
func (e *controlEscaper) Flush() error {
	if len(e.pending) == 0 {
		return nil
	}
	var out []byte
	for _, c := range e.pending {
		out = fmt.Appendf(out, `\x%02x`, c)
	}
	e.pending = nil
	_, err := e.w.Write(out)
	return err
}
