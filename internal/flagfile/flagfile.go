// Package flagfile reads a command's flags from a TOML file: `key = value` lines whose
// keys are flag names (dashes or underscores), with strings, numbers, booleans and
// arrays of strings; comments (#) and [section] headers (which only group) allowed.
// It is the subset of TOML a flag file needs; flags given on the command line win.
package flagfile

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// Apply sets every flag named in the file that was not set on the command line. It
// fails naming the file, the line and the key for an unknown flag or a bad value.
func Apply(path string, flags *pflag.FlagSet) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(stripComment(sc.Text()))
		if text == "" || strings.HasPrefix(text, "[") {
			continue
		}
		key, raw, ok := strings.Cut(text, "=")
		if !ok {
			return fmt.Errorf("%s:%d: %q is not `key = value`", path, line, text)
		}
		name := strings.ReplaceAll(strings.TrimSpace(key), "_", "-")
		fl := flags.Lookup(name)
		if fl == nil {
			return fmt.Errorf("%s:%d: unknown setting %q (settings are the command's flags, e.g. steps = 1000)", path, line, name)
		}
		if fl.Changed {
			continue
		}
		values, err := parseValue(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("%s:%d: %s: %v", path, line, name, err)
		}
		for _, v := range values {
			if err := flags.Set(name, v); err != nil {
				return fmt.Errorf("%s:%d: %s = %s: %v", path, line, name, raw, err)
			}
		}
	}
	return sc.Err()
}

// stripComment removes a # comment outside double quotes.
func stripComment(s string) string {
	in := false
	for i, r := range s {
		switch {
		case r == '"':
			in = !in
		case r == '#' && !in:
			return s[:i]
		}
	}
	return s
}

// parseValue returns a TOML value as flag strings (several for an array).
func parseValue(raw string) ([]string, error) {
	switch {
	case strings.HasPrefix(raw, "["):
		if !strings.HasSuffix(raw, "]") {
			return nil, fmt.Errorf("array %s is not closed on its line", raw)
		}
		var out []string
		for _, item := range splitTop(raw[1 : len(raw)-1]) {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			v, err := parseValue(item)
			if err != nil {
				return nil, err
			}
			out = append(out, v...)
		}
		return out, nil
	case strings.HasPrefix(raw, `"`):
		s, err := strconv.Unquote(raw)
		if err != nil {
			return nil, fmt.Errorf("string %s: %v", raw, err)
		}
		return []string{s}, nil
	case strings.HasPrefix(raw, "'"):
		if len(raw) < 2 || !strings.HasSuffix(raw, "'") {
			return nil, fmt.Errorf("literal string %s is not closed", raw)
		}
		return []string{raw[1 : len(raw)-1]}, nil
	case raw == "":
		return nil, fmt.Errorf("no value")
	}
	return []string{raw}, nil // numbers and booleans as written
}

// splitTop splits array items at commas outside quotes.
func splitTop(s string) []string {
	var out []string
	in, start := byte(0), 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case in != 0 && c == in:
			in = 0
		case in == 0 && (c == '"' || c == '\''):
			in = c
		case in == 0 && c == ',':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
