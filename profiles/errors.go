package profiles

import (
	"fmt"
	"strings"
)

// FieldError is one thing wrong with a profile: where, what, and what to do.
type FieldError struct {
	Field   string `json:"field,omitempty"`
	Line    string `json:"line,omitempty"`
	Problem string `json:"problem"`
	Fix     string `json:"fix,omitempty"`
}

func (f FieldError) String() string {
	var b strings.Builder
	if f.Line != "" {
		b.WriteString("line " + f.Line + ": ")
	}
	if f.Field != "" {
		b.WriteString(f.Field + ": ")
	}
	b.WriteString(f.Problem)
	if f.Fix != "" {
		b.WriteString(" (" + f.Fix + ")")
	}
	return b.String()
}

// Error is an invalid profile: every problem found, not just the first.
type Error struct {
	Source string       `json:"source"`
	Fields []FieldError `json:"errors"`
}

func (e *Error) Error() string {
	if len(e.Fields) == 1 {
		return fmt.Sprintf("profile %s is invalid: %s", e.Source, e.Fields[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "profile %s is invalid (%d problems):", e.Source, len(e.Fields))
	for _, f := range e.Fields {
		b.WriteString("\n  - " + f.String())
	}
	return b.String()
}

// HasField reports whether one of the problems is about field (for tests and
// callers that want to react to a specific field).
func (e *Error) HasField(field string) bool {
	for _, f := range e.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

type collector struct{ errs []FieldError }

func (c *collector) add(field, problem, fix string) {
	c.errs = append(c.errs, FieldError{Field: field, Problem: problem, Fix: fix})
}
