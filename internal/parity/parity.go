// Package parity holds the test helpers every parity test shares: load a golden
// model, open a golden safetensors file, read a reference tensor, and compare against
// it with the worst element reported; read a golden key -> shape manifest and compare
// a model's shapes with it. (Package nn's own tests keep small copies: importing this package
// from nn would be an import cycle.)
package parity

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// Model builds the golden model in golden folder name ("unet", "vae"): its config
// from config.json with loadConfig, the model with newModel, and the weights from
// weights.safetensors. It returns the model, whose parameters are released when the
// test ends, and the folder.
func Model[C any, M nn.Module](t testing.TB, name string, loadConfig func(string) (C, error), newModel func(C) (M, error)) (M, string) {
	t.Helper()
	dir := filepath.Join(golden.Dir(t), name)
	cfg, err := loadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := newModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nn.ReleaseParams(m) })
	if err := nn.LoadFile(m, filepath.Join(dir, "weights.safetensors"), nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m, dir
}

// Open opens a safetensors file for the test's duration.
func Open(t testing.TB, path string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// Read reads a reference tensor as float32; the caller releases it.
func Read(t testing.TB, f *safetensors.File, name string) *tensor.Tensor {
	t.Helper()
	x, err := nn.ReadTensor(f, name)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// Expect fails the test when got differs from want by more than tol of max|want|,
// logging the difference either way; it releases want.
func Expect(t testing.TB, name string, got, want *tensor.Tensor, tol float64) {
	t.Helper()
	defer want.Release()
	if !slices.Equal(got.Shape(), want.Shape()) {
		t.Fatalf("%s: shape %v, want %v", name, got.Shape(), want.Shape())
	}
	d := golden.Compare(got.Float32s(), want.Float32s())
	t.Logf("%s: %v", name, d)
	if d.MaxRel > tol {
		t.Fatalf("%s: %v exceeds %.0e", name, d, tol)
	}
}

// Manifest reads a golden key -> shape map of a real-size model from the golden
// manifests folder.
func Manifest(t testing.TB, name string) map[string][]int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(golden.Dir(t), "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string][]int
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// SameShapes fails the test unless got and want hold the same names with the same
// shapes, reporting every difference under what.
func SameShapes(t testing.TB, what string, got, want map[string][]int) {
	t.Helper()
	for k, s := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: missing %s %v", what, k, s)
		} else if !slices.Equal(g, s) {
			t.Errorf("%s: %s has shape %v, want %v", what, k, g, s)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %s", what, k)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d names, want %d", what, len(got), len(want))
	}
}
