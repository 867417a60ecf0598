package vae

import (
	"math/rand/v2"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// New returns a model for cfg with placeholder parameters to load a checkpoint into
// (nn.LoadFile): weights and biases zero, norm weights one. Every parameter is
// trainable; freeze with nn.SetTrainable. It fails, naming the config field, when cfg
// is inconsistent.
func New(cfg Config) (*AutoencoderKL, error) { return build(cfg, &builder{mode: initZeros}) }

// NewRandom returns a model for cfg initialised as PyTorch initialises diffusers'
// layers (uniform ±1/√fan_in for conv and linear weights and biases, norms 1 and 0),
// drawn from a PCG generator seeded with seed.
func NewRandom(cfg Config, seed uint64) (*AutoencoderKL, error) {
	return build(cfg, &builder{mode: initRandom, rng: rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))})
}

// ParamShapes returns the name and shape of every parameter of a model for cfg
// without allocating it: the same construction as New, with shapes recorded instead
// of storage (the SD VAE holds 335 MB of float32).
func ParamShapes(cfg Config) (map[string][]int, error) {
	b := &builder{mode: initShapes, stub: tensor.Zeros(1), shapes: map[**tensor.Tensor][]int{}}
	defer b.stub.Release()
	m, err := build(cfg, b)
	if err != nil {
		return nil, err
	}
	out := map[string][]int{}
	for _, p := range m.Params("") {
		out[p.Name] = b.shapes[p.Ptr]
	}
	return out, nil
}

// build constructs the model as diffusers' AutoencoderKL.__init__ does.
func build(c Config, b *builder) (*AutoencoderKL, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.clone()
	levels, chs, g := c.Levels(), c.BlockOutChannels, c.NormNumGroups
	top := chs[levels-1]
	mid := func() *MidBlock {
		m := &MidBlock{Resnets: [2]*nn.ResnetBlock2D{b.resnet(g, top, top), b.resnet(g, top, top)}}
		if c.MidBlockAddAttention {
			m.Attention = &AttentionBlock{GroupNorm: b.groupNorm(g, top), Attn: &nn.Attention{Heads: 1,
				ToQ: b.linear(top, top), ToK: b.linear(top, top), ToV: b.linear(top, top), ToOut: b.linear(top, top)}}
		}
		return m
	}

	enc := &Encoder{ConvIn: b.conv(c.InChannels, chs[0], 3, 1, 1)}
	out := chs[0]
	for i := range levels {
		in := out
		out = chs[i]
		d := &DownBlock{}
		for j := range c.LayersPerBlock {
			d.Resnets = append(d.Resnets, b.resnet(g, pick(j == 0, in, out), out))
		}
		if i < levels-1 {
			d.Downsampler = &Downsample2D{Conv: b.conv(out, out, 3, 2, 0)}
		}
		enc.DownBlocks = append(enc.DownBlocks, d)
	}
	enc.MidBlock = mid()
	enc.ConvNormOut = b.groupNorm(g, top)
	enc.ConvOut = b.conv(top, 2*c.LatentChannels, 3, 1, 1)

	dec := &Decoder{ConvIn: b.conv(c.LatentChannels, top, 3, 1, 1), MidBlock: mid()}
	out = top
	for i := range levels {
		prev := out
		out = chs[levels-1-i] // the up blocks run from the lowest resolution up
		u := &UpBlock{}
		for j := range c.LayersPerBlock + 1 {
			u.Resnets = append(u.Resnets, b.resnet(g, pick(j == 0, prev, out), out))
		}
		if i < levels-1 {
			u.Upsampler = &Upsample2D{Conv: b.conv(out, out, 3, 1, 1)}
		}
		dec.UpBlocks = append(dec.UpBlocks, u)
	}
	dec.ConvNormOut = b.groupNorm(g, chs[0])
	dec.ConvOut = b.conv(chs[0], c.OutChannels, 3, 1, 1)

	m := &AutoencoderKL{Config: c, Encoder: enc, Decoder: dec}
	if c.UseQuantConv {
		m.QuantConv = b.conv(2*c.LatentChannels, 2*c.LatentChannels, 1, 1, 0)
	}
	if c.UsePostQuantConv {
		m.PostQuantConv = b.conv(c.LatentChannels, c.LatentChannels, 1, 1, 0)
	}
	return m, nil
}

func pick(cond bool, a, b int) int {
	if cond {
		return a
	}
	return b
}

// initMode says how a builder makes parameters.
type initMode int

const (
	initZeros  initMode = iota // placeholders to load into: zeros, norm weights one
	initRandom                 // PyTorch's default initialisation
	initShapes                 // no storage: one shared stub, shapes recorded
)

// builder makes the layers of a model; only how parameters get storage differs
// between its modes, so ParamShapes describes exactly what New builds.
type builder struct {
	mode   initMode
	rng    *rand.Rand
	stub   *tensor.Tensor
	shapes map[**tensor.Tensor][]int
}

// param fills *p with a trainable tensor of the shape, all values v.
func (b *builder) param(p **tensor.Tensor, v float32, shape ...int) {
	if b.mode == initShapes {
		*p, b.shapes[p] = b.stub, shape
		return
	}
	*p = tensor.Full(v, shape...).SetRequiresGrad(true)
}

// linear is a Linear in -> out with bias (the mid-block attention's projections).
func (b *builder) linear(in, out int) *nn.Linear {
	if b.mode == initRandom {
		return nn.NewLinear(b.rng, in, out, true)
	}
	l := &nn.Linear{}
	b.param(&l.Weight, 0, out, in)
	b.param(&l.Bias, 0, out)
	return l
}

func (b *builder) conv(in, out, k, stride, padding int) *nn.Conv2d {
	if b.mode == initRandom {
		return nn.NewConv2d(b.rng, in, out, k, stride, padding, 1, true)
	}
	c := &nn.Conv2d{Stride: stride, Padding: padding, Groups: 1}
	b.param(&c.Weight, 0, out, in, k, k)
	b.param(&c.Bias, 0, out)
	return c
}

func (b *builder) groupNorm(groups, channels int) *nn.GroupNorm {
	g := &nn.GroupNorm{Groups: groups, Eps: normEps}
	b.param(&g.Weight, 1, channels)
	b.param(&g.Bias, 0, channels)
	return g
}

// resnet is ResnetBlock2D(in, out, temb_channels=None, groups, eps=1e-6).
func (b *builder) resnet(groups, in, out int) *nn.ResnetBlock2D {
	r := &nn.ResnetBlock2D{
		Norm1: b.groupNorm(groups, in), Conv1: b.conv(in, out, 3, 1, 1),
		Norm2: b.groupNorm(groups, out), Conv2: b.conv(out, out, 3, 1, 1),
		OutputScaleFactor: 1,
	}
	if in != out {
		r.ConvShortcut = b.conv(in, out, 1, 1, 0)
	}
	return r
}
