package profiles

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ParseSize reads sizes the way container tools write them: a number with an
// optional k, m, g or t suffix (binary multiples; "i" and "b" are accepted and
// ignored, so 1G, 1g, 1Gi and 1GB all mean 1 GiB). A bare number is bytes.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	t = strings.TrimSuffix(t, "i")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || t == "" {
		return 0, fmt.Errorf("%q is not a size: write a number with k, m, g or t, e.g. 512m or 1G", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	if v*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v * float64(mult)), nil
}

// FormatSize writes a byte count back in the largest exact unit.
func FormatSize(b int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if b >= u.mult && b%u.mult == 0 {
			return strconv.FormatInt(b/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(b, 10)
}

func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a size such as 512m or 1G", n.Line)
	}
	b, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	s.Bytes, s.given = b, true
	return nil
}

func (s Size) MarshalJSON() ([]byte, error) { return json.Marshal(FormatSize(s.Bytes)) }
func (s Size) String() string               { return FormatSize(s.Bytes) }

func (s *Size) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	s.Bytes, s.given = n, true
	return nil
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration such as 10s or 1m", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration: write e.g. 30s, 5m or 1h", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.Duration.String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration", s)
	}
	d.Duration = v
	return nil
}
