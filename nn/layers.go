package nn

import (
	"fmt"
	"math/rand/v2"

	"github.com/difftune/difftune/tensor"
)

// Linear is y = x·Wᵀ + b with W [out, in] and b [out] (nil without bias). When an
// Adapter is attached, it computes the output instead (package adapters).
type Linear struct {
	Weight, Bias *tensor.Tensor
	Adapter      LinearAdapter
}

// LinearAdapter computes an adapted Linear layer's output from the layer and x.
type LinearAdapter interface {
	ForwardLinear(l *Linear, x *tensor.Tensor) *tensor.Tensor
}

// ConvAdapter computes an adapted Conv2d layer's output from the layer and x.
type ConvAdapter interface {
	ForwardConv(c *Conv2d, x *tensor.Tensor) *tensor.Tensor
}

// NewLinear returns a Linear initialised as PyTorch does (uniform ±1/√in).
func NewLinear(rng *rand.Rand, in, out int, bias bool) *Linear {
	l := &Linear{Weight: uniform(rng, fanInBound(in), out, in)}
	if bias {
		l.Bias = uniform(rng, fanInBound(in), out)
	}
	return l
}

// Params returns "weight" and "bias".
func (l *Linear) Params(prefix string) []Param {
	return Named(prefix, l, Param{Name: "weight", Ptr: &l.Weight}, Param{Name: "bias", Ptr: &l.Bias})
}

// Forward applies the layer to x [..., in].
func (l *Linear) Forward(x *tensor.Tensor) *tensor.Tensor {
	if l.Adapter != nil {
		return l.Adapter.ForwardLinear(l, x)
	}
	return l.Plain(x)
}

// Plain applies the layer without its adapter.
func (l *Linear) Plain(x *tensor.Tensor) *tensor.Tensor {
	return tensor.Linear(x, l.Weight, l.Bias)
}

// Conv2d is a 2-D convolution with square stride and zero padding. When an Adapter
// is attached, it computes the output instead.
type Conv2d struct {
	Weight, Bias            *tensor.Tensor
	Stride, Padding, Groups int
	Adapter                 ConvAdapter
}

// NewConv2d returns a Conv2d with a k×k kernel initialised as PyTorch does.
func NewConv2d(rng *rand.Rand, in, out, k, stride, padding, groups int, bias bool) *Conv2d {
	if groups <= 0 || in%groups != 0 || out%groups != 0 {
		panic(fmt.Sprintf("nn.NewConv2d: %d groups for %d -> %d channels", groups, in, out))
	}
	fanIn := in / groups * k * k
	c := &Conv2d{Weight: uniform(rng, fanInBound(fanIn), out, in/groups, k, k), Stride: stride, Padding: padding, Groups: groups}
	if bias {
		c.Bias = uniform(rng, fanInBound(fanIn), out)
	}
	return c
}

// Params returns "weight" and "bias".
func (c *Conv2d) Params(prefix string) []Param {
	return Named(prefix, c, Param{Name: "weight", Ptr: &c.Weight}, Param{Name: "bias", Ptr: &c.Bias})
}

// Forward convolves x [N, C, H, W].
func (c *Conv2d) Forward(x *tensor.Tensor) *tensor.Tensor {
	if c.Adapter != nil {
		return c.Adapter.ForwardConv(c, x)
	}
	return c.Plain(x)
}

// Plain applies the convolution without its adapter.
func (c *Conv2d) Plain(x *tensor.Tensor) *tensor.Tensor {
	return tensor.Conv2d(x, c.Weight, c.Bias, c.Stride, c.Padding, c.Groups)
}

// GroupNorm normalises [N, C, ...] in Groups groups of channels.
type GroupNorm struct {
	Groups       int
	Eps          float32
	Weight, Bias *tensor.Tensor
}

// NewGroupNorm returns an affine GroupNorm (weight 1, bias 0).
func NewGroupNorm(groups, channels int, eps float32) *GroupNorm {
	return &GroupNorm{Groups: groups, Eps: eps,
		Weight: tensor.Full(1, channels).SetRequiresGrad(true), Bias: tensor.Zeros(channels).SetRequiresGrad(true)}
}

// Params returns "weight" and "bias".
func (g *GroupNorm) Params(prefix string) []Param {
	return Named(prefix, g, Param{Name: "weight", Ptr: &g.Weight}, Param{Name: "bias", Ptr: &g.Bias})
}

// Forward normalises x.
func (g *GroupNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.GroupNorm(x, g.Groups, g.Weight, g.Bias, g.Eps)
}

// LayerNorm normalises the last axis; Weight and Bias are nil without affine.
type LayerNorm struct {
	Eps          float32
	Weight, Bias *tensor.Tensor
}

// NewLayerNorm returns a LayerNorm over dim features, affine (weight 1, bias 0) or not.
func NewLayerNorm(dim int, eps float32, affine bool) *LayerNorm {
	l := &LayerNorm{Eps: eps}
	if affine {
		l.Weight = tensor.Full(1, dim).SetRequiresGrad(true)
		l.Bias = tensor.Zeros(dim).SetRequiresGrad(true)
	}
	return l
}

// Params returns "weight" and "bias" when affine.
func (l *LayerNorm) Params(prefix string) []Param {
	return Named(prefix, l, Param{Name: "weight", Ptr: &l.Weight}, Param{Name: "bias", Ptr: &l.Bias})
}

// Forward normalises x.
func (l *LayerNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.LayerNorm(x, l.Weight, l.Bias, l.Eps)
}

// Embedding is a lookup table [num, dim].
type Embedding struct {
	Weight *tensor.Tensor
}

// NewEmbedding returns an Embedding initialised from N(0, 1) as PyTorch does.
func NewEmbedding(rng *rand.Rand, num, dim int) *Embedding {
	return &Embedding{Weight: normal(rng, 1, num, dim)}
}

// Params returns "weight".
func (e *Embedding) Params(prefix string) []Param {
	return Named(prefix, e, Param{Name: "weight", Ptr: &e.Weight})
}

// Forward returns the rows for ids as [len(ids), dim]. It returns an error naming the
// id when one is out of range, since ids may come from files.
func (e *Embedding) Forward(ids []int) (*tensor.Tensor, error) {
	v := e.Weight.Dim(0)
	for i, id := range ids {
		if id < 0 || id >= v {
			return nil, fmt.Errorf("embedding: id %d at position %d is outside the table of %d rows", id, i, v)
		}
	}
	return tensor.Embedding(e.Weight, ids), nil
}
