//go:build !amd64 || purego

package tensor

// hostHasAVX512 is false where only the pure-Go kernel is built.
func hostHasAVX512() bool { return false }
