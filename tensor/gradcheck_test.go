package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// randTensor returns a leaf of uniform values in [-1, 1) from a fixed seed.
func randTensor(rng *rand.Rand, shape ...int) *Tensor {
	d := make([]float32, numel(shape))
	for i := range d {
		d[i] = 2*rng.Float32() - 1
	}
	return FromFloat32(d, shape...)
}

// gradCase is one finite-difference check: f maps the inputs (made from shapes) to
// one output; the loss is L = Σ out·g with a fixed random g.
type gradCase struct {
	name   string
	shapes [][]int
	f      func(in []*Tensor) *Tensor
	// positive makes inputs strictly positive (for Div's denominator).
	positive bool
	// tol overrides the default tolerance (see checkGrad).
	tol float64
}

// checkGrad compares Backward against central differences of L in float64. With
// h = 1e-2 the truncation error of a smooth op is O(h²·f”') ≈ 1e-4 relative, and
// float32 rounding of the outputs contributes about n·6e-8/(2h) ≈ 1e-5 for the sizes
// used here, hence the default tolerance 2e-3 of max(1, |analytic|).
func checkGrad(t *testing.T, c gradCase) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, uint64(len(c.name))))
	live := CPU.Stats().Live
	ins := make([]*Tensor, len(c.shapes))
	for i, s := range c.shapes {
		ins[i] = randTensor(rng, s...)
		if c.positive {
			for j, v := range ins[i].Data() {
				ins[i].Data()[j] = 0.5 + float32(math.Abs(float64(v)))
			}
		}
		ins[i].SetRequiresGrad(true)
	}
	out := c.f(ins)
	g := randTensor(rng, out.shape...)
	BackwardWith([]*Tensor{out}, []*Tensor{g})
	out.Release()
	if s := SavedBytes(); s != 0 {
		t.Fatalf("%s: %d saved bytes remain after backward", c.name, s)
	}
	loss := func() float64 {
		var o *Tensor
		NoGrad(func() { o = c.f(ins) })
		defer o.Release()
		var s float64
		for i, v := range o.Data() {
			s += float64(v) * float64(g.Data()[i])
		}
		return s
	}
	tol := c.tol
	if tol == 0 {
		tol = 2e-3
	}
	const h = 1e-2
	for i, in := range ins {
		if in.Grad() == nil {
			t.Fatalf("%s: input %d got no gradient", c.name, i)
		}
		gd := in.Grad().Data()
		x := in.Data()
		for j := range x {
			orig := x[j]
			x[j] = orig + h
			lp := loss()
			x[j] = orig - h
			lm := loss()
			x[j] = orig
			num := (lp - lm) / (2 * h)
			if diff := math.Abs(num - float64(gd[j])); diff > tol*math.Max(1, math.Abs(num)) {
				t.Fatalf("%s: d/d input%d[%d]: analytic %.6g, numeric %.6g", c.name, i, j, gd[j], num)
			}
		}
	}
	g.Release()
	for _, in := range ins {
		in.Release()
	}
	if l := CPU.Stats().Live; l != live {
		t.Fatalf("%s: live bytes %d after release, want %d (leak)", c.name, l, live)
	}
}

func TestGradElementwise(t *testing.T) {
	var cases []gradCase
	shapes := [][2][]int{
		{{3, 5}, {3, 5}},
		{{2, 3, 4}, {4}},
		{{2, 3, 4}, {3, 1}},
		{{1, 7}, {5, 1}},
		{{2, 1, 3}, {1, 4, 1}},
		{{}, {2, 3}},
		{{2, 2, 2, 2, 2, 2, 2, 2, 2}, {2, 1, 2, 1, 2, 1, 2, 1, 2}}, // more axes than a gradWalk holds: gradRef
	}
	ops := []struct {
		name string
		f    func(a, b *Tensor) *Tensor
	}{{"Add", Add}, {"Sub", Sub}, {"Mul", Mul}, {"Div", Div}}
	for _, op := range ops {
		for _, s := range shapes {
			cases = append(cases, gradCase{
				name: fmt.Sprintf("%s%v%v", op.name, s[0], s[1]), shapes: [][]int{s[0], s[1]},
				f: func(in []*Tensor) *Tensor { return op.f(in[0], in[1]) }, positive: op.name == "Div",
			})
		}
	}
	cases = append(cases,
		gradCase{name: "AddScalar", shapes: [][]int{{2, 5}}, f: func(in []*Tensor) *Tensor { return AddScalar(in[0], 0.25) }},
		gradCase{name: "Scale", shapes: [][]int{{3, 7}}, f: func(in []*Tensor) *Tensor { return Scale(in[0], -1.5) }},
		gradCase{name: "SumAll", shapes: [][]int{{3, 7}}, f: func(in []*Tensor) *Tensor { return Sum(in[0], false) }},
		gradCase{name: "SumAxis1", shapes: [][]int{{3, 7, 2}}, f: func(in []*Tensor) *Tensor { return Sum(in[0], false, 1) }},
		gradCase{name: "MeanAxes02Keep", shapes: [][]int{{3, 7, 5}}, f: func(in []*Tensor) *Tensor { return Mean(in[0], true, 0, -1) }},
		gradCase{name: "SameInputTwice", shapes: [][]int{{4, 3}}, f: func(in []*Tensor) *Tensor { return Mul(in[0], in[0]) }},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGrad(t, c) })
	}
}

