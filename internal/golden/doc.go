// Package golden locates the reference outputs in ../shared/golden for parity tests
// and compares tensors against them, reporting the worst element.
package golden
