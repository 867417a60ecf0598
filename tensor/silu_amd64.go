//go:build !purego

package tensor

//go:noescape
func siluAVX512(out, x *float32, n int)

//go:noescape
func siluBackwardAVX512(dx, dout, x *float32, n int)

// siluFast computes SiLU of the longest prefix of x whose length is a multiple of 16
// into out with the AVX-512 kernel, where the CPU has it, and returns that length (0
// without AVX-512). The results are siluForward's.
func siluFast(out, x []float32) int {
	n := len(x) &^ 15
	if !cpu.avx512F || n == 0 {
		return 0
	}
	_, _ = out[n-1], x[n-1]
	siluAVX512(&out[0], &x[0], n)
	return n
}

// siluBackwardFast is siluFast for siluBackward: dx += dout·SiLU'(x) over the prefix
// it returns.
func siluBackwardFast(dx, dout, x []float32) int {
	n := len(x) &^ 15
	if !cpu.avx512F || n == 0 {
		return 0
	}
	_, _, _ = dx[n-1], dout[n-1], x[n-1]
	siluBackwardAVX512(&dx[0], &dout[0], &x[0], n)
	return n
}
