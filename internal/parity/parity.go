// Package parity holds the test helpers every parity test shares: open a golden
// safetensors file, read a reference tensor, and compare against it with the worst
// element reported. (Package nn's own tests keep small copies: importing this package
// from nn would be an import cycle.)
package parity

import (
	"slices"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

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
