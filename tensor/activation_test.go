package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// Shared test helpers for the CPU kernels (kt = kernel test).

// ktRand returns n values uniform in [lo, hi) from rng.
func ktRand(rng *rand.Rand, n int, lo, hi float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(lo + (hi-lo)*rng.Float64())
	}
	return s
}

// ktMaxAbs is max |s_i| over the finite entries.
func ktMaxAbs(s []float32) float64 {
	m := 0.0
	for _, v := range s {
		if !math.IsInf(float64(v), 0) {
			m = math.Max(m, math.Abs(float64(v)))
		}
	}
	return m
}

// ktClose fails unless max|got − want| <= rtol·max|want| (with max|want| floored at
// 1e-30 so an all-zero reference demands exact zeros up to denormals). Infinite
// entries must match exactly; NaN never passes.
func ktClose(t *testing.T, name string, got, want []float32, rtol float64) {
	t.Helper()
	ktCloseScale(t, name, got, want, rtol, ktMaxAbs(want))
}

// ktCloseScale is ktClose with the magnitude max|want| replaced by scale.
func ktCloseScale(t *testing.T, name string, got, want []float32, rtol, scale float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: len %d, want %d", name, len(got), len(want))
	}
	scale = math.Max(scale, 1e-30)
	worst, wi := 0.0, -1
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(g) || math.IsNaN(w) {
			t.Fatalf("%s: NaN at %d (got %v, want %v)", name, i, g, w)
		}
		if math.IsInf(w, 0) || math.IsInf(g, 0) {
			if g != w {
				t.Fatalf("%s: at %d got %v, want %v", name, i, g, w)
			}
			continue
		}
		if d := math.Abs(g - w); d > worst {
			worst, wi = d, i
		}
	}
	if worst > rtol*scale {
		t.Errorf("%s: max |diff| = %.3g at %d (got %v, want %v) > %.1g × max|want| %.3g",
			name, worst, wi, got[wi], want[wi], rtol, scale)
	}
}

// ktBackwardCheck compares a backward kernel with its reference three ways:
//   - all gradients requested, starting from zero, each within ktRefTol of its
//     reference's max|value| (or of the max over all gradients when sharedScale:
//     for kernels where one gradient can be exactly zero in exact arithmetic and the
//     float32 result is then a rounding residue of the others' magnitude);
//   - starting from random values, the kernel must add to them (accumulate);
//   - each gradient alone, the others nil, gives the same values.
//
// bwd and ref receive the gradient buffers in the order of names.
func ktBackwardCheck(t *testing.T, names []string, sizes []int, sharedScale bool, bwd, ref func(g [][]float32)) {
	t.Helper()
	alloc := func() [][]float32 {
		g := make([][]float32, len(sizes))
		for i, n := range sizes {
			g[i] = make([]float32, n)
		}
		return g
	}
	got, want := alloc(), alloc()
	bwd(got)
	ref(want)
	scales := make([]float64, len(names))
	shared := 0.0
	for i := range names {
		scales[i] = ktMaxAbs(want[i])
		shared = math.Max(shared, scales[i])
	}
	for i, name := range names {
		if sharedScale {
			scales[i] = shared
		}
		ktCloseScale(t, name, got[i], want[i], ktRefTol, scales[i])
	}
	rng := rand.New(rand.NewPCG(99, uint64(len(got[0]))))
	acc, expect := alloc(), alloc()
	for i := range acc {
		for j := range acc[i] {
			acc[i][j] = float32(rng.Float64()*2 - 1)
			expect[i][j] = acc[i][j] + want[i][j]
		}
	}
	bwd(acc)
	for i, name := range names {
		ktClose(t, name+" accumulated", acc[i], expect[i], ktRefTol)
	}
	if len(names) == 1 {
		bwd(make([][]float32, 1)) // nil gradient: must do nothing, without panicking
		return
	}
	for i, name := range names {
		only := make([][]float32, len(names))
		only[i] = make([]float32, sizes[i])
		bwd(only)
		ktCloseScale(t, name+" only", only[i], want[i], ktRefTol, scales[i])
	}
}

