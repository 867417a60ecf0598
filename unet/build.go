package unet

import (
	"strconv"

	"github.com/difftune/difftune/nn"
)

// New returns a model for cfg with placeholder parameters to load a checkpoint into
// (nn.LoadFile): weights and biases zero, norm weights one. Every parameter is
// trainable; freeze with nn.SetTrainable. It fails, naming the config field, when cfg
// is inconsistent.
func New(cfg Config) (*UNet2DConditionModel, error) { return build(cfg, nn.ZeroBuilder()) }

// NewForLoading returns the model with placeholder parameters (shapes, no storage),
// for nn.LoadFile to fill straight from a checkpoint without first allocating zeros.
// Using it before every parameter is loaded panics.
func NewForLoading(cfg Config) (*UNet2DConditionModel, error) {
	return build(cfg, nn.PlaceholderBuilder())
}

// NewRandom returns a model for cfg initialised as PyTorch initialises diffusers'
// layers (uniform ±1/√fan_in for linear and conv weights and biases, norms 1 and 0),
// drawn from a PCG generator seeded with seed.
func NewRandom(cfg Config, seed uint64) (*UNet2DConditionModel, error) {
	return build(cfg, nn.RandomBuilder(seed))
}

// ParamShapes returns the name and shape of every parameter of a model for cfg
// without allocating it: the same construction as New, with shapes recorded instead
// of storage (an SD 1.5 UNet holds 3.4 GB of float32).
func ParamShapes(cfg Config) (map[string][]int, error) {
	return nn.ParamShapes(func(b *nn.Builder) (*UNet2DConditionModel, error) { return build(cfg, b) })
}

// build constructs the model as diffusers' UNet2DConditionModel.__init__ does.
func build(c Config, b *nn.Builder) (*UNet2DConditionModel, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.clone()
	levels, c0 := c.Levels(), c.BlockOutChannels[0]
	m := &UNet2DConditionModel{Config: c}
	m.ConvIn = b.Conv2d(c.InChannels, c0, c.ConvInKernel, 1, (c.ConvInKernel-1)/2)
	m.TimeEmbedding = &nn.TimestepMLP{Linear1: b.Linear(c0, c.TimeEmbeddingDim, true), Linear2: b.Linear(c.TimeEmbeddingDim, c.TimeEmbeddingDim, true)}

	out := c0
	for i, typ := range c.DownBlockTypes {
		in := out
		out = c.BlockOutChannels[i]
		d := &DownBlock{Type: typ, name: "down_blocks." + strconv.Itoa(i)}
		for j := range c.LayersPerBlock[i] {
			d.Resnets = append(d.Resnets, resnet(b, c, pick(j == 0, in, out), out, c.ResnetOutScaleFactor))
			if typ == CrossAttnDownBlock2D {
				d.Attentions = append(d.Attentions, transformer(b, c, out, i))
			}
		}
		if i < levels-1 {
			d.Downsampler = &Downsample2D{Conv: b.Conv2d(out, out, 3, 2, c.DownsamplePadding)}
		}
		m.DownBlocks = append(m.DownBlocks, d)
	}

	ch := c.BlockOutChannels[levels-1]
	m.MidBlock = &MidBlock{name: "mid_block",
		Resnets:    []*nn.ResnetBlock2D{resnet(b, c, ch, ch, c.MidBlockScaleFactor), resnet(b, c, ch, ch, c.MidBlockScaleFactor)},
		Attentions: []*Transformer2DModel{transformer(b, c, ch, levels-1)}}

	out = ch
	for i, typ := range c.UpBlockTypes {
		level := levels - 1 - i // the up blocks run from the lowest resolution up
		prev := out
		out = c.BlockOutChannels[level]
		in := c.BlockOutChannels[max(level-1, 0)] // channels of the skip from the level above
		u := &UpBlock{Type: typ, name: "up_blocks." + strconv.Itoa(i)}
		n := c.LayersPerBlock[level] + 1
		for j := range n {
			skip := pick(j == n-1, in, out)
			u.Resnets = append(u.Resnets, resnet(b, c, pick(j == 0, prev, out)+skip, out, c.ResnetOutScaleFactor))
			if typ == CrossAttnUpBlock2D {
				u.Attentions = append(u.Attentions, transformer(b, c, out, level))
			}
		}
		if i < levels-1 {
			u.Upsampler = &nn.Upsample2D{Conv: b.Conv2d(out, out, 3, 1, 1)}
		}
		m.UpBlocks = append(m.UpBlocks, u)
	}

	m.ConvNormOut = b.GroupNorm(c.NormNumGroups, c0, float32(c.NormEps))
	m.ConvOut = b.Conv2d(c0, c.OutChannels, c.ConvOutKernel, 1, (c.ConvOutKernel-1)/2)
	return m, nil
}

func pick(cond bool, a, b int) int {
	if cond {
		return a
	}
	return b
}

// resnet is ResnetBlock2D(in, out, temb_channels, groups, eps, output_scale_factor).
func resnet(b *nn.Builder, c Config, in, out int, outScale float64) *nn.ResnetBlock2D {
	return b.ResnetBlock2D(in, out, c.TimeEmbeddingDim, c.NormNumGroups, float32(c.NormEps), outScale)
}

// transformer is Transformer2DModel(heads, channels/heads, in_channels=channels) at
// the given level: inner width = channels, GEGLU feed-forward of 4·channels.
func transformer(b *nn.Builder, c Config, channels, level int) *Transformer2DModel {
	t := &Transformer2DModel{Norm: b.GroupNorm(c.NormNumGroups, channels, transformerNormEps), UseLinearProjection: c.UseLinearProjection}
	if c.UseLinearProjection {
		t.ProjIn, t.ProjOut = b.Linear(channels, channels, true), b.Linear(channels, channels, true)
	} else {
		t.ProjIn, t.ProjOut = b.Conv2d(channels, channels, 1, 1, 0), b.Conv2d(channels, channels, 1, 1, 0)
	}
	heads, cross := c.AttentionHeads[level], c.CrossAttentionDim[level]
	for range c.TransformerLayersPerBlock[level] {
		t.TransformerBlocks = append(t.TransformerBlocks, &BasicTransformerBlock{
			Norm1: b.LayerNorm(channels, layerNormEps),
			Attn1: attention(b, channels, channels, heads),
			Norm2: b.LayerNorm(channels, layerNormEps),
			Attn2: attention(b, channels, cross, heads),
			Norm3: b.LayerNorm(channels, layerNormEps),
			FF:    &nn.FeedForward{Act: nn.ActGEGLU, Proj: b.Linear(channels, 2*4*channels, true), Out: b.Linear(4*channels, channels, true)},
		})
	}
	return t
}

// attention is diffusers' Attention without q/k/v biases (attention_bias=False).
func attention(b *nn.Builder, query, context, heads int) *nn.Attention {
	return &nn.Attention{Heads: heads,
		ToQ: b.Linear(query, query, false), ToK: b.Linear(context, query, false),
		ToV: b.Linear(context, query, false), ToOut: b.Linear(query, query, true)}
}
