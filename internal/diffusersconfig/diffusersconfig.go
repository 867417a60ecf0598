package diffusersconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
)

// Load reads the config.json at path and parses it with parse. Its errors start with
// what ("unet config"), followed by the path when parse fails.
func Load[C any](path, what string, parse func([]byte) (C, error)) (C, error) {
	var zero C
	raw, err := os.ReadFile(path)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", what, err)
	}
	c, err := parse(raw)
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return c, nil
}

// Fields are the members of a config.json object, undecoded.
type Fields map[string]json.RawMessage

// Parse splits a config.json into its fields. It fails when data is not a JSON
// object.
func Parse(data []byte) (Fields, error) {
	var f Fields
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return f, nil
}

// IsNull reports whether field key is absent or null, as diffusers reads both: the
// default applies.
func (f Fields) IsNull(key string) bool {
	v, ok := f[key]
	return !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// Get decodes field key into dst (a pointer) unless the field is absent or null. It
// fails, naming the field and the type wanted, when the value does not decode.
func (f Fields) Get(key string, dst any) error {
	if f.IsNull(key) {
		return nil
	}
	if err := json.Unmarshal(f[key], dst); err != nil {
		return fmt.Errorf("field %q: %s is not a %s", key, f[key], reflect.TypeOf(dst).Elem())
	}
	return nil
}

// Unknown fails on the fields for which known is false, listing them sorted, as not
// belonging to a diffusers v0.27 config of class (such as "AutoencoderKL").
// Underscored metadata such as _class_name and _diffusers_version is always known.
func (f Fields) Unknown(class string, known func(key string) bool) error {
	var bad []string
	for k := range f {
		if !strings.HasPrefix(k, "_") && !known(k) {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("unknown field(s) %q: this is not a diffusers v0.27 %s config difftune can build", bad, class)
}