func TestGradShape(t *testing.T) {
	cases := []gradCase{
		{name: "Reshape", shapes: [][]int{{2, 3, 5}}, f: func(in []*Tensor) *Tensor {
			a, b := Reshape(in[0], 6, -1), Reshape(in[0], 6, 5)
			defer Release(a, b)
			return Mul(a, b)
		}},
		{name: "Permute", shapes: [][]int{{2, 3, 5, 1}}, f: func(in []*Tensor) *Tensor { return Permute(in[0], 2, 0, 3, 1) }},
		{name: "Transpose", shapes: [][]int{{3, 7}}, f: func(in []*Tensor) *Tensor { return Transpose(in[0], 0, 1) }},
		{name: "Concat1", shapes: [][]int{{2, 3, 4}, {2, 1, 4}, {2, 5, 4}}, f: func(in []*Tensor) *Tensor { return Concat(1, in...) }},
		{name: "Concat0", shapes: [][]int{{1, 3}, {4, 3}}, f: func(in []*Tensor) *Tensor { return Concat(0, in...) }},
		{name: "SliceView", shapes: [][]int{{5, 3}}, f: func(in []*Tensor) *Tensor { return Slice(in[0], 0, 1, 4) }},
		{name: "SliceCopy", shapes: [][]int{{2, 7, 3}}, f: func(in []*Tensor) *Tensor { return Slice(in[0], 1, 2, 7) }},
		{name: "SplitChunk", shapes: [][]int{{3, 6}}, f: func(in []*Tensor) *Tensor {
			p := Chunk(in[0], 3, 1)
			q := Split(in[0], 0, 1, 2)
			m, s := Mul(p[0], p[2]), Sum(q[1], false, 0)
			r := Reshape(s, 3, 2)
			defer Release(append(append(p, q...), m, s, r)...)
			return Concat(1, m, r)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGrad(t, c) })
	}
}

func TestGradMatMul(t *testing.T) {
	var cases []gradCase
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			for _, sh := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 9, 33}} {
				m, k, n := sh[0], sh[1], sh[2]
				as, bs := []int{m, k}, []int{k, n}
				if ta {
					as = []int{k, m}
				}
				if tb {
					bs = []int{n, k}
				}
				cases = append(cases,
					gradCase{name: fmt.Sprintf("2D_%v_%v_%v%v", sh, ta, tb, ""), shapes: [][]int{as, bs},
						f: func(in []*Tensor) *Tensor { return MatMul(in[0], in[1], ta, tb) }},
					gradCase{name: fmt.Sprintf("Batched_%v_%v_%v", sh, ta, tb), shapes: [][]int{append([]int{2, 3}, as...), append([]int{2, 3}, bs...)},
						f: func(in []*Tensor) *Tensor { return MatMul(in[0], in[1], ta, tb) }},
					gradCase{name: fmt.Sprintf("SharedB_%v_%v_%v", sh, ta, tb), shapes: [][]int{append([]int{3}, as...), bs},
						f: func(in []*Tensor) *Tensor { return MatMul(in[0], in[1], ta, tb) }},
				)
			}
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGrad(t, c) })
	}
}

