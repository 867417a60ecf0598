package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// Tests of the fused ops (Linear, Modulate, GatedAdd) against the primitive ops they
// replace: the fused ops round every element as the composition does, so forward
// outputs and gradients must agree bit for bit, and they must save no more.

// fusedCase runs fused and composite on fresh copies of the same inputs (those with
// grad[i] set require gradients), backpropagates the same random output gradient
// through both and requires equal outputs, equal gradients, no more saved bytes and
// no leak.
func fusedCase(t *testing.T, shapes [][]int, grad []bool, fused, composite func(in []*Tensor) *Tensor) {
	t.Helper()
	live := CPU.Stats().Live
	rng := rand.New(rand.NewPCG(7, uint64(len(shapes))))
	base := make([]*Tensor, len(shapes))
	for i, s := range shapes {
		base[i] = randTensor(rng, s...)
	}
	run := func(f func(in []*Tensor) *Tensor) (out []float32, grads [][]float32, saved int64) {
		in := make([]*Tensor, len(base))
		for i, b := range base {
			in[i] = FromFloat32(b.Data(), b.shape...).SetRequiresGrad(grad[i])
		}
		before := SavedBytes()
		o := f(in)
		saved = SavedBytes() - before
		out = append(out, o.Data()...)
		if o.node != nil {
			g := randTensor(rand.New(rand.NewPCG(9, 9)), o.shape...)
			BackwardWith([]*Tensor{o}, []*Tensor{g})
			g.Release()
		}
		for _, x := range in {
			var d []float32
			if x.Grad() != nil {
				d = append(d, x.Grad().Data()...)
			}
			grads = append(grads, d)
			x.Release()
		}
		o.Release()
		return out, grads, saved
	}
	fo, fg, fs := run(fused)
	co, cg, cs := run(composite)
	requireEqual(t, "output", fo, co)
	for i := range fg {
		requireEqual(t, fmt.Sprintf("grad %d", i), fg[i], cg[i])
	}
	if fs > cs {
		t.Errorf("fused op saved %d bytes, the composition %d", fs, cs)
	}
	Release(base...)
	if l := CPU.Stats().Live; l != live {
		t.Fatalf("live bytes %d after release, want %d (leak)", l, live)
	}
}

// requireEqual fails unless got and want are equal element for element (NaN equal to
// NaN), naming the first difference.
func requireEqual(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want[i]))) {
			t.Fatalf("%s[%d] = %g, want %g (of %d)", what, i, got[i], want[i], len(got))
		}
	}
}

func TestLinearMatchesMatMulAdd(t *testing.T) {
	composite := func(in []*Tensor) *Tensor {
		y := MatMul(in[0], in[1], false, true)
		if len(in) == 2 {
			return y
		}
		defer y.Release()
		return Add(y, in[2])
	}
	fused := func(in []*Tensor) *Tensor {
		if len(in) == 2 {
			return Linear(in[0], in[1], nil)
		}
		return Linear(in[0], in[1], in[2])
	}
	for _, c := range []struct {
		x          []int
		out        int
		bias       bool
		grad       []bool
		whyTheCase string
	}{
		{[]int{1, 1}, 1, true, []bool{true, true, true}, "smallest"},
		{[]int{7, 13}, 5, true, []bool{true, true, true}, "odd sizes, everything trainable"},
		{[]int{2, 9, 17}, 33, true, []bool{true, false, true}, "batched x, frozen weight"},
		{[]int{3, 70, 45}, 301, true, []bool{false, true, false}, "parallel GEMM, frozen x and bias"},
		{[]int{4, 6}, 11, false, []bool{true, true}, "no bias"},
		{[]int{0, 6}, 11, true, []bool{true, true, true}, "no rows"},
		{[]int{3, 0}, 4, true, []bool{true, true, true}, "empty inner dimension"},
	} {
		t.Run(fmt.Sprintf("%v_%d_%v", c.x, c.out, c.bias), func(t *testing.T) {
			shapes := [][]int{c.x, {c.out, c.x[len(c.x)-1]}}
			if c.bias {
				shapes = append(shapes, []int{c.out})
			}
			fusedCase(t, shapes, c.grad, fused, composite)
		})
	}
	t.Run("BF16Weight", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 3))
		x, b := randTensor(rng, 5, 19), randTensor(rng, 7)
		w := randTensor(rng, 7, 19)
		wb := w.Convert(BF16)
		defer Release(x, b, w, wb)
		var y, want *Tensor
		NoGrad(func() {
			y = Linear(x, wb, b)
			m := MatMul(x, wb, false, true)
			want = Add(m, b)
			m.Release()
		})
		defer Release(y, want)
		requireEqual(t, "output", y.Data(), want.Data())
	})
	x, w := Zeros(2, 3), Zeros(4, 5)
	defer Release(x, w)
	mustPanic(t, "tensor.Linear", func() { Linear(x, w, nil) })
}

