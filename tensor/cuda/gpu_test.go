package cuda

// GPU tests: each kernel against the CPU (the tensor package's ops and autograd, or
// train.AdamW). They skip, saying why, where no GPU answers; where one answers but
// the device does not open (say the PTX does not JIT), they fail.

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/tensor"
	"github.com/difftune/difftune/train"
)

var (
	gpuOnce sync.Once
	gpuDev  *Device
	gpuErr  error
)

// gpu returns the shared test device, or skips the test when there is no GPU.
func gpu(t testing.TB) *Device {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("no CUDA device: %v", err)
	}
	gpuOnce.Do(func() { gpuDev, gpuErr = Open(0) })
	if gpuErr != nil {
		t.Fatalf("a GPU answers but does not open: %v", gpuErr)
	}
	return gpuDev
}

func randn(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// up copies x to a new device buffer; the test frees it at cleanup.
func up[T float32 | uint16](t testing.TB, d *Device, x []T) Buffer {
	t.Helper()
	var z T
	b := alloc(t, d, int64(len(x))*int64(sizeOf(z)))
	if err := Upload(d, b, x); err != nil {
		t.Fatal(err)
	}
	return b
}

func sizeOf[T float32 | uint16](T) int {
	var z T
	if _, ok := any(z).(uint16); ok {
		return 2
	}
	return 4
}

// zeros is a zeroed device buffer of n float32.
func zeros(t testing.TB, d *Device, n int) Buffer {
	t.Helper()
	b := alloc(t, d, int64(n)*4)
	if err := d.Zero(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func alloc(t testing.TB, d *Device, bytes int64) Buffer {
	t.Helper()
	b, err := d.Alloc(bytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Free(b) })
	return b
}

// down synchronizes and copies n float32 back.
func down(t testing.TB, d *Device, b Buffer, n int) []float32 {
	t.Helper()
	if err := d.Synchronize(); err != nil {
		t.Fatal(err)
	}
	x := make([]float32, n)
	if err := Download(d, x, b); err != nil {
		t.Fatal(err)
	}
	return x
}

// fp32Tol is the relative tolerance (of max|want|) for fp32 and tf32 kernels against
// the CPU: the kernels differ from the CPU only in summation order and in the
// special-function unit's exp2/log2 (relative error about 2^-22), far below 1e-4.
const fp32Tol = 1e-4

func within(t *testing.T, what string, got, want []float32, rel float64) {
	t.Helper()
	if d := golden.Compare(got, want); d.MaxRel > rel || math.IsNaN(d.MaxRel) {
		t.Errorf("%s: %v, tolerance %g", what, d, rel)
	}
}

// cpuGrad runs f on x (and params) with autograd, backpropagates dout and returns
// the output and the gradients of x and params.
func cpuGrad(f func(x *tensor.Tensor, ps []*tensor.Tensor) *tensor.Tensor, x *tensor.Tensor, dout []float32, ps ...*tensor.Tensor) (out []float32, grads [][]float32) {
	x.SetRequiresGrad(true)
	for _, p := range ps {
		if p != nil {
			p.SetRequiresGrad(true)
		}
	}
	y := f(x, ps)
	out = append([]float32(nil), y.Data()...)
	tensor.BackwardWith([]*tensor.Tensor{y}, []*tensor.Tensor{tensor.FromFloat32(dout, y.Shape()...)})
	for _, t := range append([]*tensor.Tensor{x}, ps...) {
		if t == nil {
			grads = append(grads, nil)
			continue
		}
		grads = append(grads, append([]float32(nil), t.Grad().Data()...))
	}
	return out, grads
}

func TestGPUElementwise(t *testing.T) {
	d := gpu(t)
	const n = 1<<20 + 3 // beyond one grid: the grid-stride loops go round
	a, b := randn(n, 1), randn(n, 2)
	A, B := up(t, d, a), up(t, d, b)
	ta, tb := tensor.FromFloat32(a, n), tensor.FromFloat32(b, n)
	out := zeros(t, d, n)
	for _, c := range []struct {
		name string
		run  func() error
		want *tensor.Tensor
	}{
		{"add", func() error { return d.Add(out, A, B, n) }, tensor.Add(ta, tb)},
		{"mul", func() error { return d.Mul(out, A, B, n) }, tensor.Mul(ta, tb)},
		{"scale", func() error { return d.Scale(out, A, -0.37, n) }, tensor.Scale(ta, -0.37)},
	} {
		if err := c.run(); err != nil {
			t.Fatal(err)
		}
		within(t, c.name, down(t, d, out, n), c.want.Data(), fp32Tol)
	}
}

func TestGPUActivations(t *testing.T) {
	d := gpu(t)
	const n = 100003
	x := randn(n, 3)
	for i := range x {
		x[i] *= 4 // reach the tails, where e^-x overflows
	}
	g := randn(n, 4)
	X, G := up(t, d, x), up(t, d, g)
	for _, c := range []struct {
		name     string
		fwd, bwd func(out, dx Buffer) error
		cpu      func(*tensor.Tensor) *tensor.Tensor
	}{
		{"SiLU", func(o, _ Buffer) error { return d.SiLUForward(o, X, n) }, func(_, dx Buffer) error { return d.SiLUBackward(dx, G, X, n) },
			tensor.SiLU},
		{"GELU tanh", func(o, _ Buffer) error { return d.GELUTanhForward(o, X, n) }, func(_, dx Buffer) error { return d.GELUTanhBackward(dx, G, X, n) },
			func(x *tensor.Tensor) *tensor.Tensor { return tensor.GELU(x, true) }},
	} {
		out, grads := cpuGrad(func(x *tensor.Tensor, _ []*tensor.Tensor) *tensor.Tensor { return c.cpu(x) }, tensor.FromFloat32(x, n), g)
		O, DX := zeros(t, d, n), zeros(t, d, n)
		if err := c.fwd(O, DX); err != nil {
			t.Fatal(err)
		}
		if err := c.bwd(O, DX); err != nil {
			t.Fatal(err)
		}
		within(t, c.name+" forward", down(t, d, O, n), out, fp32Tol)
		within(t, c.name+" backward", down(t, d, DX, n), grads[0], fp32Tol)
	}
}

func TestGPUSoftmax(t *testing.T) {
	d := gpu(t)
	for _, sh := range [][2]int{{37, 1000}, {5, 7}, {3, 4097}} {
		rows, c := sh[0], sh[1]
		x, g := randn(rows*c, 5), randn(rows*c, 6)
		for i := range x {
			x[i] *= 8
		}
		out, grads := cpuGrad(func(x *tensor.Tensor, _ []*tensor.Tensor) *tensor.Tensor { return tensor.Softmax(x) }, tensor.FromFloat32(x, rows, c), g)
		X, G, O, DX := up(t, d, x), up(t, d, g), zeros(t, d, rows*c), zeros(t, d, rows*c)
		if err := d.SoftmaxForward(O, X, rows, c); err != nil {
			t.Fatal(err)
		}
		if err := d.SoftmaxBackward(DX, G, O, rows, c); err != nil {
			t.Fatal(err)
		}
		within(t, "softmax forward", down(t, d, O, rows*c), out, fp32Tol)
		within(t, "softmax backward", down(t, d, DX, rows*c), grads[0], fp32Tol)
	}
}

// affine returns w and b of n elements near 1 and 0, or nils.
func affine(n int, on bool) (w, b []float32) {
	if !on {
		return nil, nil
	}
	w, b = randn(n, 11), randn(n, 12)
	for i := range w {
		w[i] = 1 + 0.3*w[i]
	}
	return w, b
}

// opt uploads x, or returns the zero Buffer (a null pointer) for nil.
func opt(t *testing.T, d *Device, x []float32) Buffer {
	if x == nil {
		return Buffer{}
	}
	return up(t, d, x)
}

func optT(x []float32, shape ...int) *tensor.Tensor {
	if x == nil {
		return nil
	}
	return tensor.FromFloat32(x, shape...)
}

// zerosOpt is zeros when on, else the zero Buffer.
func zerosOpt(t *testing.T, d *Device, n int, on bool) Buffer {
	if !on {
		return Buffer{}
	}
	return zeros(t, d, n)
}

func TestGPULayerNorm(t *testing.T) {
	d := gpu(t)
	const rows, c, eps = 33, 771, 1e-5
	for _, aff := range []bool{true, false} {
		x, g := randn(rows*c, 7), randn(rows*c, 8)
		for i := range x {
			x[i] = 3 + 2*x[i] // a mean far from 0
		}
		w, b := affine(c, aff)
		out, grads := cpuGrad(func(x *tensor.Tensor, p []*tensor.Tensor) *tensor.Tensor { return tensor.LayerNorm(x, p[0], p[1], eps) },
			tensor.FromFloat32(x, rows, c), g, optT(w, c), optT(b, c))
		X, G, W, Bb := up(t, d, x), up(t, d, g), opt(t, d, w), opt(t, d, b)
		O, M, R := zeros(t, d, rows*c), zeros(t, d, rows), zeros(t, d, rows)
		DX, DW, DB := zeros(t, d, rows*c), zerosOpt(t, d, c, aff), zerosOpt(t, d, c, aff)
		if err := d.LayerNormForward(O, M, R, X, W, Bb, rows, c, eps); err != nil {
			t.Fatal(err)
		}
		if err := d.LayerNormBackward(DX, DW, DB, G, X, W, M, R, rows, c); err != nil {
			t.Fatal(err)
		}
		within(t, "layer norm forward", down(t, d, O, rows*c), out, fp32Tol)
		within(t, "layer norm dx", down(t, d, DX, rows*c), grads[0], fp32Tol)
		if aff {
			within(t, "layer norm dw", down(t, d, DW, c), grads[1], fp32Tol)
			within(t, "layer norm db", down(t, d, DB, c), grads[2], fp32Tol)
		}
	}
}

func TestGPUGroupNorm(t *testing.T) {
	d := gpu(t)
	const n, c, hw, groups, eps = 2, 12, 50, 3, 1e-6
	for _, aff := range []bool{true, false} {
		x, g := randn(n*c*hw, 9), randn(n*c*hw, 10)
		w, b := affine(c, aff)
		out, grads := cpuGrad(func(x *tensor.Tensor, p []*tensor.Tensor) *tensor.Tensor {
			return tensor.GroupNorm(x, groups, p[0], p[1], eps)
		}, tensor.FromFloat32(x, n, c, 5, 10), g, optT(w, c), optT(b, c))
		X, G, W, Bb := up(t, d, x), up(t, d, g), opt(t, d, w), opt(t, d, b)
		O, M, R := zeros(t, d, n*c*hw), zeros(t, d, n*groups), zeros(t, d, n*groups)
		DX, DW, DB := zeros(t, d, n*c*hw), zerosOpt(t, d, c, aff), zerosOpt(t, d, c, aff)
		if err := d.GroupNormForward(O, M, R, X, W, Bb, n, c, hw, groups, eps); err != nil {
			t.Fatal(err)
		}
		if err := d.GroupNormBackward(DX, DW, DB, G, X, W, M, R, n, c, hw, groups); err != nil {
			t.Fatal(err)
		}
		within(t, "group norm forward", down(t, d, O, n*c*hw), out, fp32Tol)
		within(t, "group norm dx", down(t, d, DX, n*c*hw), grads[0], fp32Tol)
		if aff {
			within(t, "group norm dw", down(t, d, DW, c), grads[1], fp32Tol)
			within(t, "group norm db", down(t, d, DB, c), grads[2], fp32Tol)
		}
	}
}

func TestGPURMSNorm(t *testing.T) {
	d := gpu(t)
	const rows, c, eps = 19, 2048, 1e-6
	for _, aff := range []bool{true, false} {
		x, g := randn(rows*c, 13), randn(rows*c, 14)
		w, _ := affine(c, aff)
		out, grads := cpuGrad(func(x *tensor.Tensor, p []*tensor.Tensor) *tensor.Tensor { return tensor.RMSNorm(x, p[0], eps) },
			tensor.FromFloat32(x, rows, c), g, optT(w, c))
		X, G, W := up(t, d, x), up(t, d, g), opt(t, d, w)
		O, R, DX, DW := zeros(t, d, rows*c), zeros(t, d, rows), zeros(t, d, rows*c), zerosOpt(t, d, c, aff)
		if err := d.RMSNormForward(O, R, X, W, rows, c, eps); err != nil {
			t.Fatal(err)
		}
		if err := d.RMSNormBackward(DX, DW, G, X, W, R, rows, c); err != nil {
			t.Fatal(err)
		}
		within(t, "RMS norm forward", down(t, d, O, rows*c), out, fp32Tol)
		within(t, "RMS norm dx", down(t, d, DX, rows*c), grads[0], fp32Tol)
		if aff {
			within(t, "RMS norm dw", down(t, d, DW, c), grads[1], fp32Tol)
		}
	}
}

// TestGPUAdamW runs three steps of train.AdamW and of the kernel with the same
// gradients and compares parameters and moments.
func TestGPUAdamW(t *testing.T) {
	d := gpu(t)
	const n, lr, wd = 4099, 1e-3, 0.01
	p0 := randn(n, 15)
	p := tensor.FromFloat32(append([]float32(nil), p0...), n).SetRequiresGrad(true)
	opt := train.NewAdamW([]*tensor.Tensor{p}, lr, wd)
	P, M, V := up(t, d, p0), zeros(t, d, n), zeros(t, d, n)
	for step := 1; step <= 3; step++ {
		g := randn(n, uint64(100+step))
		y := tensor.Mul(p, tensor.FromFloat32(g, n)) // ∂Σy/∂p = g
		tensor.BackwardWith([]*tensor.Tensor{y}, []*tensor.Tensor{tensor.Full(1, n)})
		opt.Step()
		c1, c2 := 1-math.Pow(opt.Beta1, float64(step)), 1-math.Pow(opt.Beta2, float64(step))
		err := d.AdamWUpdate(P, up(t, d, g), M, V, n, float32(opt.Beta1), float32(opt.Beta2), float32(opt.Eps),
			float32(1-lr*wd), float32(lr/c1), float32(1/math.Sqrt(c2)))
		if err != nil {
			t.Fatal(err)
		}
	}
	m, v := opt.Moments()
	within(t, "AdamW parameters", down(t, d, P, n), p.Data(), fp32Tol)
	within(t, "AdamW first moment", down(t, d, M, n), m[0].Data(), fp32Tol)
	within(t, "AdamW second moment", down(t, d, V, n), v[0].Data(), fp32Tol)
}

// toBF16 rounds x to bfloat16, to nearest even.
func toBF16(x float32) uint16 {
	b := math.Float32bits(x)
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

func fromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// toTF32 rounds x to tf32 (10 mantissa bits) to nearest, ties away from zero, as
// cvt.rna.tf32.f32 does.
func toTF32(x float32) float32 {
	return math.Float32frombits((math.Float32bits(x) + 0x1000) &^ 0x1fff)
}

// gemmRef is C = alpha·A·Bᵀ + beta·C0 in float64, A [m,k], B [n,k].
func gemmRef(a, b, c0 []float32, m, n, k int, alpha, beta float64) []float32 {
	c := make([]float32, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				s += float64(a[i*k+p]) * float64(b[j*k+p])
			}
			c[i*n+j] = float32(alpha*s + beta*float64(c0[i*n+j]))
		}
	}
	return c
}

// TestGPUGemm checks each GEMM kernel against a float64 product of the same rounded
// inputs: the bf16 and tf32 kernels then differ from it only by fp32 accumulation,
// so 1e-4 of max|C| holds for them as for fp32. Shapes cover ragged edges (M, N, K
// not multiples of the 128x128x32 tile, K not a multiple of 8: the scalar load path).
func TestGPUGemm(t *testing.T) {
	d := gpu(t)
	for _, s := range []struct {
		m, n, k     int
		alpha, beta float32
	}{{128, 128, 64, 1, 0}, {257, 130, 200, 1, 0}, {1000, 520, 1024, 0.5, 2}, {33, 17, 13, 1, 1}} {
		m, n, k := s.m, s.n, s.k
		a, b, c0 := randn(m*k, 20), randn(n*k, 21), randn(m*n, 22)
		a16, b16 := make([]uint16, len(a)), make([]uint16, len(b))
		ab, bb := make([]float32, len(a)), make([]float32, len(b))
		at, bt := make([]float32, len(a)), make([]float32, len(b))
		for i, v := range a {
			a16[i] = toBF16(v)
			ab[i], at[i] = fromBF16(a16[i]), toTF32(v)
		}
		for i, v := range b {
			b16[i] = toBF16(v)
			bb[i], bt[i] = fromBF16(b16[i]), toTF32(v)
		}
		A, B, A16, B16 := up(t, d, a), up(t, d, b), up(t, d, a16), up(t, d, b16)
		for _, c := range []struct {
			name string
			run  func(C Buffer) error
			want []float32
		}{
			{"fp32 reference", func(C Buffer) error { return d.GemmRef(C, A, B, m, n, k, s.alpha, s.beta) },
				gemmRef(a, b, c0, m, n, k, float64(s.alpha), float64(s.beta))},
			{"bf16 tensor cores", func(C Buffer) error { return d.GemmBF16(C, A16, B16, m, n, k, s.alpha, s.beta) },
				gemmRef(ab, bb, c0, m, n, k, float64(s.alpha), float64(s.beta))},
			{"tf32 tensor cores", func(C Buffer) error { return d.GemmTF32(C, A, B, m, n, k, s.alpha, s.beta) },
				gemmRef(at, bt, c0, m, n, k, float64(s.alpha), float64(s.beta))},
		} {
			C := up(t, d, c0)
			if err := c.run(C); err != nil {
				t.Fatal(err)
			}
			within(t, c.name, down(t, d, C, m*n), c.want, fp32Tol)
		}
		// Against the unrounded fp32 product, bf16 inputs (8 significant bits,
		// relative rounding error ≤ 2^-9 per input) stay within 1e-2 of max|C|.
		C := up(t, d, c0)
		if err := d.GemmBF16(C, A16, B16, m, n, k, s.alpha, s.beta); err != nil {
			t.Fatal(err)
		}
		within(t, "bf16 vs fp32 inputs", down(t, d, C, m*n), gemmRef(a, b, c0, m, n, k, float64(s.alpha), float64(s.beta)), 1e-2)
	}
}

func TestGPUAttention(t *testing.T) {
	d := gpu(t)
	for _, c := range []struct {
		name             string
		b, h, tq, tk, dh int
		mask, causal     bool
	}{
		{"cross", 2, 3, 37, 45, 40, false, false},
		{"masked", 2, 2, 20, 33, 64, true, false},
		{"causal", 1, 4, 70, 70, 72, false, true},
		{"wide head", 1, 2, 9, 65, 160, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			hd := c.h * c.dh
			q, k, v := randn(c.b*c.tq*hd, 30), randn(c.b*c.tk*hd, 31), randn(c.b*c.tk*hd, 32)
			g := randn(c.b*c.tq*hd, 33)
			var mask []float32
			if c.mask {
				mask = make([]float32, c.b*c.tk)
				for j := range c.tk {
					if j%5 == 3 {
						mask[j] = float32(math.Inf(-1)) // sample 0: every fifth key dropped
					}
					mask[c.tk+j] = float32(math.Inf(-1)) // sample 1 fully masked: output 0, zero gradients
				}
			}
			tk, tv := tensor.FromFloat32(k, c.b, c.tk, hd), tensor.FromFloat32(v, c.b, c.tk, hd)
			out, grads := cpuGrad(func(x *tensor.Tensor, p []*tensor.Tensor) *tensor.Tensor {
				return tensor.Attention(x, p[0], p[1], c.h, optT(mask, c.b, c.tk), c.causal)
			}, tensor.FromFloat32(q, c.b, c.tq, hd), g, tk, tv)
			Q, K, V, G, Mk := up(t, d, q), up(t, d, k), up(t, d, v), up(t, d, g), opt(t, d, mask)
			O, L := zeros(t, d, len(q)), zeros(t, d, c.b*c.h*c.tq)
			DQ, DK, DV := zeros(t, d, len(q)), zeros(t, d, len(k)), zeros(t, d, len(v))
			s := AttentionShape{B: c.b, H: c.h, Tq: c.tq, Tk: c.tk, D: c.dh}
			scale := float32(1 / math.Sqrt(float64(c.dh)))
			if err := d.AttentionForward(O, L, Q, K, V, Mk, s, scale, c.causal); err != nil {
				t.Fatal(err)
			}
			if err := d.AttentionBackward(DQ, DK, DV, G, Q, K, V, O, L, Mk, s, scale, c.causal); err != nil {
				t.Fatal(err)
			}
			within(t, "attention forward", down(t, d, O, len(q)), out, fp32Tol)
			within(t, "attention dq", down(t, d, DQ, len(q)), grads[0], fp32Tol)
			within(t, "attention dk", down(t, d, DK, len(k)), grads[1], fp32Tol)
			within(t, "attention dv", down(t, d, DV, len(v)), grads[2], fp32Tol)
		})
	}
}