func TestGradMisc(t *testing.T) {
	cases := []gradCase{
		{name: "MSELoss", shapes: [][]int{{3, 5}, {3, 5}}, f: func(in []*Tensor) *Tensor { return MSELoss(in[0], in[1]) }},
		{name: "Dropout", shapes: [][]int{{4, 33}}, f: func(in []*Tensor) *Tensor { return Dropout(in[0], 0.3, 42) }},
		{name: "Embedding", shapes: [][]int{{5, 3}}, f: func(in []*Tensor) *Tensor { return Embedding(in[0], []int{4, 0, 4, 2}) }},
		{name: "Checkpoint", shapes: [][]int{{3, 4}, {4, 5}}, f: func(in []*Tensor) *Tensor {
			return Checkpoint(func(x []*Tensor) *Tensor {
				h := MatMul(x[0], x[1], false, false)
				defer h.Release()
				return Mul(h, h)
			}, in...)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGrad(t, c) })
	}
}

func TestGradNN(t *testing.T) {
	const eps = 1e-5
	// maskFor returns an additive key mask [b, tk] that drops the last key of batch 1.
	maskFor := func(b, tk int) *Tensor {
		m := Zeros(b, tk)
		m.Data()[(b-1)*tk+tk-1] = float32(math.Inf(-1))
		return m
	}
	cases := []gradCase{
		{name: "GELU", shapes: [][]int{{3, 7}}, f: func(in []*Tensor) *Tensor { return GELU(in[0], false) }},
		{name: "GELUTanh", shapes: [][]int{{3, 7}}, f: func(in []*Tensor) *Tensor { return GELU(in[0], true) }},
		{name: "SiLU", shapes: [][]int{{2, 9}}, f: func(in []*Tensor) *Tensor { return SiLU(in[0]) }},
		{name: "SwiGLU", shapes: [][]int{{3, 7}, {3, 7}}, f: func(in []*Tensor) *Tensor { return GatedAct(in[0], in[1], GateSiLU) }},
		{name: "GEGLU", shapes: [][]int{{2, 9}, {2, 9}}, f: func(in []*Tensor) *Tensor { return GatedAct(in[0], in[1], GateGELU) }},
		{name: "GEGLUTanh", shapes: [][]int{{4, 5}, {4, 5}}, f: func(in []*Tensor) *Tensor { return GatedAct(in[0], in[1], GateGELUTanh) }},
		{name: "Softmax", shapes: [][]int{{3, 5}}, f: func(in []*Tensor) *Tensor { return Softmax(in[0]) }},
		{name: "LayerNormAffine", shapes: [][]int{{2, 3, 7}, {7}, {7}}, f: func(in []*Tensor) *Tensor { return LayerNorm(in[0], in[1], in[2], eps) }},
		{name: "LayerNormPlain", shapes: [][]int{{4, 6}}, f: func(in []*Tensor) *Tensor { return LayerNorm(in[0], nil, nil, eps) }},
		{name: "GroupNorm", shapes: [][]int{{2, 6, 3, 5}, {6}, {6}}, f: func(in []*Tensor) *Tensor { return GroupNorm(in[0], 3, in[1], in[2], eps) }},
		{name: "GroupNormPlain1D", shapes: [][]int{{3, 4, 7}}, f: func(in []*Tensor) *Tensor { return GroupNorm(in[0], 2, nil, nil, eps) }},
		{name: "RMSNorm", shapes: [][]int{{3, 9}, {9}}, f: func(in []*Tensor) *Tensor { return RMSNorm(in[0], in[1], 1e-6) }},
		{name: "Conv3x3", shapes: [][]int{{2, 3, 5, 7}, {4, 3, 3, 3}, {4}}, f: func(in []*Tensor) *Tensor { return Conv2d(in[0], in[1], in[2], 1, 1, 1) }},
		{name: "Conv3x3Stride2Groups", shapes: [][]int{{1, 4, 7, 6}, {6, 2, 3, 3}}, f: func(in []*Tensor) *Tensor { return Conv2d(in[0], in[1], nil, 2, 1, 2) }},
		{name: "Conv1x1", shapes: [][]int{{2, 5, 3, 3}, {3, 5, 1, 1}, {3}}, f: func(in []*Tensor) *Tensor { return Conv2d(in[0], in[1], in[2], 1, 0, 1) }},
		{name: "Upsample2x", shapes: [][]int{{2, 3, 3, 5}}, f: func(in []*Tensor) *Tensor { return UpsampleNearest2x(in[0]) }},
		{name: "AttentionSelf", shapes: [][]int{{2, 7, 8}, {2, 7, 8}, {2, 7, 8}}, f: func(in []*Tensor) *Tensor { return Attention(in[0], in[1], in[2], 2, nil, false) }},
		{name: "AttentionCrossMasked", shapes: [][]int{{2, 5, 6}, {2, 9, 6}, {2, 9, 6}}, f: func(in []*Tensor) *Tensor {
			m := maskFor(2, 9)
			defer m.Release()
			return Attention(in[0], in[1], in[2], 3, m, false)
		}},
		{name: "AttentionCausal", shapes: [][]int{{1, 6, 4}, {1, 6, 4}, {1, 6, 4}}, f: func(in []*Tensor) *Tensor { return Attention(in[0], in[1], in[2], 1, nil, true) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGrad(t, c) })
	}
}