// ktDot is Σ a_i·b_i in float64: the scalar loss L = Σ out·g of the gradient checks.
func ktDot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// ktGradCheck compares an analytic gradient with central differences of loss,
// perturbing each x_i by ±h in float32 and dividing by the perturbation actually
// stored. It fails when |fd − grad| > tol·max(1, max|grad|) anywhere.
func ktGradCheck(t *testing.T, name string, x, grad []float32, loss func() float64, h float32, tol float64) {
	t.Helper()
	scale := math.Max(1, ktMaxAbs(grad))
	worst, wi, wfd := 0.0, -1, 0.0
	for i := range x {
		x0 := x[i]
		x[i] = x0 + h
		xp := x[i]
		lp := loss()
		x[i] = x0 - h
		xm := x[i]
		lm := loss()
		x[i] = x0
		fd := (lp - lm) / float64(xp-xm)
		if d := math.Abs(fd - float64(grad[i])); d > worst || math.IsNaN(d) {
			worst, wi, wfd = d, i, fd
		}
	}
	t.Logf("%s: max |fd − grad| = %.3g (tolerance %.3g)", name, worst, tol*scale)
	if !(worst <= tol*scale) {
		t.Errorf("%s: finite difference %.6g vs analytic %.6g at %d: |diff| %.3g > %.1g × %.3g",
			name, wfd, grad[wi], wi, worst, tol, scale)
	}
}

// ktWithThreads runs f with SetThreads(n), restoring the default afterwards.
func ktWithThreads(n int, f func()) {
	old := int(threads.Load())
	SetThreads(n)
	defer SetThreads(old)
	f()
}

// ktPanics fails unless f panics with a message containing every fragment.
func ktPanics(t *testing.T, f func(), fragments ...string) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("no panic; want one mentioning %q", fragments)
		}
		msg := fmt.Sprint(r)
		for _, f := range fragments {
			if !strings.Contains(msg, f) {
				t.Fatalf("panic %q does not mention %q", msg, f)
			}
		}
	}()
	f()
}

// Tolerances used below.
const (
	// Optimised kernels against float64 references: both round to float32 at the
	// end, the optimised ones also accumulate some sums in float32 (GEMM tiles,
	// kernelExpf's ~1 ulp). 1e-5 of the largest reference value is ~100 float32 ulps:
	// ample for those roundings, far below any indexing or formula slip.
	ktRefTol = 1e-5
	// Finite differences in float32 with h = 1e-2: the truncation error is
	// h²/6·|f'''| ≈ 2e-5·|f'''|, and rounding the forward output to float32 adds
	// up to 6e-8·Σ|out·g| / 2h ≈ 3e-6 per output element to the quotient, i.e. a
	// few 1e-4 at worst for the ≤100-element outputs used (observed: ≤ 5e-5).
	// 1e-3 of max(1, max|grad|) covers that, while a wrong gradient (off by O(1))
	// fails by orders of magnitude.
	ktFDStep = 1e-2
	ktFDTol  = 1e-3
)

