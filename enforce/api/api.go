// Package api is the daemon's JSON API: the requests and answers the
// daemon serves on its socket and the CLI sends, and the strict decoding of
// the requests. It knows nothing of how a sandbox is run.
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/clawguard/clawguard/profiles"
)

// MaxRequestBody caps every request body: the largest real one is a run
// request with two paths.
const MaxRequestBody = 1 << 20

// Decoding of the API's request bodies: strict (unknown fields, trailing
// data and wrong types are errors) and checked, so a handler only ever sees
// a request it can act on. Fuzzed in api_test.go.

// decodeStrict reads exactly one JSON value into v; an empty body leaves v
// at its zero value when emptyOK.
func decodeStrict(body io.Reader, v any, emptyOK bool) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) && emptyOK {
			return nil
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the request")
	}
	return nil
}

// DecodeRunRequest reads a run request strictly and checks its name.
func DecodeRunRequest(body io.Reader) (RunRequest, error) {
	var req RunRequest
	if err := decodeStrict(body, &req, false); err != nil {
		return req, fmt.Errorf("run request: %w", err)
	}
	if req.Name != "" {
		if err := profiles.ValidName(req.Name); err != nil {
			return req, fmt.Errorf("run request: %w", err)
		}
	}
	for field, v := range map[string]string{"profile": req.Profile, "dir": req.Dir, "image": req.Image} {
		if strings.ContainsRune(v, 0) {
			return req, fmt.Errorf("run request: %s contains a NUL byte", field)
		}
	}
	return req, nil
}

// MaxBlockedProbes bounds what one verify may be asked to dial.
const MaxBlockedProbes = 32

// DecodeVerifyRequest reads a verify request strictly, within bounds.
func DecodeVerifyRequest(body io.Reader) (VerifyRequest, error) {
	var req VerifyRequest
	if err := decodeStrict(body, &req, true); err != nil {
		return req, fmt.Errorf("verify request: %w", err)
	}
	if len(req.BlockedProbes) > MaxBlockedProbes {
		return req, fmt.Errorf("verify request: %d blocked probes; at most %d", len(req.BlockedProbes), MaxBlockedProbes)
	}
	if req.TimeoutMs < 0 || req.TimeoutMs > int(time.Minute/time.Millisecond) {
		return req, fmt.Errorf("verify request: timeout_ms %d out of range (0 for the default, at most 60000)", req.TimeoutMs)
	}
	return req, nil
}

// API types, shared with the CLI.
type (
	// RunRequest starts a sandbox in the daemon.
	RunRequest struct {
		Profile string `json:"profile,omitempty"` // absolute path; empty for the built-in default
		Dir     string `json:"dir"`               // where the built-in profile's relative paths start
		Name    string `json:"name,omitempty"`
		Image   string `json:"image,omitempty"`
	}
	// RunResponse describes the started sandbox.
	RunResponse struct {
		Name   string  `json:"name"`
		Pid    uint32  `json:"pid"`
		IP     string  `json:"ip"`
		User   string  `json:"user"` // UID:GID the agent runs as
		TookMs float64 `json:"took_ms"`
	}
	// APIError is every error the API returns.
	APIError struct {
		Error   string                `json:"error"`
		Profile []profiles.FieldError `json:"profile_errors,omitempty"`
	}
)

// VerifyRequest is the body of POST /v1/sandboxes/{name}/verify.
type VerifyRequest struct {
	BlockedProbes []string `json:"blocked_probes,omitempty"`
	TimeoutMs     int      `json:"timeout_ms,omitempty"`
}

// Health is the daemon's own state, for operators and leak checks.
type Health struct {
	Sandboxes  int      `json:"sandboxes"`
	Goroutines int      `json:"goroutines"`
	OpenFiles  int      `json:"open_files"`
	Flapping   []string `json:"flapping,omitempty"`
}
