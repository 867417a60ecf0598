package adapters

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// impl is one adapter kind's parameters and algebra on a layer weight W of shape
// [out, in] (Linear) or [out, in/groups, k, k] (Conv2d).
type impl interface {
	// params returns the trainable tensors named by their kohya suffix.
	params() []nn.Param
	// merged returns W′ = f(W, θ) built with ops, so that it records a graph to θ
	// when gradients are on. w may be 16-bit.
	merged(w *tensor.Tensor) *tensor.Tensor
	// scale is the adapter's multiplier of ΔW (alpha/rank).
	scale() float32
}

// f32 returns w as float32: itself, or a widened copy the caller must release.
func f32(w *tensor.Tensor) (*tensor.Tensor, bool) {
	if w.DType() == tensor.F32 {
		return w, false
	}
	return w.Clone(), true
}

// addDelta returns W + ΔW (reshaped to W's shape) and releases ΔW.
func addDelta(w, delta *tensor.Tensor) *tensor.Tensor {
	wf, tmp := f32(w)
	d := tensor.Reshape(delta, w.Shape()...)
	defer tensor.Release(d, delta)
	if tmp {
		defer wf.Release()
	}
	return tensor.Add(wf, d)
}

// dims returns (out, fan-in) of a Linear or Conv2d weight: fan-in is in·k·k.
func dims(w *tensor.Tensor) (out, fanIn int) {
	return w.Dim(0), w.Len() / w.Dim(0)
}

// kaiming draws PyTorch's default (Kaiming-uniform, a = √5) init: U(±1/√fanIn).
func kaiming(rng *rand.Rand, fanIn int, shape ...int) *tensor.Tensor {
	return fill(shape, func() float64 { return (2*rng.Float64() - 1) / math.Sqrt(float64(fanIn)) })
}

func gaussian(rng *rand.Rand, std float64, shape ...int) *tensor.Tensor {
	return fill(shape, func() float64 { return rng.NormFloat64() * std })
}

func fill(shape []int, draw func() float64) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(draw())
	}
	return tensor.FromFloat32(v, shape...).SetRequiresGrad(true)
}

// ---- LoRA / LoCon -------------------------------------------------------------

// lora is ΔW = s·up·down: down [r, in(, k, k)], up [out, r(, 1, 1)].
type lora struct {
	down, up *tensor.Tensor
	s        float32
}

func newLoRA(rng *rand.Rand, w *tensor.Tensor, rank int, s float32) *lora {
	out, fanIn := dims(w)
	down := []int{rank, w.Dim(1)}
	up := []int{out, rank}
	if w.Rank() == 4 {
		down = []int{rank, w.Dim(1), w.Dim(2), w.Dim(3)}
		up = []int{out, rank, 1, 1}
	}
	return &lora{down: kaiming(rng, fanIn, down...), up: tensor.Zeros(up...).SetRequiresGrad(true), s: s}
}

func (a *lora) params() []nn.Param {
	return []nn.Param{{Name: "lora_down.weight", Ptr: &a.down}, {Name: "lora_up.weight", Ptr: &a.up}}
}

func (a *lora) scale() float32 { return a.s }

// delta returns s·up·down as [out, fan-in].
func (a *lora) delta() *tensor.Tensor {
	r := a.down.Dim(0)
	d := tensor.Reshape(a.down, r, -1) // [r, in·k·k]
	u := tensor.Reshape(a.up, -1, r)   // [out, r]
	p := tensor.MatMul(u, d, false, false)
	defer tensor.Release(d, u, p)
	return tensor.Scale(p, a.s)
}

func (a *lora) merged(w *tensor.Tensor) *tensor.Tensor { return addDelta(w, a.delta()) }

// ---- DoRA ---------------------------------------------------------------------

// dora is W′ = m ⊙ V/‖V‖ with V = W + s·up·down, the norm taken per output channel
// and detached from the graph as the DoRA paper prescribes. m ("dora_scale") is
// [out, 1] (or [out, 1, 1, 1]), initialised to ‖W‖ so that W′ = W at the start.
type dora struct {
	lora
	m *tensor.Tensor
	// fixedNorm, when set, replaces ‖V‖: the finite-difference test holds the
	// detached norm constant as the analytic gradient does.
	fixedNorm *tensor.Tensor
}

func newDoRA(rng *rand.Rand, w *tensor.Tensor, rank int, s float32) *dora {
	d := &dora{lora: *newLoRA(rng, w, rank, s)}
	shape := []int{w.Dim(0), 1}
	if w.Rank() == 4 {
		shape = []int{w.Dim(0), 1, 1, 1}
	}
	d.m = rowNorms(w, shape)
	d.m.SetRequiresGrad(true)
	return d
}