func TestKernelExpf(t *testing.T) {
	worst := 0.0
	for x := -87.0; x <= 88.5; x += 0.0137 {
		got := float64(kernelExpf(float32(x)))
		want := math.Exp(float64(float32(x)))
		worst = math.Max(worst, math.Abs(got-want)/want)
	}
	// Cephes expf is documented at about 1 ulp (6e-8) relative; allow 2 ulps.
	if worst > 2.4e-7 {
		t.Errorf("kernelExpf: max relative error %.3g > 2.4e-7", worst)
	}
	inf := float32(math.Inf(1))
	for _, c := range []struct{ x, want float32 }{
		{0, 1}, {float32(math.Inf(-1)), 0}, {-1000, 0}, {1000, inf}, {inf, inf},
	} {
		if got := kernelExpf(c.x); got != c.want {
			t.Errorf("kernelExpf(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	if nan := kernelExpf(float32(math.NaN())); nan == nan {
		t.Errorf("kernelExpf(NaN) = %v, want NaN", nan)
	}
}

func TestSoftmax(t *testing.T) {
	for _, c := range []struct{ rows, C int }{{1, 1}, {3, 7}, {33, 65}, {7, 1000}, {257, 33}} {
		t.Run(fmt.Sprintf("%dx%d", c.rows, c.C), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(c.rows*1000+c.C)))
			n := c.rows * c.C
			x := ktRand(rng, n, -8, 8)
			if c.rows > 1 { // a fully masked row and a partly masked one
				for i := 0; i < c.C; i++ {
					x[i] = float32(math.Inf(-1))
				}
				x[c.C] = float32(math.Inf(-1))
			}
			got, want := make([]float32, n), make([]float32, n)
			softmaxForward(got, x, c.rows, c.C)
			softmaxRef(want, x, c.rows, c.C)
			ktClose(t, "forward", got, want, ktRefTol)
			dout := ktRand(rng, n, -1, 1)
			ktBackwardCheck(t, []string{"dx"}, []int{n}, false,
				func(g [][]float32) { softmaxBackward(g[0], dout, want, c.rows, c.C) },
				func(g [][]float32) { softmaxBackwardRef(g[0], dout, want, c.rows, c.C) })
		})
	}
}

func TestSoftmaxGradCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	rows, C := 3, 7
	x := ktRand(rng, rows*C, -2, 2)
	g := ktRand(rng, rows*C, -1, 1)
	out := make([]float32, rows*C)
	softmaxForward(out, x, rows, C)
	dx := make([]float32, rows*C)
	softmaxBackward(dx, g, out, rows, C)
	ktGradCheck(t, "softmax dx", x, dx, func() float64 {
		softmaxForward(out, x, rows, C)
		return ktDot(out, g)
	}, ktFDStep, ktFDTol)
}

func TestActivations(t *testing.T) {
	type act struct {
		name      string
		fwd, ref  func(out, x []float32)
		bwd, bref func(dx, dout, x []float32)
	}
	acts := []act{
		{"gelu", func(o, x []float32) { geluForward(o, x, false) }, func(o, x []float32) { geluRef(o, x, false) },
			func(d, g, x []float32) { geluBackward(d, g, x, false) }, func(d, g, x []float32) { geluBackwardRef(d, g, x, false) }},
		{"geluTanh", func(o, x []float32) { geluForward(o, x, true) }, func(o, x []float32) { geluRef(o, x, true) },
			func(d, g, x []float32) { geluBackward(d, g, x, true) }, func(d, g, x []float32) { geluBackwardRef(d, g, x, true) }},
		{"silu", siluForward, siluRef, siluBackward, siluBackwardRef},
	}
	for _, a := range acts {
		for _, n := range []int{1, 7, 33, 65, 50001} {
			t.Run(fmt.Sprintf("%s/%d", a.name, n), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(3, uint64(n)))
				x := ktRand(rng, n, -6, 6)
				if n > 7 {
					x[0], x[1], x[2] = -100, 100, 0 // saturated tails and the origin
				}
				got, want := make([]float32, n), make([]float32, n)
				a.fwd(got, x)
				a.ref(want, x)
				ktClose(t, "forward", got, want, ktRefTol)
				dout := ktRand(rng, n, -1, 1)
				ktBackwardCheck(t, []string{"dx"}, []int{n}, false,
					func(g [][]float32) { a.bwd(g[0], dout, x) },
					func(g [][]float32) { a.bref(g[0], dout, x) })
			})
		}
		t.Run(a.name+"/gradcheck", func(t *testing.T) {
			rng := rand.New(rand.NewPCG(4, 4))
			x := ktRand(rng, 40, -4, 4)
			g := ktRand(rng, 40, -1, 1)
			dx := make([]float32, 40)
			a.bwd(dx, g, x)
			out := make([]float32, 40)
			ktGradCheck(t, a.name+" dx", x, dx, func() float64 { a.fwd(out, x); return ktDot(out, g) }, ktFDStep, ktFDTol)
		})
	}
}

