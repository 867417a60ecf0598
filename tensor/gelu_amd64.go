//go:build !purego

package tensor

//go:noescape
func geluTanhAVX512(out, x *float32, n int)

//go:noescape
func geluTanhBackwardAVX512(dx, dout, x *float32, n int)

// geluTanhFast computes the tanh GELU of the longest prefix of x whose length is a
// multiple of 16 into out with the AVX-512 kernel, where the CPU has it, and returns
// that length (0 without AVX-512). The results are geluForward's.
func geluTanhFast(out, x []float32) int {
	n := len(x) &^ 15
	if !cpu.avx512F || n == 0 {
		return 0
	}
	_, _ = out[n-1], x[n-1]
	geluTanhAVX512(&out[0], &x[0], n)
	return n
}

// geluTanhBackwardFast is geluTanhFast for geluBackward: dx += dout·GELU'(x) over the
// prefix it returns.
func geluTanhBackwardFast(dx, dout, x []float32) int {
	n := len(x) &^ 15
	if !cpu.avx512F || n == 0 {
		return 0
	}
	_, _, _ = dx[n-1], dout[n-1], x[n-1]
	geluTanhBackwardAVX512(&dx[0], &dout[0], &x[0], n)
	return n
}