func (a *dora) params() []nn.Param {
	return append(a.lora.params(), nn.Param{Name: "dora_scale", Ptr: &a.m})
}

// rowNorms returns ‖w[o]‖ per output channel as a leaf of the given shape.
func rowNorms(w *tensor.Tensor, shape []int) *tensor.Tensor {
	out, fanIn := dims(w)
	v := w.Float32s()
	n := make([]float32, out)
	for o := range out {
		var s float64
		for _, x := range v[o*fanIn : (o+1)*fanIn] {
			s += float64(x) * float64(x)
		}
		n[o] = float32(math.Sqrt(s))
	}
	return tensor.FromFloat32(n, shape...)
}

func (a *dora) merged(w *tensor.Tensor) *tensor.Tensor {
	v := a.lora.merged(w)
	var norm *tensor.Tensor
	if a.fixedNorm != nil {
		norm = a.fixedNorm.Detach()
	} else {
		tensor.NoGrad(func() { norm = rowNorms(v, a.m.Shape()) }) // detached
	}
	g := tensor.Div(a.m, norm) // [out, 1]
	defer tensor.Release(v, norm, g)
	return tensor.Mul(v, g)
}

// ---- LoHa ---------------------------------------------------------------------

// loha is ΔW = s·(w1a·w1b) ⊙ (w2a·w2b), the Hadamard product of two rank-r products
// (LyCORIS): w1a, w2a [out, r]; w1b, w2b [r, fan-in].
type loha struct {
	w1a, w1b, w2a, w2b *tensor.Tensor
	s                  float32
}

func newLoHa(rng *rand.Rand, w *tensor.Tensor, rank int, s float32) *loha {
	out, fanIn := dims(w)
	// LyCORIS's init: w1b, w2b ~ N(0, 1), w1a ~ N(0, 0.1²), w2a = 0, so ΔW starts at 0.
	return &loha{w1a: gaussian(rng, 0.1, out, rank), w1b: gaussian(rng, 1, rank, fanIn),
		w2a: tensor.Zeros(out, rank).SetRequiresGrad(true), w2b: gaussian(rng, 1, rank, fanIn), s: s}
}

func (a *loha) params() []nn.Param {
	return []nn.Param{{Name: "hada_w1_a", Ptr: &a.w1a}, {Name: "hada_w1_b", Ptr: &a.w1b},
		{Name: "hada_w2_a", Ptr: &a.w2a}, {Name: "hada_w2_b", Ptr: &a.w2b}}
}

func (a *loha) scale() float32 { return a.s }

func (a *loha) delta() *tensor.Tensor {
	p1 := tensor.MatMul(a.w1a, a.w1b, false, false)
	p2 := tensor.MatMul(a.w2a, a.w2b, false, false)
	h := tensor.Mul(p1, p2)
	defer tensor.Release(p1, p2, h)
	return tensor.Scale(h, a.s)
}

func (a *loha) merged(w *tensor.Tensor) *tensor.Tensor { return addDelta(w, a.delta()) }

// ---- LoKr ---------------------------------------------------------------------

// lokr is ΔW = s·(w1 ⊗ w2), a Kronecker product: w1 [a, c], w2 [b, d(, k, k)] with
// out = a·b and in = c·d. w2 is low-rank (w2a [b, r] · w2b [r, d·k·k]) when the rank
// is below half its larger side, as LyCORIS decides.
type lokr struct {
	w1, w2, w2a, w2b *tensor.Tensor
	w1a, w1b         *tensor.Tensor // a low-rank w1, as LyCORIS writes with decompose_both
	a, b, c, d, kk   int
	s                float32
}

// factorize splits n into (m, n/m), m <= n/m, m as close to √n as allowed, with
// m <= factor when factor > 0 (LyCORIS's factorization).
func factorize(n, factor int) (int, int) {
	if factor > 0 && n%factor == 0 && factor*factor <= n {
		return factor, n / factor
	}
	best := 1
	for m := 1; m*m <= n; m++ {
		if n%m == 0 && (factor <= 0 || m <= factor) {
			best = m
		}
	}
	return best, n / best
}

