package unet

import (
	"math/rand/v2"
	"strconv"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// New returns a model for cfg with placeholder parameters to load a checkpoint into
// (nn.LoadFile): weights and biases zero, norm weights one. Every parameter is
// trainable; freeze with nn.SetTrainable. It fails, naming the config field, when cfg
// is inconsistent.
func New(cfg Config) (*UNet2DConditionModel, error) {
	return build(cfg, &builder{mode: initZeros})
}

// NewRandom returns a model for cfg initialised as PyTorch initialises diffusers'
// layers (uniform ±1/√fan_in for linear and conv weights and biases, norms 1 and 0),
// drawn from a PCG generator seeded with seed.
func NewRandom(cfg Config, seed uint64) (*UNet2DConditionModel, error) {
	return build(cfg, &builder{mode: initRandom, rng: rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))})
}

// ParamShapes returns the name and shape of every parameter of a model for cfg
// without allocating it: the same construction as New, with shapes recorded instead
// of storage (an SD 1.5 UNet holds 3.4 GB of float32).
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

// build constructs the model as diffusers' UNet2DConditionModel.__init__ does.
func build(c Config, b *builder) (*UNet2DConditionModel, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.clone()
	levels, c0 := c.Levels(), c.BlockOutChannels[0]
	m := &UNet2DConditionModel{Config: c}
	m.ConvIn = b.conv(c.InChannels, c0, c.ConvInKernel, 1, (c.ConvInKernel-1)/2)
	m.TimeEmbedding = &nn.TimestepMLP{Linear1: b.linear(c0, c.TimeEmbeddingDim, true), Linear2: b.linear(c.TimeEmbeddingDim, c.TimeEmbeddingDim, true)}

	out := c0
	for i, typ := range c.DownBlockTypes {
		in := out
		out = c.BlockOutChannels[i]
		d := &DownBlock{Type: typ, name: "down_blocks." + strconv.Itoa(i)}
		for j := range c.LayersPerBlock[i] {
			d.Resnets = append(d.Resnets, b.resnet(c, pick(j == 0, in, out), out, c.ResnetOutScaleFactor))
			if typ == CrossAttnDownBlock2D {
				d.Attentions = append(d.Attentions, b.transformer(c, out, i))
			}
		}
		if i < levels-1 {
			d.Downsampler = &Downsample2D{Conv: b.conv(out, out, 3, 2, c.DownsamplePadding)}
		}
		m.DownBlocks = append(m.DownBlocks, d)
	}

	ch := c.BlockOutChannels[levels-1]
	m.MidBlock = &MidBlock{name: "mid_block",
		Resnets:    []*nn.ResnetBlock2D{b.resnet(c, ch, ch, c.MidBlockScaleFactor), b.resnet(c, ch, ch, c.MidBlockScaleFactor)},
		Attentions: []*Transformer2DModel{b.transformer(c, ch, levels-1)}}

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
			u.Resnets = append(u.Resnets, b.resnet(c, pick(j == 0, prev, out)+skip, out, c.ResnetOutScaleFactor))
			if typ == CrossAttnUpBlock2D {
				u.Attentions = append(u.Attentions, b.transformer(c, out, level))
			}
		}
		if i < levels-1 {
			u.Upsampler = &Upsample2D{Conv: b.conv(out, out, 3, 1, 1)}
		}
		m.UpBlocks = append(m.UpBlocks, u)
	}

	m.ConvNormOut = b.groupNorm(c.NormNumGroups, c0, c.NormEps)
	m.ConvOut = b.conv(c0, c.OutChannels, c.ConvOutKernel, 1, (c.ConvOutKernel-1)/2)
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

func (b *builder) linear(in, out int, bias bool) *nn.Linear {
	if b.mode == initRandom {
		return nn.NewLinear(b.rng, in, out, bias)
	}
	l := &nn.Linear{}
	b.param(&l.Weight, 0, out, in)
	if bias {
		b.param(&l.Bias, 0, out)
	}
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

func (b *builder) groupNorm(groups, channels int, eps float64) *nn.GroupNorm {
	g := &nn.GroupNorm{Groups: groups, Eps: float32(eps)}
	b.param(&g.Weight, 1, channels)
	b.param(&g.Bias, 0, channels)
	return g
}

func (b *builder) layerNorm(dim int) *nn.LayerNorm {
	l := &nn.LayerNorm{Eps: layerNormEps}
	b.param(&l.Weight, 1, dim)
	b.param(&l.Bias, 0, dim)
	return l
}

// resnet is ResnetBlock2D(in, out, temb_channels, groups, eps, output_scale_factor).
func (b *builder) resnet(c Config, in, out int, outScale float64) *nn.ResnetBlock2D {
	r := &nn.ResnetBlock2D{
		Norm1:             b.groupNorm(c.NormNumGroups, in, c.NormEps),
		Conv1:             b.conv(in, out, 3, 1, 1),
		TimeEmbProj:       b.linear(c.TimeEmbeddingDim, out, true),
		Norm2:             b.groupNorm(c.NormNumGroups, out, c.NormEps),
		Conv2:             b.conv(out, out, 3, 1, 1),
		OutputScaleFactor: outScale,
	}
	if in != out {
		r.ConvShortcut = b.conv(in, out, 1, 1, 0)
	}
	return r
}

// transformer is Transformer2DModel(heads, channels/heads, in_channels=channels) at
// the given level: inner width = channels, GEGLU feed-forward of 4·channels.
func (b *builder) transformer(c Config, channels, level int) *Transformer2DModel {
	t := &Transformer2DModel{Norm: b.groupNorm(c.NormNumGroups, channels, transformerNormEps), UseLinearProjection: c.UseLinearProjection}
	if c.UseLinearProjection {
		t.ProjIn, t.ProjOut = b.linear(channels, channels, true), b.linear(channels, channels, true)
	} else {
		t.ProjIn, t.ProjOut = b.conv(channels, channels, 1, 1, 0), b.conv(channels, channels, 1, 1, 0)
	}
	heads, cross := c.AttentionHeads[level], c.CrossAttentionDim[level]
	for range c.TransformerLayersPerBlock[level] {
		t.TransformerBlocks = append(t.TransformerBlocks, &BasicTransformerBlock{
			Norm1: b.layerNorm(channels),
			Attn1: b.attention(channels, channels, heads),
			Norm2: b.layerNorm(channels),
			Attn2: b.attention(channels, cross, heads),
			Norm3: b.layerNorm(channels),
			FF:    &nn.FeedForward{Act: nn.ActGEGLU, Proj: b.linear(channels, 2*4*channels, true), Out: b.linear(4*channels, channels, true)},
		})
	}
	return t
}

// attention is diffusers' Attention without q/k/v biases (attention_bias=False).
func (b *builder) attention(query, context, heads int) *nn.Attention {
	return &nn.Attention{Heads: heads,
		ToQ: b.linear(query, query, false), ToK: b.linear(context, query, false),
		ToV: b.linear(context, query, false), ToOut: b.linear(query, query, true)}
}
