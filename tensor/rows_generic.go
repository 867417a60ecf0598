//go:build !amd64 || purego

package tensor

// No assembly row kernels in this build: rows.go runs its Go loops. The stubs keep
// rows.go portable; they are unreachable because rowsAVX512 is false.

const rowsAVX512 = false

func sum64AVX512(x *float32, n int) float64                   { panic("unreachable") }
func centredSq64AVX512(x *float32, n int, mu float64) float64 { panic("unreachable") }
func gradSums64AVX512(dout, x, w *float32, n, wStep int, mu float64) (s1, s2 float64) {
	panic("unreachable")
}
func normRowAVX512(out, x, w, b *float32, n, wStep, bStep int, mu, r float64) { panic("unreachable") }
func normDxRowAVX512(dx, dout, x, w *float32, n, wStep int, mu, r, a, bb float64) {
	panic("unreachable")
}
func normPartRowAVX512(pw, pb *float64, dout, x *float32, n, pbStep int, mu, r float64) {
	panic("unreachable")
}
func axpyAVX512(d, x *float32, n int, a float32) { panic("unreachable") }
func adamWAVX512(p, grad, m, v *float32, n int, b1, b2, eps, decay, stepSize, rc2 float32) {
	panic("unreachable")
}
func binaryRowAVX512(op int, o, x, y *float32, n, xStep, yStep int) { panic("unreachable") }
func mulAddAVX512(o, x, y, z *float32, n int, c float32)            { panic("unreachable") }
func mulAccAVX512(d, x, y *float32, n int, c float32)               { panic("unreachable") }
func accMul64AVX512(a *float64, x, y *float32, n int, mul bool)     { panic("unreachable") }