func newLoKr(rng *rand.Rand, w *tensor.Tensor, rank, factor int, alpha float64, rs bool) *lokr {
	out, in := w.Dim(0), w.Dim(1)
	kk := 1
	k := &lokr{kk: kk}
	k.a, k.b = factorize(out, factor)
	k.c, k.d = factorize(in, factor)
	k.w1 = kaiming(rng, k.c, k.a, k.c)
	if rank > 0 && float64(rank) < float64(max(k.b, k.d*kk))/2 {
		k.w2a = kaiming(rng, k.d*kk, k.b, rank)
		k.w2b = tensor.Zeros(rank, k.d*kk).SetRequiresGrad(true)
		k.s = scale(alpha, rank, rs)
	} else {
		k.w2 = tensor.Zeros(k.b, k.d*kk).SetRequiresGrad(true)
		k.s = 1 // ComfyUI applies no alpha/rank scale to a full w2
	}
	return k
}

func (a *lokr) params() []nn.Param {
	ps := []nn.Param{{Name: "lokr_w1", Ptr: &a.w1}}
	if a.w2 != nil {
		return append(ps, nn.Param{Name: "lokr_w2", Ptr: &a.w2})
	}
	return append(ps, nn.Param{Name: "lokr_w2_a", Ptr: &a.w2a}, nn.Param{Name: "lokr_w2_b", Ptr: &a.w2b})
}

func (a *lokr) scale() float32 { return a.s }

func (a *lokr) delta() *tensor.Tensor {
	w1 := a.w1
	if w1 == nil {
		w1 = tensor.MatMul(a.w1a, a.w1b, false, false) // [a, c]
		defer w1.Release()
	}
	w2 := a.w2
	if w2 == nil {
		w2 = tensor.MatMul(a.w2a, a.w2b, false, false) // [b, d·k·k]
		defer w2.Release()
	}
	x := tensor.Reshape(w1, a.a, 1, a.c, 1, 1)    // [a, 1, c, 1, 1]
	y := tensor.Reshape(w2, 1, a.b, 1, a.d, a.kk) // [1, b, 1, d, k·k]
	k := tensor.Mul(x, y)                         // [a, b, c, d, k·k]
	defer tensor.Release(x, y, k)
	return tensor.Scale(k, a.s)
}

func (a *lokr) merged(w *tensor.Tensor) *tensor.Tensor { return addDelta(w, a.delta()) }

// ---- IA3 ----------------------------------------------------------------------

// ia3 is W′ = W ⊙ (1 + l): l [out] scales output channels (keys, values), or l [in]
// scales input features (the feed-forward's second layer) when onInput is set. The
// file stores l as "weight" and the flag as "on_input", which is what ComfyUI and
// A1111 read (their update is W·l, added to W).
type ia3 struct {
	l       *tensor.Tensor
	onInput bool
}

func newIA3(w *tensor.Tensor, onInput bool) *ia3 {
	n := w.Dim(0)
	if onInput {
		n = w.Dim(1)
	}
	return &ia3{l: tensor.Zeros(n).SetRequiresGrad(true), onInput: onInput}
}

func (a *ia3) params() []nn.Param { return []nn.Param{{Name: "weight", Ptr: &a.l}} }

func (a *ia3) scale() float32 { return 1 }

// factor returns 1 + l shaped to broadcast against W.
func (a *ia3) factor(w *tensor.Tensor) *tensor.Tensor {
	shape := make([]int, w.Rank())
	for i := range shape {
		shape[i] = 1
	}
	if a.onInput {
		shape[1] = a.l.Len()
	} else {
		shape[0] = a.l.Len()
	}
	r := tensor.Reshape(a.l, shape...)
	defer r.Release()
	return tensor.AddScalar(r, 1)
}

func (a *ia3) merged(w *tensor.Tensor) *tensor.Tensor {
	wf, tmp := f32(w)
	if tmp {
		defer wf.Release()
	}
	f := a.factor(w)
	defer f.Release()
	return tensor.Mul(wf, f)
}

// newImpl builds the adapter of kind k for a layer weight w.
func newImpl(c Config, rng *rand.Rand, w *tensor.Tensor, onInput bool) (impl, error) {
	rank, alpha := c.Rank, c.Alpha
	if w.Rank() == 4 && c.ConvRank > 0 {
		rank, alpha = c.ConvRank, c.ConvAlpha
	}
	s := scale(alpha, rank, c.RSLoRA)
	switch c.Kind {
	case LoRA, LoCon:
		return newLoRA(rng, w, rank, s), nil
	case DoRA:
		return newDoRA(rng, w, rank, s), nil
	case LoHa:
		return newLoHa(rng, w, rank, s), nil
	case LoKr:
		if w.Rank() == 4 {
			return nil, fmt.Errorf("lokr adapts linear layers only")
		}
		return newLoKr(rng, w, rank, c.LoKrFactor, alpha, c.RSLoRA), nil
	case IA3:
		return newIA3(w, onInput), nil
	}
	return nil, fmt.Errorf("adapter %q: want one of %s", c.Kind, kindList())
}