// TestAttentionOpMatchesNaive compares the fused op with softmax(q·kᵀ/√d + mask)·v built
// from the primitive ops, forward and backward, for T up to 1024.
func TestAttentionOpMatchesNaive(t *testing.T) {
	for _, c := range []struct {
		tq, tk, heads, d int
		mask             bool
	}{{1, 1, 1, 8, false}, {33, 17, 2, 16, true}, {257, 257, 1, 40, false}, {1024, 1024, 1, 64, true}, {1024, 1024, 2, 32, false}} {
		t.Run(fmt.Sprintf("Tq%d_Tk%d_mask%v", c.tq, c.tk, c.mask), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, uint64(c.tq)))
			q := randTensor(rng, 1, c.tq, c.heads*c.d).SetRequiresGrad(true)
			k := randTensor(rng, 1, c.tk, c.heads*c.d).SetRequiresGrad(true)
			v := randTensor(rng, 1, c.tk, c.heads*c.d).SetRequiresGrad(true)
			g := randTensor(rng, 1, c.tq, c.heads*c.d)
			var mask *Tensor
			if c.mask {
				mask = Zeros(1, c.tk)
				for j := c.tk * 3 / 4; j < c.tk; j++ {
					mask.Data()[j] = float32(math.Inf(-1))
				}
			}
			run := func(fused bool) (out []float32, grads [3][]float32) {
				var o *Tensor
				if fused {
					o = Attention(q, k, v, c.heads, mask, false)
				} else {
					o = naiveAttention(q, k, v, c.heads, mask)
				}
				BackwardWith([]*Tensor{o}, []*Tensor{g})
				out = o.Float32s()
				for i, x := range []*Tensor{q, k, v} {
					grads[i] = x.Grad().Float32s()
					x.ZeroGrad()
				}
				o.Release()
				return out, grads
			}
			fo, fg := run(true)
			no, ng := run(false)
			// Both are float32 computations of the same sums in different orders:
			// agreement to 1e-5 of the largest magnitude is the bound.
			for name, pair := range map[string][2][]float32{"out": {fo, no}, "dq": {fg[0], ng[0]}, "dk": {fg[1], ng[1]}, "dv": {fg[2], ng[2]}} {
				if d := relMaxDiff(pair[0], pair[1]); d > 1e-5 {
					t.Errorf("%s: max difference %.3g relative to max|naive|", name, d)
				}
			}
			Release(q, k, v, g, mask)
		})
	}
}

// naiveAttention builds attention from primitive ops, materialising T×T.
func naiveAttention(q, k, v *Tensor, heads int, mask *Tensor) *Tensor {
	b, tq, tk, d := q.Dim(0), q.Dim(1), k.Dim(1), q.Dim(2)/heads
	split := func(x *Tensor, t int) *Tensor {
		r := Reshape(x, b, t, heads, d)
		defer r.Release()
		return Permute(r, 0, 2, 1, 3) // [B, H, T, D]
	}
	qh, kh, vh := split(q, tq), split(k, tk), split(v, tk)
	s := MatMul(qh, kh, false, true) // [B, H, Tq, Tk]
	ss := Scale(s, float32(1/math.Sqrt(float64(d))))
	if mask != nil {
		m := Reshape(mask, b, 1, 1, tk)
		masked := Add(ss, m)
		Release(m, ss)
		ss = masked
	}
	p := Softmax(ss)
	o := MatMul(p, vh, false, false) // [B, H, Tq, D]
	ot := Permute(o, 0, 2, 1, 3)
	defer Release(qh, kh, vh, s, ss, p, o, ot)
	return Reshape(ot, b, tq, heads*d)
}

func relMaxDiff(got, want []float32) float64 {
	var m, d float64
	for i := range want {
		m = math.Max(m, math.Abs(float64(want[i])))
		d = math.Max(d, math.Abs(float64(got[i])-float64(want[i])))
	}
	return d / math.Max(m, 1e-30)
}
