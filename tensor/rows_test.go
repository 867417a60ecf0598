package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// rowSizes cover the assembly's 16-element blocks and the Go tails around them.
var rowSizes = []int{1, 7, 15, 16, 17, 33, 64, 257, 1000}

// randRow returns n values in [-2, 2) starting at offset off of a longer slice, so that
// rows start off the 64-byte boundary too.
func randRow(rng *rand.Rand, n, off int) []float32 {
	s := make([]float32, n+off)
	for i := range s {
		s[i] = float32(rng.Float64()*4 - 2)
	}
	return s[off:]
}

// TestRowReductions: the float64 reductions match plain float64 sums to 1e-12
// relative (they only add in another order; each term is exact in float64 or one
// float64 rounding away), and are deterministic.
func TestRowReductions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	near := func(name string, n int, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
			t.Errorf("%s n=%d: %v, want %v", name, n, got, want)
		}
	}
	for _, n := range rowSizes {
		for _, off := range []int{0, 3} {
			x, g, w := randRow(rng, n, off), randRow(rng, n, off), randRow(rng, n, 1)
			mu, wb := 0.25, []float32{0.7}
			var s, ss, s1, s2, b1, b2 float64
			for i := range x {
				s += float64(x[i])
				ss += (float64(x[i]) - mu) * (float64(x[i]) - mu)
				d := float64(g[i]) * float64(w[i])
				s1 += d
				s2 += d * (float64(x[i]) - mu)
				b1 += float64(g[i]) * float64(wb[0])
				b2 += float64(g[i]) * float64(wb[0]) * (float64(x[i]) - mu)
			}
			near("rowSum64", n, rowSum64(x), s)
			near("rowCentredSq64", n, rowCentredSq64(x, mu), ss)
			got1, got2 := rowGradSums64(g, x, w, 1, mu)
			near("rowGradSums64 s1", n, got1, s1)
			near("rowGradSums64 s2", n, got2, s2)
			got1, got2 = rowGradSums64(g, x, wb, 0, mu)
			near("rowGradSums64 broadcast s1", n, got1, b1)
			near("rowGradSums64 broadcast s2", n, got2, b2)
			if a, b := rowSum64(x), rowSum64(x); a != b {
				t.Errorf("rowSum64 n=%d not deterministic: %v then %v", n, a, b)
			}
		}
	}
}

// TestRowElementwise: the elementwise row kernels (assembly where available) equal
// their Go loops bit for bit, with per-element and broadcast operands.
func TestRowElementwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	same := func(name string, n int, got, want []float32) {
		t.Helper()
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s n=%d: [%d] = %v, Go loop %v", name, n, i, got[i], want[i])
			}
		}
	}
	for _, n := range rowSizes {
		for _, inc := range []int{0, 1} {
			x, g, w, b := randRow(rng, n, 1), randRow(rng, n, 2), randRow(rng, n, 0), randRow(rng, n, 3)
			mu, r, a, bb := 0.3, 1.7, -0.2, 0.05
			out, ref := make([]float32, n), make([]float32, n)
			normRow(out, x, w, inc, b, inc, mu, r)
			normRowGo(ref, x, w, inc, b, inc, mu, r)
			same("normRow", n, out, ref)

			dx, dref := randRow(rng, n, 0), make([]float32, n)
			copy(dref, dx)
			normDxRow(dx, g, x, w, inc, mu, r, a, bb)
			normDxRowGo(dref, g, x, w, inc, mu, r, a, bb)
			same("normDxRow", n, dx, dref)

			d, dr := randRow(rng, n, 0), make([]float32, n)
			copy(dr, d)
			c := float32(inc) + 0.5 // 1.5 and 0.5: a != 1 path; 1 tested below
			axpyRow(d, x, c)
			axpyRowGo(dr, x, c)
			same("axpyRow", n, d, dr)
			axpyRow(d, x, 1)
			axpyRowGo(dr, x, 1)
			same("axpyRow a=1", n, d, dr)
		}
		// normPartRow accumulates float64: equal bit for bit too (same operations).
		x, g := randRow(rng, n, 1), randRow(rng, n, 2)
		pw, pb := make([]float64, n), make([]float64, n)
		rw, rb := make([]float64, n), make([]float64, n)
		for i := range pw {
			pw[i], pb[i] = rng.Float64(), rng.Float64()
			rw[i], rb[i] = pw[i], pb[i]
		}
		normPartRow(pw, pb, g, x, 0.1, 1.3)
		normPartRowGo(rw, rb, g, x, 0.1, 1.3)
		normPartRow(pw, nil, g, x, 0.1, 1.3)
		normPartRowGo(rw, nil, g, x, 0.1, 1.3)
		for i := range pw {
			if pw[i] != rw[i] || pb[i] != rb[i] {
				t.Fatalf("normPartRow n=%d: [%d] = %v, %v; Go loop %v, %v", n, i, pw[i], pb[i], rw[i], rb[i])
			}
		}
	}
}

