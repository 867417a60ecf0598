//go:build !purego

package tensor

// The assembly row kernels of rows.go (rows_amd64.s); n is a multiple of 16 and the
// byte steps (wStep, bStep: 32 or 0; pbStep: 64 or 0) say whether an operand advances
// by 8 elements per 8 processed or stays put (a broadcast operand).

var rowsAVX512 = cpu.avx512F

//go:noescape
func sum64AVX512(x *float32, n int) float64

//go:noescape
func centredSq64AVX512(x *float32, n int, mu float64) float64

//go:noescape
func gradSums64AVX512(dout, x, w *float32, n, wStep int, mu float64) (s1, s2 float64)

//go:noescape
func normRowAVX512(out, x, w, b *float32, n, wStep, bStep int, mu, r float64)

//go:noescape
func normDxRowAVX512(dx, dout, x, w *float32, n, wStep int, mu, r, a, bb float64)

//go:noescape
func normPartRowAVX512(pw, pb *float64, dout, x *float32, n, pbStep int, mu, r float64)

//go:noescape
func axpyAVX512(d, x *float32, n int, a float32)

//go:noescape
func adamWAVX512(p, grad, m, v *float32, n int, b1, b2, eps, decay, stepSize, rc2 float32)

//go:noescape
func binaryRowAVX512(op int, o, x, y *float32, n, xStep, yStep int)

//go:noescape
func mulAddAVX512(o, x, y, z *float32, n int, c float32)

//go:noescape
func mulAccAVX512(d, x, y *float32, n int, c float32)

//go:noescape
func accMul64AVX512(a *float64, x, y *float32, n int, mul bool)
