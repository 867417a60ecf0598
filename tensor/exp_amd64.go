//go:build !purego

package tensor

//go:noescape
func expShiftAVX512(s *float32, n int, m float32) float32

// kernelExpShift overwrites s[i] with exp(s[i] − m) and returns the float32 sum of
// the results: the AVX-512 kernel for whole groups of 16 where the CPU has it, then
// kernelExpShiftGo for the rest. The assembly fuses the Cody–Waite steps, so its
// results may differ from the Go code's by an ulp (TestKernelExpShiftAVX512); the
// accuracy against math.Exp is the same (TestKernelExpf).
func kernelExpShift(s []float32, m float32) float32 {
	n := 0
	var sum float32
	if cpu.avx512F && len(s) >= 16 {
		n = len(s) &^ 15
		sum = expShiftAVX512(&s[0], n, m)
	}
	return sum + kernelExpShiftGo(s[n:], m)
}
