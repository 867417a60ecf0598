package safetensors

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteErrors(t *testing.T) {
	ok := Tensor{Name: "ok", DType: F32, Shape: []int{2}, Data: make([]byte, 8)}
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		path     string // Default: a fresh file in dir.
		tensors  []Tensor
		metadata map[string]string
		want     []string // Fragments of the error besides the path.
	}{
		{
			name:    "duplicate names",
			tensors: []Tensor{ok, {Name: "w", DType: U8, Shape: []int{1}, Data: []byte{1}}, {Name: "w", DType: U8, Shape: []int{1}, Data: []byte{2}}},
			want:    []string{`"w"`, "more than once"},
		},
		{
			name:    "bad data length",
			tensors: []Tensor{ok, {Name: "w", DType: F32, Shape: []int{2, 3}, Data: make([]byte, 20)}},
			want:    []string{`"w"`, "data has 20 bytes", "needs 24"},
		},
		{
			name:    "nil data for non-empty shape",
			tensors: []Tensor{{Name: "w", DType: I64, Shape: []int{}}},
			want:    []string{`"w"`, "needs 8"},
		},
		{
			name:    "unknown dtype",
			tensors: []Tensor{{Name: "w", DType: "F12", Shape: []int{1}, Data: make([]byte, 2)}},
			want:    []string{`"w"`, `"F12" is unknown`},
		},
		{
			name:    "negative dim",
			tensors: []Tensor{{Name: "w", DType: U8, Shape: []int{-1}}},
			want:    []string{`"w"`, "negative"},
		},
		{
			name:    "overflowing shape",
			tensors: []Tensor{{Name: "w", DType: F64, Shape: []int{math.MaxInt, math.MaxInt, math.MaxInt}}},
			want:    []string{`"w"`, "overflows"},
		},
		{
			name:    "empty name",
			tensors: []Tensor{ok, {DType: U8, Shape: []int{1}, Data: []byte{1}}},
			want:    []string{"tensor 1 of 2 has an empty name"},
		},
		{
			name:    "reserved name",
			tensors: []Tensor{{Name: "__metadata__", DType: U8, Shape: []int{1}, Data: []byte{1}}},
			want:    []string{`"__metadata__"`, "reserved"},
		},
		{
			name:    "invalid UTF-8 name",
			tensors: []Tensor{{Name: "w\xff", DType: U8, Shape: []int{1}, Data: []byte{1}}},
			want:    []string{"not valid UTF-8"},
		},
		{
			name:     "invalid UTF-8 metadata",
			tensors:  []Tensor{ok},
			metadata: map[string]string{"k": "\xff"},
			want:     []string{`"__metadata__"`, `"k"`, "not valid UTF-8"},
		},
		{
			// A path below a regular file cannot be created, even by root.
			name:    "unwritable folder",
			path:    filepath.Join(notDir, "x.safetensors"),
			tensors: []Tensor{ok},
			// The OS's wording of the cause varies; the path is checked below.
		},
		{
			name:    "missing folder",
			path:    filepath.Join(dir, "missing", "x.safetensors"),
			tensors: []Tensor{ok},
			want:    []string{"missing"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = filepath.Join(t.TempDir(), "x.safetensors")
			}
			err := Write(path, tc.tensors, tc.metadata)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := os.Stat(path); err == nil {
				t.Errorf("failed Write created %s", path)
			}
		})
	}
}

func TestWriteKeepsOldFileOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.safetensors")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []Tensor{{Name: "w", DType: F32, Shape: []int{1}}}, nil); err == nil {
		t.Fatal("no error")
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("content = %q, want old", b)
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("folder has %d entries, want 1", len(es))
	}
}
