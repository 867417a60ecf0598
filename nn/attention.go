package nn

import (
	"fmt"
	"math/rand/v2"

	"github.com/difftune/difftune/tensor"
)

// Attention is diffusers' Attention block: separate to_q, to_k, to_v projections,
// fused multi-head scaled-dot-product attention, and the output projection to_out.0.
// With a context it is cross-attention (keys and values from the context).
type Attention struct {
	Heads                int
	ToQ, ToK, ToV, ToOut *Linear
}

// NewAttention returns an Attention for queries of queryDim features and context of
// contextDim features (contextDim == queryDim for self-attention), heads heads of
// headDim each. qkvBias adds biases to the q/k/v projections (to_out.0 always has one).
func NewAttention(rng *rand.Rand, queryDim, contextDim, heads, headDim int, qkvBias bool) *Attention {
	inner := heads * headDim
	return &Attention{
		Heads: heads,
		ToQ:   NewLinear(rng, queryDim, inner, qkvBias),
		ToK:   NewLinear(rng, contextDim, inner, qkvBias),
		ToV:   NewLinear(rng, contextDim, inner, qkvBias),
		ToOut: NewLinear(rng, inner, queryDim, true),
	}
}

// Params returns to_q, to_k, to_v and to_out.0.
func (a *Attention) Params(prefix string) []Param {
	return Children(prefix, Child{"to_q", a.ToQ}, Child{"to_k", a.ToK}, Child{"to_v", a.ToV}, Child{"to_out.0", a.ToOut})
}

// Forward attends from x [B, T, queryDim] to context [B, S, contextDim], or to x itself
// when context is nil. mask is nil or an additive [B, S] key mask.
func (a *Attention) Forward(x, context, mask *tensor.Tensor) *tensor.Tensor {
	if context == nil {
		context = x
	}
	if x.Rank() != 3 || context.Rank() != 3 || x.Dim(0) != context.Dim(0) {
		panic(fmt.Sprintf("nn.Attention: input %v, context %v", x.Shape(), context.Shape()))
	}
	q, k, v := a.ToQ.Forward(x), a.ToK.Forward(context), a.ToV.Forward(context) // [B, T, H·D], [B, S, H·D]
	defer tensor.Release(q, k, v)
	o := tensor.Attention(q, k, v, a.Heads, mask, false) // [B, T, H·D]
	defer o.Release()
	return a.ToOut.Forward(o)
}

// Activation names the feed-forward activation as diffusers' act_fn does.
type Activation string

// Feed-forward activations.
const (
	ActGELU       Activation = "gelu"             // exact GELU
	ActGELUTanh   Activation = "gelu-approximate" // GELU, tanh approximation
	ActGEGLU      Activation = "geglu"            // GELU-gated linear unit
	ActGEGLUTanh  Activation = "geglu-approximate"
	defaultFFMult            = 4
)

// FeedForward is diffusers' FeedForward: net.0 (a projection with the activation,
// "net.0.proj") then net.2 (the output Linear). GEGLU projects to twice the inner
// width and gates one half with GELU of the other.
type FeedForward struct {
	Act  Activation
	Proj *Linear // net.0.proj
	Out  *Linear // net.2
}

// NewFeedForward returns a FeedForward dim -> inner -> dimOut. inner <= 0 means 4·dim.
func NewFeedForward(rng *rand.Rand, dim, inner, dimOut int, act Activation) (*FeedForward, error) {
	if inner <= 0 {
		inner = defaultFFMult * dim
	}
	width := inner
	switch act {
	case ActGELU, ActGELUTanh:
	case ActGEGLU, ActGEGLUTanh:
		width = 2 * inner
	default:
		return nil, fmt.Errorf("feed-forward activation %q: want one of gelu, gelu-approximate, geglu, geglu-approximate", act)
	}
	return &FeedForward{Act: act, Proj: NewLinear(rng, dim, width, true), Out: NewLinear(rng, inner, dimOut, true)}, nil
}

// Params returns net.0.proj and net.2.
func (f *FeedForward) Params(prefix string) []Param {
	return Children(prefix, Child{"net.0.proj", f.Proj}, Child{"net.2", f.Out})
}

// Forward applies the feed-forward to x [..., dim].
func (f *FeedForward) Forward(x *tensor.Tensor) *tensor.Tensor {
	h := f.Proj.Forward(x)
	defer h.Release()
	tanh := f.Act == ActGELUTanh || f.Act == ActGEGLUTanh
	var a *tensor.Tensor
	if f.Act == ActGEGLU || f.Act == ActGEGLUTanh {
		parts := tensor.Chunk(h, 2, -1) // hidden, gate: [..., inner] each
		act := tensor.GateGELU
		if tanh {
			act = tensor.GateGELUTanh
		}
		a = tensor.GatedAct(parts[0], parts[1], act) // keeps the two halves, not GELU(gate) too
		tensor.Release(parts[0], parts[1])
	} else {
		a = tensor.GELU(h, tanh)
	}
	defer a.Release()
	return f.Out.Forward(a)
}
