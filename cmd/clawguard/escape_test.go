package main

import (
	"bytes"
	"testing"
)

func TestControlEscaperShowsWhatTheAgentWroteWithoutObeyingIt(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain text and lines pass", "hello\n\tworld\n", "hello\n\tworld\n"},
		{"UTF-8 passes", "größe ✓\n", "größe ✓\n"},
		{"a colour sequence is shown, not obeyed", "\x1b[31mred", `\x1b[31mred`},
		{"a title change", "\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},
		{"carriage return cannot hide a line", "rm -rf /\rls", `rm -rf /\x0dls`},
		{"backspace and DEL", "a\bb\x7f", `a\x08b\x7f`},
		{"a C1 CSI in UTF-8", "\u009b31m", `\u009b31m`},
		{"a lone invalid byte", "a\xffb", `a\xffb`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			e := &controlEscaper{w: &out}
			if _, err := e.Write([]byte(tt.in)); err != nil {
				t.Fatal(err)
			}
			if err := e.Flush(); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Fatalf("got %q, want %q", out.String(), tt.want)
			}
		})
	}
}

func TestControlEscaperJoinsARuneSplitAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	e := &controlEscaper{w: &out}
	in := []byte("✓\x1b") // three bytes of U+2713, then ESC
	for _, c := range in {
		if n, err := e.Write([]byte{c}); n != 1 || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
	}
	_ = e.Flush()
	if out.String() != `✓\x1b` {
		t.Fatalf("got %q", out.String())
	}
	// A sequence cut off at the very end is shown, not dropped.
	out.Reset()
	_, _ = e.Write([]byte{0xe2, 0x9c})
	_ = e.Flush()
	if out.String() != `\xe2\x9c` {
		t.Fatalf("got %q", out.String())
	}
}

func FuzzControlEscaper(f *testing.F) {
	f.Add([]byte("\x1b[2J\x1b]52;c;cHduZWQ=\x07ok\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		e := &controlEscaper{w: &out}
		// Split at every third byte, as a pipe might.
		for i := 0; i < len(b); i += 3 {
			_, _ = e.Write(b[i:min(i+3, len(b))])
		}
		_ = e.Flush()
		for _, r := range out.String() {
			if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("control %U reached the terminal in %q", r, out.String())
			}
		}
	})
}
