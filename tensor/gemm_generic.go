//go:build !amd64 || purego

package tensor

// availableKernels lists the micro-kernels usable in this build: only the pure-Go one.
func availableKernels() []*microKernel {
	return []*microKernel{kernelGo}
}

// callKernel runs kern's micro-kernel on one full MR×NR tile.
func callKernel(kern *microKernel, k int, a, b, c *float32, ldc int, alpha, beta float32) {
	sgemmKernelGo(k, a, b, c, ldc, alpha, beta)
}

// transposeFast has no portable fast path: it leaves all columns to the caller.
func transposeFast(dst []float32, ldd int, src []float32, lds, rows, kc int) (done int) {
	return 0
}

// bf16Kernel: no bfloat16 pair kernel in this build (GemmBF16 rounds, then runs Go's).
func bf16Kernel() *microKernel { return nil }

// bf16Pairs is never called without a pair kernel.
func bf16Pairs(dst, src []float32, w, pairs int) { bf16PairsGo(dst, src, w, pairs) }
