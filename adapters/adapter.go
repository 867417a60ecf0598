package adapters

import (
	"fmt"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// Adapter is the adapter of one layer. It implements nn.LinearAdapter or
// nn.ConvAdapter and is attached to the layer's Adapter field by Inject.
type Adapter struct {
	Name   string // module path, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
	Kind   Kind
	Rank   int
	Alpha  float64 // as saved in the file's .alpha
	impl   impl
	linear *nn.Linear
	conv   *nn.Conv2d
	set    *Set
	index  int
	// Choice records the path the last forward took ("activation", "merged" or
	// "rank-r"), for reports and tests.
	Choice string
}

// Params returns the adapter's trainable tensors named by kohya suffix
// ("lora_down.weight", ...), prefixed with prefix.
func (a *Adapter) Params(prefix string) []nn.Param {
	var out []nn.Param
	for _, p := range a.impl.params() {
		out = append(out, nn.Param{Name: prefix + p.Name, Ptr: p.Ptr, Owner: a})
	}
	return out
}

// leaves returns the trainable tensors.
func (a *Adapter) leaves() []*tensor.Tensor {
	var ts []*tensor.Tensor
	for _, p := range a.impl.params() {
		ts = append(ts, p.T())
	}
	return ts
}

// baseWeight returns the layer's frozen weight.
func (a *Adapter) baseWeight() *tensor.Tensor {
	if a.linear != nil {
		return a.linear.Weight
	}
	return a.conv.Weight
}

// ForwardLinear computes the adapted Linear layer in the set's form.
func (a *Adapter) ForwardLinear(l *nn.Linear, x *tensor.Tensor) *tensor.Tensor {
	p, seed, skip := a.set.stepState(a.index)
	if skip {
		a.Choice = "skipped"
		return l.Plain(x)
	}
	in, out := l.Weight.Dim(1), l.Weight.Dim(0)
	n := x.Len() / in
	switch a.choose(n, in, out, p) {
	case "merged":
		if lo, ok := a.impl.(*lora); ok && a.set.cfg.Form == Auto {
			// auto: the merged forward, with LoRA's rank-r backward (saves x only, and
			// no [out, in] gradient as the weight form's backward forms).
			return tensor.LoRAMerged(x, l.Weight, l.Bias, lo.down, lo.up, lo.s)
		}
		return tensor.LinearFn(x, l.Bias, a.leaves(), func() *tensor.Tensor { return a.impl.merged(l.Weight) })
	case "rank-r":
		lo := a.impl.(*lora)
		return tensor.LoRARankR(x, l.Weight, l.Bias, lo.down, lo.up, lo.s, p, seed)
	}
	return a.activationLinear(l, x, p, seed)
}

// ForwardConv computes the adapted Conv2d layer in the set's form.
func (a *Adapter) ForwardConv(c *nn.Conv2d, x *tensor.Tensor) *tensor.Tensor {
	p, seed, skip := a.set.stepState(a.index)
	if skip {
		a.Choice = "skipped"
		return c.Plain(x)
	}
	form := a.set.cfg.Form
	if lo, ok := a.impl.(*lora); ok && form == Auto {
		a.Choice = "rank-r"
		return a.rankRConv(c, lo, x, p, seed)
	}
	if form == Auto && p > 0 {
		form = Activation // a merged convolution cannot drop inputs
	}
	if form == Activation {
		a.Choice = "activation"
		return a.activationConv(c, x, p, seed)
	}
	a.Choice = "merged"
	return tensor.Conv2dFn(x, c.Bias, a.leaves(), func() *tensor.Tensor { return a.impl.merged(c.Weight) }, c.Stride, c.Padding, c.Groups)
}

// choose picks the computation for n tokens of a Linear in -> out (see the package
// documentation), recording it in Choice.
func (a *Adapter) choose(n, in, out int, p float64) string {
	switch form := a.set.cfg.Form; {
	case form == Activation:
		a.Choice = "activation"
	case form == Weight:
		a.Choice = "merged"
	case a.Kind == LoRA || a.Kind == LoCon:
		if f := a.set.cfg.AutoTokens; f != nil {
			n = f(a.Name, n)
		}
		if p == 0 && mergeFaster(n, in, out, a.Rank) {
			a.Choice = "merged"
		} else {
			a.Choice = "rank-r"
		}
	case p > 0:
		a.Choice = "activation" // only LoRA has a rank-r path that regenerates dropout
	default:
		a.Choice = "merged"
	}
	return a.Choice
}

// mergeFaster is auto's rule: merging costs ~2·r·in·out extra FLOPs and saves
// ~2·N·r·(in+out), so merge iff N > in·out/(in+out), unless a measured override for
// this CPU says otherwise.
func mergeFaster(n, in, out, r int) bool {
	if o, ok := autoOverride(n, in, out, r); ok {
		return o
	}
	return n*(in+out) > in*out
}

// activationLinear is the activation-space form, as PEFT and LyCORIS compute it.
func (a *Adapter) activationLinear(l *nn.Linear, x *tensor.Tensor, p float64, seed uint64) *tensor.Tensor {
	switch im := a.impl.(type) {
	case *lora:
		xt := tensor.DropoutMasked(x, p, seed)       // x̃, kept with its mask as PEFT does
		h := tensor.MatMul(xt, im.down, false, true) // H = x̃·Aᵀ [..., r]
		u := tensor.MatMul(h, im.up, false, true)    // H·Bᵀ [..., out]
		us := tensor.Scale(u, im.s)
		base := l.Plain(x)
		defer tensor.Release(xt, h, u, us, base)
		return tensor.Add(base, us)
	case *dora:
		// PEFT: y = (m/‖W + sBA‖) ⊙ (x̃·Wᵀ + s·x̃·Aᵀ·Bᵀ) + b, the norm detached.
		xt := tensor.DropoutMasked(x, p, seed)
		h := tensor.MatMul(xt, im.down, false, true)
		u := tensor.MatMul(h, im.up, false, true)
		us := tensor.Scale(u, im.s)
		bw := tensor.MatMul(xt, l.Weight, false, true)
		sum := tensor.Add(bw, us)
		var norm *tensor.Tensor
		tensor.NoGrad(func() {
			v := im.lora.merged(l.Weight)
			norm = rowNorms(v, []int{v.Dim(0)})
			v.Release()
		})
		m := tensor.Reshape(im.m, -1)
		g := tensor.Div(m, norm)
		y := tensor.Mul(sum, g)
		defer tensor.Release(xt, h, u, us, bw, sum, norm, m, g, y)
		if l.Bias == nil {
			return tensor.Reshape(y, y.Shape()...)
		}
		return tensor.Add(y, l.Bias)
	case *ia3:
		f := tensor.AddScalar(im.l, 1) // [out] or [in]
		defer f.Release()
		if im.onInput {
			xs := tensor.Mul(x, f)
			defer xs.Release()
			return l.Plain(xs)
		}
		// y = (x·Wᵀ) ⊙ (1 + l) + b: the bias stays unscaled, as in the merged W ⊙ (1 + l)
		// that ComfyUI and A1111 apply. x·Wᵀ is kept for dl: the N×out output the
		// weight form avoids.
		xw := tensor.MatMul(x, l.Weight, false, true)
		y := tensor.Mul(xw, f)
		defer tensor.Release(xw, y)
		if l.Bias == nil {
			return tensor.Reshape(y, y.Shape()...)
		}
		return tensor.Add(y, l.Bias)
	}
	// LoHa, LoKr: LyCORIS's bypass, y = base(x) + x̃·ΔWᵀ with ΔW built per step.
	d := a.delta()
	xt := tensor.DropoutMasked(x, p, seed)
	u := tensor.MatMul(xt, d, false, true)
	base := l.Plain(x)
	defer tensor.Release(d, xt, u, base)
	return tensor.Add(base, u)
}

// activationConv is the activation-space form of a convolution adapter.
func (a *Adapter) activationConv(c *nn.Conv2d, x *tensor.Tensor, p float64, seed uint64) *tensor.Tensor {
	xt := tensor.DropoutMasked(x, p, seed)
	defer xt.Release()
	if im, ok := a.impl.(*dora); ok {
		// DoRA rescales the whole merged weight, so the merged convolution replaces
		// the base one; it keeps x̃ and W′ for backward.
		w := im.merged(c.Weight)
		defer w.Release()
		return tensor.Conv2d(xt, w, c.Bias, c.Stride, c.Padding, c.Groups)
	}
	base := c.Plain(x)
	var u *tensor.Tensor
	if im, ok := a.impl.(*lora); ok {
		h := tensor.Conv2d(xt, im.down, nil, c.Stride, c.Padding, c.Groups) // [N, r, OH, OW]
		v := tensor.Conv2d(h, im.up, nil, 1, 0, 1)                          // [N, out, OH, OW]
		u = tensor.Scale(v, im.s)
		tensor.Release(h, v)
	} else {
		d := a.delta()
		w := tensor.Reshape(d, c.Weight.Shape()...)
		u = tensor.Conv2d(xt, w, nil, c.Stride, c.Padding, c.Groups)
		tensor.Release(d, w)
	}
	defer tensor.Release(base, u)
	return tensor.Add(base, u)
}

// rankRConv is auto's LoCon: the frozen convolution plus the low-rank branch
// s·up(down(dropout(x))) run under Checkpoint, which keeps x alone and recomputes the
// branch (H = down(x̃), r channels) in backward. It saves what the weight form saves
// with rank-r work, where the merged convolution's backward forms the full-size
// dW′ = dYᵀX at the cost of the convolution itself; and with dropout it regenerates
// the mask from the seed instead of keeping x̃ and the mask.
func (a *Adapter) rankRConv(c *nn.Conv2d, lo *lora, x *tensor.Tensor, p float64, seed uint64) *tensor.Tensor {
	base := c.Plain(x)
	u := tensor.Checkpoint(func(in []*tensor.Tensor) *tensor.Tensor {
		xt := tensor.DropoutMasked(in[0], p, seed)
		h := tensor.Conv2d(xt, lo.down, nil, c.Stride, c.Padding, c.Groups) // [N, r, OH, OW]
		v := tensor.Conv2d(h, lo.up, nil, 1, 0, 1)
		defer tensor.Release(xt, h, v)
		return tensor.Scale(v, lo.s)
	}, x)
	defer tensor.Release(base, u)
	return tensor.Add(base, u)
}

// delta returns ΔW of an additive kind, shaped [out, fan-in].
func (a *Adapter) delta() *tensor.Tensor {
	switch im := a.impl.(type) {
	case *lora:
		return im.delta()
	case *loha:
		return im.delta()
	case *lokr:
		d := im.delta()
		defer d.Release()
		return tensor.Reshape(d, a.baseWeight().Dim(0), -1)
	}
	panic(fmt.Sprintf("adapters: %s has no additive delta", a.Kind))
}
