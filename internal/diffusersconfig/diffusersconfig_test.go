package diffusersconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFields decodes, skips and refuses fields as the model packages rely on.
func TestFields(t *testing.T) {
	f, err := Parse([]byte(`{"a": 3, "b": null, "c": "x", "_class_name": "M", "odd": 1, "alsoodd": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		null bool
	}{{"a", false}, {"b", true}, {"absent", true}} {
		if got := f.IsNull(tc.key); got != tc.null {
			t.Errorf("IsNull(%q) = %t, want %t", tc.key, got, tc.null)
		}
	}
	n := 7
	if err := f.Get("b", &n); err != nil || n != 7 {
		t.Errorf("Get of a null field: %d, %v; want the default 7 kept", n, err)
	}
	if err := f.Get("a", &n); err != nil || n != 3 {
		t.Errorf("Get(a) = %d, %v; want 3", n, err)
	}
	if err := f.Get("c", &n); err == nil || err.Error() != `field "c": "x" is not a int` {
		t.Errorf("Get of a string into an int: %v", err)
	}
	known := func(k string) bool { return len(k) == 1 }
	err = f.Unknown("M", known)
	if want := `unknown field(s) ["alsoodd" "odd"]: this is not a diffusers v0.27 M config difftune can build`; err == nil || err.Error() != want {
		t.Errorf("Unknown = %v, want %s", err, want)
	}
	if _, err := Parse([]byte(`[1]`)); err == nil || !strings.HasPrefix(err.Error(), "not a JSON object") {
		t.Errorf("Parse of an array: %v", err)
	}
}

// TestLoad checks that Load's errors name what was read and, for content errors,
// the file.
func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`[]`), 0o644); err != nil {
		t.Fatal(err)
	}
	parse := func(data []byte) (Fields, error) { return Parse(data) }
	if _, err := Load(path, "m config", parse); err == nil || !strings.HasPrefix(err.Error(), "m config "+path+": not a JSON object") {
		t.Errorf("Load of a bad file: %v", err)
	}
	if _, err := Load(path+".missing", "m config", parse); err == nil || !strings.HasPrefix(err.Error(), "m config: ") {
		t.Errorf("Load of a missing file: %v", err)
	}
}
