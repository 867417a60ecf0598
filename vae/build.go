package vae

import "github.com/difftune/difftune/nn"

// New returns a model for cfg with placeholder parameters to load a checkpoint into
// (nn.LoadFile): weights and biases zero, norm weights one. Every parameter is
// trainable; freeze with nn.SetTrainable. It fails, naming the config field, when cfg
// is inconsistent.
func New(cfg Config) (*AutoencoderKL, error) { return build(cfg, nn.ZeroBuilder()) }

// NewForLoading returns the model with placeholder parameters (shapes, no storage),
// for nn.LoadFile to fill straight from a checkpoint without first allocating zeros.
// Using it before every parameter is loaded panics.
func NewForLoading(cfg Config) (*AutoencoderKL, error) { return build(cfg, nn.PlaceholderBuilder()) }

// NewRandom returns a model for cfg initialised as PyTorch initialises diffusers'
// layers (uniform ±1/√fan_in for conv and linear weights and biases, norms 1 and 0),
// drawn from a PCG generator seeded with seed.
func NewRandom(cfg Config, seed uint64) (*AutoencoderKL, error) {
	return build(cfg, nn.RandomBuilder(seed))
}

// ParamShapes returns the name and shape of every parameter of a model for cfg
// without allocating it: the same construction as New, with shapes recorded instead
// of storage (the SD VAE holds 335 MB of float32).
func ParamShapes(cfg Config) (map[string][]int, error) {
	return nn.ParamShapes(func(b *nn.Builder) (*AutoencoderKL, error) { return build(cfg, b) })
}

// build constructs the model as diffusers' AutoencoderKL.__init__ does.
func build(c Config, b *nn.Builder) (*AutoencoderKL, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.clone()
	levels, chs, g := c.Levels(), c.BlockOutChannels, c.NormNumGroups
	top := chs[levels-1]
	mid := func() *MidBlock {
		m := &MidBlock{Resnets: [2]*nn.ResnetBlock2D{resnetBlock(b, g, top, top), resnetBlock(b, g, top, top)}}
		if c.MidBlockAddAttention {
			m.Attention = &AttentionBlock{GroupNorm: b.GroupNorm(g, top, normEps), Attn: &nn.Attention{Heads: 1,
				ToQ: b.Linear(top, top, true), ToK: b.Linear(top, top, true), ToV: b.Linear(top, top, true), ToOut: b.Linear(top, top, true)}}
		}
		return m
	}

	enc := &Encoder{ConvIn: b.Conv2d(c.InChannels, chs[0], 3, 1, 1)}
	out := chs[0]
	for i := range levels {
		in := out
		out = chs[i]
		d := &DownBlock{}
		for j := range c.LayersPerBlock {
			d.Resnets = append(d.Resnets, resnetBlock(b, g, pick(j == 0, in, out), out))
		}
		if i < levels-1 {
			d.Downsampler = &Downsample2D{Conv: b.Conv2d(out, out, 3, 2, 0)}
		}
		enc.DownBlocks = append(enc.DownBlocks, d)
	}
	enc.MidBlock = mid()
	enc.ConvNormOut = b.GroupNorm(g, top, normEps)
	enc.ConvOut = b.Conv2d(top, 2*c.LatentChannels, 3, 1, 1)

	dec := &Decoder{ConvIn: b.Conv2d(c.LatentChannels, top, 3, 1, 1), MidBlock: mid()}
	out = top
	for i := range levels {
		prev := out
		out = chs[levels-1-i] // the up blocks run from the lowest resolution up
		u := &UpBlock{}
		for j := range c.LayersPerBlock + 1 {
			u.Resnets = append(u.Resnets, resnetBlock(b, g, pick(j == 0, prev, out), out))
		}
		if i < levels-1 {
			u.Upsampler = &nn.Upsample2D{Conv: b.Conv2d(out, out, 3, 1, 1)}
		}
		dec.UpBlocks = append(dec.UpBlocks, u)
	}
	dec.ConvNormOut = b.GroupNorm(g, chs[0], normEps)
	dec.ConvOut = b.Conv2d(chs[0], c.OutChannels, 3, 1, 1)

	m := &AutoencoderKL{Config: c, Encoder: enc, Decoder: dec}
	if c.UseQuantConv {
		m.QuantConv = b.Conv2d(2*c.LatentChannels, 2*c.LatentChannels, 1, 1, 0)
	}
	if c.UsePostQuantConv {
		m.PostQuantConv = b.Conv2d(c.LatentChannels, c.LatentChannels, 1, 1, 0)
	}
	return m, nil
}

func pick(cond bool, a, b int) int {
	if cond {
		return a
	}
	return b
}

// resnetBlock is ResnetBlock2D(in, out, temb_channels=None, groups, eps=1e-6).
func resnetBlock(b *nn.Builder, groups, in, out int) *nn.ResnetBlock2D {
	return b.ResnetBlock2D(in, out, 0, groups, normEps, 1)
}
