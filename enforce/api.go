package enforce

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/clawguard/clawguard/profiles"
)

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

func decodeRunRequest(body io.Reader) (RunRequest, error) {
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

// maxBlockedProbes bounds what one verify may be asked to dial.
const maxBlockedProbes = 32

func decodeVerifyRequest(body io.Reader) (VerifyRequest, error) {
	var req VerifyRequest
	if err := decodeStrict(body, &req, true); err != nil {
		return req, fmt.Errorf("verify request: %w", err)
	}
	if len(req.BlockedProbes) > maxBlockedProbes {
		return req, fmt.Errorf("verify request: %d blocked probes; at most %d", len(req.BlockedProbes), maxBlockedProbes)
	}
	if req.TimeoutMs < 0 || req.TimeoutMs > int(time.Minute/time.Millisecond) {
		return req, fmt.Errorf("verify request: timeout_ms %d out of range (0 for the default, at most 60000)", req.TimeoutMs)
	}
	return req, nil
}