func TestModulateMatchesComposite(t *testing.T) {
	composite := func(in []*Tensor) *Tensor {
		onePlus := AddScalar(in[2], 1)
		scaled := Mul(in[0], onePlus)
		defer Release(onePlus, scaled)
		return Add(scaled, in[1])
	}
	fused := func(in []*Tensor) *Tensor { return Modulate(in[0], in[1], in[2]) }
	for _, c := range []struct {
		n, t, d int
		grad    []bool
	}{
		{1, 1, 1, []bool{true, true, true}},
		{3, 5, 131, []bool{true, true, true}}, // d past one column block
		{2, 300, 7, []bool{true, false, true}},
		{4, 33, 260, []bool{false, true, true}},
		{2, 9, 129, []bool{true, false, false}},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d", c.n, c.t, c.d), func(t *testing.T) {
			fusedCase(t, [][]int{{c.n, c.t, c.d}, {c.n, 1, c.d}, {c.n, 1, c.d}}, c.grad, fused, composite)
		})
	}
	x, shift, scale := Zeros(2, 3, 4), Zeros(2, 1, 4), Zeros(1, 1, 4)
	defer Release(x, shift, scale)
	mustPanic(t, "tensor.Modulate", func() { Modulate(x, shift, scale) })
}

func TestGatedAddMatchesComposite(t *testing.T) {
	composite := func(in []*Tensor) *Tensor {
		g := Mul(in[1], in[2])
		defer g.Release()
		return Add(in[0], g)
	}
	fused := func(in []*Tensor) *Tensor { return GatedAdd(in[0], in[1], in[2]) }
	for _, c := range []struct {
		n, t, d int
		grad    []bool
	}{
		{1, 1, 1, []bool{true, true, true}},
		{3, 5, 131, []bool{true, true, true}},
		{2, 300, 7, []bool{false, true, true}},
		{4, 33, 260, []bool{true, false, true}},
		{2, 9, 129, []bool{true, true, false}},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d", c.n, c.t, c.d), func(t *testing.T) {
			fusedCase(t, [][]int{{c.n, c.t, c.d}, {c.n, 1, c.d}, {c.n, c.t, c.d}}, c.grad, fused, composite)
		})
	}
	x, gate, h := Zeros(2, 3, 4), Zeros(2, 1, 4), Zeros(2, 3, 5)
	defer Release(x, gate, h)
	mustPanic(t, "tensor.GatedAdd", func() { GatedAdd(x, gate, h) })
}

// TestModulateKernelsMatchRef compares the parallel kernels with their serial
// references over odd sizes, with each gradient present or absent.
func TestModulateKernelsMatchRef(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 2*rng.Float32() - 1
		}
		return v
	}
	for _, sz := range [][3]int{{1, 1, 1}, {3, 7, 129}, {2, 257, 31}, {5, 3, 300}} {
		n, tt, d := sz[0], sz[1], sz[2]
		big, small := n*tt*d, n*d
		x, h, dout, a, b := vec(big), vec(big), vec(big), vec(small), vec(small)
		t.Run(fmt.Sprint(sz), func(t *testing.T) {
			got, want := make([]float32, big), make([]float32, big)
			modulateForward(got, x, a, b, n, tt, d)
			modulateRef(want, x, a, b, n, tt, d)
			requireEqual(t, "modulate", got, want)
			gatedAddForward(got, x, a, h, n, tt, d)
			gatedAddRef(want, x, a, h, n, tt, d)
			requireEqual(t, "gatedAdd", got, want)
			for mask := range 8 {
				// Each buffer starts from the same nonzero values: the kernels accumulate.
				bufs := func(third []float32) (dx, ds, dt []float32) {
					if mask&1 != 0 {
						dx = append([]float32(nil), h...)
					}
					if mask&2 != 0 {
						ds = append([]float32(nil), a...)
					}
					if mask&4 != 0 {
						dt = append([]float32(nil), third...)
					}
					return
				}
				gx, gs, gt := bufs(b)
				wx, ws, wt := bufs(b)
				modulateBackward(gx, gs, gt, dout, x, b, n, tt, d)
				modulateBackwardRef(wx, ws, wt, dout, x, b, n, tt, d)
				requireEqual(t, fmt.Sprintf("modulate dx (mask %d)", mask), gx, wx)
				requireEqual(t, fmt.Sprintf("modulate dshift (mask %d)", mask), gs, ws)
				requireEqual(t, fmt.Sprintf("modulate dscale (mask %d)", mask), gt, wt)
				gx, gs, gt = bufs(x)
				wx, ws, wt = bufs(x)
				gatedAddBackward(gx, gs, gt, dout, a, h, n, tt, d)
				gatedAddBackwardRef(wx, ws, wt, dout, a, h, n, tt, d)
				requireEqual(t, fmt.Sprintf("gatedAdd dx (mask %d)", mask), gx, wx)
				requireEqual(t, fmt.Sprintf("gatedAdd dgate (mask %d)", mask), gs, ws)
				requireEqual(t, fmt.Sprintf("gatedAdd dh (mask %d)", mask), gt, wt)
			}
		})
	}
}

func TestGradFused(t *testing.T) {
	cases := []gradCase{
		{name: "Linear", shapes: [][]int{{2, 3, 7}, {5, 7}, {5}}, f: func(in []*Tensor) *Tensor { return Linear(in[0], in[1], in[2]) }},
		{name: "LinearNoBias", shapes: [][]int{{4, 6}, {3, 6}}, f: func(in []*Tensor) *Tensor { return Linear(in[0], in[1], nil) }},
		{name: "Modulate", shapes: [][]int{{2, 5, 3}, {2, 1, 3}, {2, 1, 3}}, f: func(in []*Tensor) *Tensor { return Modulate(in[0], in[1], in[2]) }},
		{name: "GatedAdd", shapes: [][]int{{3, 4, 5}, {3, 1, 5}, {3, 4, 5}}, f: func(in []*Tensor) *Tensor { return GatedAdd(in[0], in[1], in[2]) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGrad(t, c) })
	}
}