// TestAdamWUpdate: the kernel equals the Go loop bit for bit and, over three steps,
// follows the float64 AdamW formula to float32 rounding (2e-6 relative, a few ulps of
// accumulated rounding).
func TestAdamWUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	SetThreads(2) // 5·4096+7 elements: five parallel blocks and a tail
	defer SetThreads(0)
	for _, n := range append(rowSizes, 5*4096+7) {
		p, m, v := randRow(rng, n, 1), make([]float32, n), make([]float32, n)
		pr, mr, vr := append([]float32(nil), p...), make([]float32, n), make([]float32, n)
		p64, m64, v64 := make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range p {
			p64[i] = float64(p[i])
		}
		const lr, wd, b1, b2, eps = 1e-2, 0.1, 0.9, 0.999, 1e-8
		for step := 1; step <= 3; step++ {
			g := randRow(rng, n, 2)
			c1, c2 := 1-math.Pow(b1, float64(step)), 1-math.Pow(b2, float64(step))
			args := [6]float32{b1, b2, eps, float32(1 - lr*wd), float32(lr / c1), float32(1 / math.Sqrt(c2))}
			AdamWUpdate(p, g, m, v, args[0], args[1], args[2], args[3], args[4], args[5])
			adamWGo(pr, g, mr, vr, args[0], args[1], args[2], args[3], args[4], args[5])
			for i := range p64 {
				gi := float64(g[i])
				m64[i] = b1*m64[i] + (1-b1)*gi
				v64[i] = b2*v64[i] + (1-b2)*gi*gi
				p64[i] = p64[i]*(1-lr*wd) - lr/c1*m64[i]/(math.Sqrt(v64[i])/math.Sqrt(c2)+eps)
			}
		}
		for i := range p {
			if math.Float32bits(p[i]) != math.Float32bits(pr[i]) || m[i] != mr[i] || v[i] != vr[i] {
				t.Fatalf("n=%d: [%d] p, m, v = %v %v %v; Go loop %v %v %v", n, i, p[i], m[i], v[i], pr[i], mr[i], vr[i])
			}
			if math.Abs(float64(p[i])-p64[i]) > 2e-6*math.Max(1, math.Abs(p64[i])) {
				t.Fatalf("n=%d: p[%d] = %v, float64 AdamW %v", n, i, p[i], p64[i])
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("AdamWUpdate accepted a short gradient")
		}
	}()
	AdamWUpdate(make([]float32, 4), make([]float32, 3), make([]float32, 4), make([]float32, 4), 0.9, 0.999, 1e-8, 1, 1, 1)
}

// TestBinaryRows: the row loops of the broadcasting ops (AVX-512 prefix, Go tail) equal
// a plain loop bit for bit, with either operand broadcast.
func TestBinaryRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	plain := [...]func(a, b float32) float32{
		func(a, b float32) float32 { return a + b }, func(a, b float32) float32 { return a - b },
		func(a, b float32) float32 { return a * b }, func(a, b float32) float32 { return a / b },
	}
	for op, row := range binaryRows {
		for _, n := range rowSizes {
			for _, s := range [][2]int{{1, 1}, {1, 0}, {0, 1}} {
				x, y := randRow(rng, n, 1), randRow(rng, n, 2)
				got := make([]float32, n)
				row(got, x, y, s[0], s[1])
				for i := range got {
					want := plain[op](x[i*s[0]], y[i*s[1]])
					if math.Float32bits(got[i]) != math.Float32bits(want) {
						t.Fatalf("op %d n=%d strides %v: [%d] = %v, want %v", op, n, s, i, got[i], want)
					}
				}
			}
		}
	}
}

// TestMulAddRows: mulAddRow, mulAccPlusRow and the float64 accumulations equal plain
// loops bit for bit (zeros of both signs included: c = −0 must add nothing).
func TestMulAddRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, n := range rowSizes {
		for _, c := range []float32{negZero, 1} {
			x, y, z := randRow(rng, n, 1), randRow(rng, n, 2), randRow(rng, n, 3)
			y[0], z[n/2] = negZero, negZero
			x[n-1] = 0
			o := make([]float32, n)
			mulAddRow(o, x, y, z, c)
			d, dr := randRow(rng, n, 0), make([]float32, n)
			copy(dr, d)
			mulAccPlusRow(d, x, y, c)
			for i := range o {
				want := float32(x[i]*(y[i]+c)) + z[i]
				if math.Float32bits(o[i]) != math.Float32bits(want) {
					t.Fatalf("mulAddRow n=%d c=%v: [%d] = %v, want %v", n, c, i, o[i], want)
				}
				dr[i] += float32(x[i] * (y[i] + c))
				if math.Float32bits(d[i]) != math.Float32bits(dr[i]) {
					t.Fatalf("mulAccPlusRow n=%d c=%v: [%d] = %v, want %v", n, c, i, d[i], dr[i])
				}
			}
		}
		x, y := randRow(rng, n, 1), randRow(rng, n, 2)
		a, b := make([]float64, n), make([]float64, n)
		accRow64(a, x)
		accMulRow64(b, x, y)
		for i := range a {
			if a[i] != float64(x[i]) || b[i] != float64(x[i]*y[i]) {
				t.Fatalf("accRow64/accMulRow64 n=%d: [%d] = %v, %v; want %v, %v", n, i, a[i], b[i], float64(x[i]), float64(x[i]*y[i]))
			}
		}
	}
}