func TestActivationSizePanics(t *testing.T) {
	ktPanics(t, func() { softmaxForward(make([]float32, 5), make([]float32, 6), 2, 3) }, "softmaxForward", "5", "6")
	ktPanics(t, func() { geluForward(make([]float32, 5), make([]float32, 6), false) }, "geluForward", "5", "6")
	ktPanics(t, func() { siluBackward(make([]float32, 4), make([]float32, 6), make([]float32, 6)) }, "siluBackward", "4", "6")
}

func BenchmarkSoftmax1024x1024(b *testing.B) {
	x := ktRand(rand.New(rand.NewPCG(1, 1)), 1024*1024, -4, 4)
	out := make([]float32, len(x))
	b.SetBytes(int64(8 * len(x)))
	b.ReportAllocs()
	for b.Loop() {
		softmaxForward(out, x, 1024, 1024)
	}
}

// TestActivationAccuracy sweeps x densely over [−12, 12] plus extreme values and checks
// the float32 kernels against the float64 references elementwise, with the bounds
// documented on the kernels: |got − want| <= bound·max(1, |x|) for the value and the
// derivative (dout = 1). Each bound is about 1.5× the worst error observed.
func TestActivationAccuracy(t *testing.T) {
	var x []float32
	for v := -12.0; v <= 12; v += 1.0 / 1024 {
		x = append(x, float32(v))
	}
	x = append(x, -1e30, -1e20, -100, -30, 30, 100, 1e20, 1e30, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.SmallestNonzeroFloat32), -1e-30)
	for _, c := range []struct {
		name           string
		fwd, ref       func(out, x []float32)
		bwd, bref      func(dx, dout, x []float32)
		fBound, bBound float64
	}{
		{"geluTanh", func(o, x []float32) { geluForward(o, x, true) }, func(o, x []float32) { geluRef(o, x, true) },
			func(d, g, x []float32) { geluBackward(d, g, x, true) }, func(d, g, x []float32) { geluBackwardRef(d, g, x, true) },
			2e-7, 3e-7},
		{"geluErf", func(o, x []float32) { geluForward(o, x, false) }, func(o, x []float32) { geluRef(o, x, false) },
			func(d, g, x []float32) { geluBackward(d, g, x, false) }, func(d, g, x []float32) { geluBackwardRef(d, g, x, false) },
			3e-7, 3.6e-7},
		{"silu", siluForward, siluRef, siluBackward, siluBackwardRef, 2.5e-7, 2e-7},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := len(x)
			got, want := make([]float32, n), make([]float32, n)
			c.fwd(got, x)
			c.ref(want, x)
			ktWithinBound(t, "forward", x, got, want, c.fBound)
			ones := make([]float32, n)
			for i := range ones {
				ones[i] = 1
			}
			clear(got)
			clear(want)
			c.bwd(got, ones, x)
			c.bref(want, ones, x)
			ktWithinBound(t, "backward", x, got, want, c.bBound)
		})
	}
}

// ktWithinBound fails unless |got − want| <= bound·max(1, |x|) at every finite x
// (infinite x must give matching values, NaN for NaN).
func ktWithinBound(t *testing.T, name string, x, got, want []float32, bound float64) {
	t.Helper()
	worst, wi := 0.0, 0
	for i, v := range x {
		g, w := float64(got[i]), float64(want[i])
		if math.IsInf(float64(v), 0) {
			// The references form 0·∞ = NaN for some derivatives at ±∞; the kernels
			// may return the limit instead.
			if g != w && !math.IsNaN(w) {
				t.Errorf("%s: x = %v: got %v, want %v", name, v, g, w)
			}
			continue
		}
		if math.IsNaN(g) {
			t.Fatalf("%s: x = %v: got NaN, want %v", name, v, w)
		}
		if e := math.Abs(g-w) / math.Max(1, math.Abs(float64(v))); e > worst {
			worst, wi = e, i
		}
	}
	t.Logf("%s: worst |got − want|/max(1,|x|) = %.3g at x = %v (got %v, want %v)", name, worst, x[wi], got[wi], want[wi])
	if worst > bound {
		t.Errorf("%s: error %.3g > bound %.3g", name, worst, bound)
	}
}
