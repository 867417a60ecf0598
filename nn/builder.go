package nn

import (
	"math/rand/v2"

	"github.com/difftune/difftune/tensor"
)

// builderMode says how a Builder gives its parameters storage.
type builderMode int

const (
	modeZeros        builderMode = iota // zeros, norm weights one
	modeRandom                          // PyTorch's default initialisation
	modeShapes                          // no storage: one shared stub, shapes recorded
	modePlaceholders                    // tensor.Placeholder per parameter, for loading
)

// Builder makes the layers of a model. Only how parameters get storage differs
// between its three modes (ZeroBuilder, RandomBuilder, ParamShapes), so a model built
// by one function describes the same parameters in all three. A model package writes
// its constructor once, over a *Builder, and its blocks from these layers.
type Builder struct {
	mode   builderMode
	rng    *rand.Rand
	stub   *tensor.Tensor
	shapes map[**tensor.Tensor][]int
}

// ZeroBuilder returns a Builder of placeholder parameters to load a checkpoint into
// (LoadFile): weights and biases zero, norm weights one, all trainable.
func ZeroBuilder() *Builder { return &Builder{mode: modeZeros} }

// PlaceholderBuilder returns a Builder whose parameters are tensor.Placeholder: shapes
// without storage, for a model that LoadFile fills straight from a checkpoint.
func PlaceholderBuilder() *Builder { return &Builder{mode: modePlaceholders} }

// RandomBuilder returns a Builder that initialises layers as PyTorch does (uniform
// ±1/√fan_in for linear and conv weights and biases, norms 1 and 0), drawing from a
// PCG generator seeded with seed.
func RandomBuilder(seed uint64) *Builder {
	return &Builder{mode: modeRandom, rng: rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))}
}

// ParamShapes returns the name and shape of every parameter of the model build makes,
// without allocating its storage: build runs with a Builder whose parameters all share
// one stub tensor while their shapes are recorded. It returns build's error.
func ParamShapes[M Module](build func(*Builder) (M, error)) (map[string][]int, error) {
	b := &Builder{mode: modeShapes, stub: tensor.Zeros(1), shapes: map[**tensor.Tensor][]int{}}
	defer b.stub.Release()
	m, err := build(b)
	if err != nil {
		return nil, err
	}
	out := map[string][]int{}
	for _, p := range m.Params("") {
		out[p.Name] = b.shapes[p.Ptr]
	}
	return out, nil
}

// Param fills *p with a trainable tensor of the shape, all values v (in the shapes
// mode, the shared stub).
func (b *Builder) Param(p **tensor.Tensor, v float32, shape ...int) {
	switch b.mode {
	case modeShapes:
		*p, b.shapes[p] = b.stub, shape
		return
	case modePlaceholders:
		*p = tensor.Placeholder(shape...)
		return
	}
	*p = tensor.Full(v, shape...).SetRequiresGrad(true)
}

// Linear returns a Linear in -> out, with a bias or not.
func (b *Builder) Linear(in, out int, bias bool) *Linear {
	if b.mode == modeRandom {
		return NewLinear(b.rng, in, out, bias)
	}
	l := &Linear{}
	b.Param(&l.Weight, 0, out, in)
	if bias {
		b.Param(&l.Bias, 0, out)
	}
	return l
}

// Conv2d returns a Conv2d in -> out with a k×k kernel and a bias, ungrouped.
func (b *Builder) Conv2d(in, out, k, stride, padding int) *Conv2d {
	if b.mode == modeRandom {
		return NewConv2d(b.rng, in, out, k, stride, padding, 1, true)
	}
	c := &Conv2d{Stride: stride, Padding: padding, Groups: 1}
	b.Param(&c.Weight, 0, out, in, k, k)
	b.Param(&c.Bias, 0, out)
	return c
}

// GroupNorm returns an affine GroupNorm (weight 1, bias 0 in every mode).
func (b *Builder) GroupNorm(groups, channels int, eps float32) *GroupNorm {
	g := &GroupNorm{Groups: groups, Eps: eps}
	b.Param(&g.Weight, 1, channels)
	b.Param(&g.Bias, 0, channels)
	return g
}

// LayerNorm returns an affine LayerNorm over dim features (weight 1, bias 0 in every
// mode).
func (b *Builder) LayerNorm(dim int, eps float32) *LayerNorm {
	l := &LayerNorm{Eps: eps}
	b.Param(&l.Weight, 1, dim)
	b.Param(&l.Bias, 0, dim)
	return l
}

// ResnetBlock2D returns diffusers' ResnetBlock2D(in, out, temb_channels, groups, eps,
// output_scale_factor): 3×3 convolutions, a 1×1 shortcut when in != out, and a
// time-embedding projection from temb channels unless temb is 0 (temb_channels=None,
// as in the VAE).
func (b *Builder) ResnetBlock2D(in, out, temb, groups int, eps float32, outScale float64) *ResnetBlock2D {
	r := &ResnetBlock2D{Norm1: b.GroupNorm(groups, in, eps), Conv1: b.Conv2d(in, out, 3, 1, 1)}
	if temb > 0 {
		r.TimeEmbProj = b.Linear(temb, out, true)
	}
	r.Norm2, r.Conv2 = b.GroupNorm(groups, out, eps), b.Conv2d(out, out, 3, 1, 1)
	r.OutputScaleFactor = outScale
	if in != out {
		r.ConvShortcut = b.Conv2d(in, out, 1, 1, 0)
	}
	return r
}
