package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as a Go duration string,
// such as "30s", "5m" or "1h30m".
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does, without zero trailing units
// ("30s", "5m", "24h", "1h30m"), which ParseDuration reads back.
func (d Duration) String() string {
	s := time.Duration(d).String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// MarshalYAML writes d as a string, so a marshalled Config parses again.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string. A bare number is refused rather
// than guessed at: "30" could mean seconds or nanoseconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &valueError{msg: `expected a duration such as "30s", got ` + describe(n)}
	}
	if isNumber(n.Value) {
		example := "30s"
		// "30" -> "30s", not "1e3" -> "1e3s"; nor "0" -> "0s" or "-5"
		// -> "-5s", which every field refuses: the hint would lead to
		// another error.
		if v, err := time.ParseDuration(n.Value + "s"); err == nil && v > 0 {
			example = n.Value + "s"
		}
		return &valueError{msg: fmt.Sprintf("%q has no unit; write e.g. %q", n.Value, example)}
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &valueError{msg: fmt.Sprintf(`%q is not a duration; write a number with a unit `+
			`(ns, us, ms, s, m, h), e.g. "30s" or "1h30m"`, n.Value)}
	}
	*d = Duration(v)
	return nil
}

// isNumber reports whether s is a plain number (not "inf" or "0x1p4").
func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsLetter(r) && r != 'e' && r != 'E'
	})
}

// valueError is a value a field's own unmarshaler refused; its message is
// complete, so checkShape reports it as is.
type valueError struct{ msg string }

func (e *valueError) Error() string { return e.msg }
