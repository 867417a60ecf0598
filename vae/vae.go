package vae

import (
	"fmt"
	"math"
	"strconv"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// Block types, as diffusers names them in down_block_types and up_block_types.
const (
	DownEncoderBlock2D = "DownEncoderBlock2D"
	UpDecoderBlock2D   = "UpDecoderBlock2D"
)

// normEps is the GroupNorm eps of every norm in diffusers' Encoder and Decoder.
const normEps = 1e-6

// Config is the architecture of an AutoencoderKL in diffusers' terms, plus the latent
// scaling that pipelines apply.
type Config struct {
	InChannels  int // image channels in (3)
	OutChannels int // image channels out (3)
	// DownBlockTypes and UpBlockTypes are DownEncoderBlock2D and UpDecoderBlock2D per
	// level; the up blocks run from the lowest resolution up.
	DownBlockTypes   []string
	UpBlockTypes     []string
	BlockOutChannels []int
	// LayersPerBlock is the number of resnets per down block; up blocks have one more.
	LayersPerBlock int
	LatentChannels int
	NormNumGroups  int
	// SampleSize is the image side the model was trained at (512 for SD); it is the
	// default tile size of TiledEncode and TiledDecode.
	SampleSize int
	// ScalingFactor and ShiftFactor map VAE latents to the denoiser's:
	// z_model = ScalingFactor·(z_vae − ShiftFactor). ShiftFactor is 0 unless the config
	// sets shift_factor (SD3, Flux).
	ScalingFactor float64
	ShiftFactor   float64
	// ForceUpcast is recorded from the config; it changes nothing here, since the
	// VAE always runs in float32.
	ForceUpcast bool
	// MidBlockAddAttention puts the attention between the mid block's resnets (true
	// for every SD VAE).
	MidBlockAddAttention bool
	// UseQuantConv and UsePostQuantConv add the 1×1 quant_conv after the encoder and
	// post_quant_conv before the decoder (true for every SD VAE).
	UseQuantConv, UsePostQuantConv bool
}

// Levels returns the number of resolution levels.
func (c Config) Levels() int { return len(c.BlockOutChannels) }

// Factor returns the ratio of image side to latent side, 2^(levels-1).
func (c Config) Factor() int { return 1 << (c.Levels() - 1) }

// Downsample2D halves the resolution as diffusers' Downsample2D with padding=0 does:
// a zero row and column on the bottom and right, then a stride-2 3×3 convolution
// without padding. The original checkpoints call it "downsample".
type Downsample2D struct {
	Conv *nn.Conv2d
}

// Params returns conv.
func (d *Downsample2D) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "conv", M: d.Conv})
}

// Forward maps [N, C, H, W] to [N, C, H/2, W/2] (H, W even).
func (d *Downsample2D) Forward(x *tensor.Tensor) *tensor.Tensor {
	return nn.Pipe(x, padRightBottom, d.Conv.Forward)
}

func padRightBottom(x *tensor.Tensor) *tensor.Tensor { return tensor.Pad2d(x, 0, 1, 0, 1) } // [N, C, H+1, W+1]

// AttentionBlock is the mid block's self-attention over the H·W positions, as
// diffusers builds it from the original AttnBlock: one head over all C channels,
// GroupNorm first, q, k, v and to_out.0 Linear over channels, the input added back.
// Attention runs in float32, so upcast_softmax holds.
type AttentionBlock struct {
	GroupNorm *nn.GroupNorm
	Attn      *nn.Attention // to_q, to_k, to_v, to_out.0; Heads = 1
}

// Params returns group_norm, to_q, to_k, to_v and to_out.0 (all at the block's level).
func (a *AttentionBlock) Params(prefix string) []nn.Param {
	return append(nn.Children(prefix, nn.Child{Name: "group_norm", M: a.GroupNorm}), a.Attn.Params(prefix)...)
}

// Forward maps x [N, C, H, W] to x + attention(norm(x)), [N, C, H, W].
func (a *AttentionBlock) Forward(x *tensor.Tensor) *tensor.Tensor {
	hh, ww := x.Dim(2), x.Dim(3)
	selfAttn := func(h *tensor.Tensor) *tensor.Tensor { return a.Attn.Forward(h, nil, nil) }
	h := nn.Pipe(x, a.GroupNorm.Forward, nn.Tokens, selfAttn, nn.Image(hh, ww)) // [N, C, H, W]
	defer h.Release()
	return tensor.Add(x, h)
}

// MidBlock is UNetMidBlock2D without a time embedding: resnet, attention, resnet.
type MidBlock struct {
	Resnets   [2]*nn.ResnetBlock2D
	Attention *AttentionBlock // nil without mid_block_add_attention
}

// Params returns attentions.0 and resnets.0, resnets.1.
func (m *MidBlock) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "attentions.0", M: m.Attention},
		nn.Child{Name: "resnets.0", M: m.Resnets[0]}, nn.Child{Name: "resnets.1", M: m.Resnets[1]})
}

// Forward maps [N, C, H, W] to [N, C, H, W].
func (m *MidBlock) Forward(x *tensor.Tensor) *tensor.Tensor {
	fs := []func(*tensor.Tensor) *tensor.Tensor{resnet(m.Resnets[0])}
	if m.Attention != nil {
		fs = append(fs, m.Attention.Forward)
	}
	return nn.Pipe(x, append(fs, resnet(m.Resnets[1]))...)
}

// DownBlock is diffusers' DownEncoderBlock2D: resnets then, except at the last level, a Downsample2D.
type DownBlock struct {
	Resnets     []*nn.ResnetBlock2D
	Downsampler *Downsample2D // downsamplers.0; nil at the last level
}

// Params returns resnets.i and downsamplers.0.
func (d *DownBlock) Params(prefix string) []nn.Param {
	return nn.Children(prefix, append(indexed("resnets", d.Resnets), nn.Child{Name: "downsamplers.0", M: d.Downsampler})...)
}

// Forward maps [N, Cin, H, W] to [N, Cout, H/2, W/2] ([N, Cout, H, W] at the last level).
func (d *DownBlock) Forward(x *tensor.Tensor) *tensor.Tensor {
	fs := resnets(d.Resnets)
	if d.Downsampler != nil {
		fs = append(fs, d.Downsampler.Forward)
	}
	return nn.Pipe(x, fs...)
}

// UpBlock is diffusers' UpDecoderBlock2D: resnets then, except at the full-resolution level, an Upsample2D.
type UpBlock struct {
	Resnets   []*nn.ResnetBlock2D
	Upsampler *nn.Upsample2D // upsamplers.0; nil at the last block
}

// Params returns resnets.i and upsamplers.0.
func (u *UpBlock) Params(prefix string) []nn.Param {
	return nn.Children(prefix, append(indexed("resnets", u.Resnets), nn.Child{Name: "upsamplers.0", M: u.Upsampler})...)
}

// Forward maps [N, Cin, H, W] to [N, Cout, 2H, 2W] ([N, Cout, H, W] at the last block).
func (u *UpBlock) Forward(x *tensor.Tensor) *tensor.Tensor {
	fs := resnets(u.Resnets)
	if u.Upsampler != nil {
		fs = append(fs, u.Upsampler.Forward)
	}
	return nn.Pipe(x, fs...)
}

// Encoder maps an image [N, Cin, H, W] to [N, 2·latent, H/f, W/f]: the mean and log
// variance of the latent distribution, before quant_conv.
type Encoder struct {
	ConvIn      *nn.Conv2d
	DownBlocks  []*DownBlock
	MidBlock    *MidBlock
	ConvNormOut *nn.GroupNorm
	ConvOut     *nn.Conv2d
}

// Params returns conv_in, down_blocks.i, mid_block, conv_norm_out and conv_out.
func (e *Encoder) Params(prefix string) []nn.Param {
	cs := append([]nn.Child{{Name: "conv_in", M: e.ConvIn}}, indexed("down_blocks", e.DownBlocks)...)
	return nn.Children(prefix, append(cs, nn.Child{Name: "mid_block", M: e.MidBlock},
		nn.Child{Name: "conv_norm_out", M: e.ConvNormOut}, nn.Child{Name: "conv_out", M: e.ConvOut})...)
}

// Forward maps [N, Cin, H, W] to [N, 2·latent, H/f, W/f].
func (e *Encoder) Forward(x *tensor.Tensor) *tensor.Tensor {
	fs := []func(*tensor.Tensor) *tensor.Tensor{e.ConvIn.Forward}
	for _, d := range e.DownBlocks {
		fs = append(fs, d.Forward)
	}
	return nn.Pipe(x, append(fs, e.MidBlock.Forward, e.ConvNormOut.Forward, tensor.SiLU, e.ConvOut.Forward)...)
}

// Decoder maps latents [N, latent, h, w] (after post_quant_conv) to an image
// [N, Cout, f·h, f·w].
type Decoder struct {
	ConvIn      *nn.Conv2d
	MidBlock    *MidBlock
	UpBlocks    []*UpBlock
	ConvNormOut *nn.GroupNorm
	ConvOut     *nn.Conv2d
}

// Params returns conv_in, mid_block, up_blocks.i, conv_norm_out and conv_out.
func (d *Decoder) Params(prefix string) []nn.Param {
	cs := append([]nn.Child{{Name: "conv_in", M: d.ConvIn}, {Name: "mid_block", M: d.MidBlock}}, indexed("up_blocks", d.UpBlocks)...)
	return nn.Children(prefix, append(cs, nn.Child{Name: "conv_norm_out", M: d.ConvNormOut}, nn.Child{Name: "conv_out", M: d.ConvOut})...)
}

// Forward maps [N, latent, h, w] to [N, Cout, f·h, f·w].
func (d *Decoder) Forward(z *tensor.Tensor) *tensor.Tensor {
	fs := []func(*tensor.Tensor) *tensor.Tensor{d.ConvIn.Forward, d.MidBlock.Forward}
	for _, u := range d.UpBlocks {
		fs = append(fs, u.Forward)
	}
	return nn.Pipe(z, append(fs, d.ConvNormOut.Forward, tensor.SiLU, d.ConvOut.Forward)...)
}

// AutoencoderKL is diffusers' (v0.27) AutoencoderKL. Parameter names are diffusers'
// checkpoint keys.
type AutoencoderKL struct {
	Config        Config
	Encoder       *Encoder
	QuantConv     *nn.Conv2d // 1×1, 2·latent -> 2·latent; nil without use_quant_conv
	PostQuantConv *nn.Conv2d // 1×1, latent -> latent; nil without use_post_quant_conv
	Decoder       *Decoder
}

// Params returns encoder, quant_conv, post_quant_conv and decoder.
func (m *AutoencoderKL) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "encoder", M: m.Encoder}, nn.Child{Name: "quant_conv", M: m.QuantConv},
		nn.Child{Name: "post_quant_conv", M: m.PostQuantConv}, nn.Child{Name: "decoder", M: m.Decoder})
}

// Encode returns the moments [N, 2·latent, H/f, W/f] of the latent distribution of
// image [N, Cin, H, W] (values in [-1, 1]): diffusers' encode(x).latent_dist.parameters.
// It panics, naming the shapes, unless H and W are multiples of f.
func (m *AutoencoderKL) Encode(img *tensor.Tensor) *tensor.Tensor {
	c, f := m.Config, m.Config.Factor()
	if img.Rank() != 4 || img.Dim(1) != c.InChannels || img.Dim(2)%f != 0 || img.Dim(3)%f != 0 || img.Dim(2) == 0 || img.Dim(3) == 0 {
		panic(fmt.Sprintf("vae.Encode: image %v: want [N, %d, H, W] with H and W positive multiples of %d", img.Shape(), c.InChannels, f))
	}
	return nn.Pipe(img, m.Encoder.Forward, optional(m.QuantConv))
}

// Decode maps VAE latents z [N, latent, h, w] (unscaled) to an image
// [N, Cout, f·h, f·w]: diffusers' decode(z).sample. It panics on a wrong shape.
func (m *AutoencoderKL) Decode(z *tensor.Tensor) *tensor.Tensor {
	if z.Rank() != 4 || z.Dim(1) != m.Config.LatentChannels {
		panic(fmt.Sprintf("vae.Decode: latents %v: want [N, %d, h, w]", z.Shape(), m.Config.LatentChannels))
	}
	return nn.Pipe(z, optional(m.PostQuantConv), m.Decoder.Forward)
}

// EncodeLatents returns the denoiser's latents for img: ScalingFactor·(z − ShiftFactor)
// with z the distribution's mean, or a sample mean + std·noise when noise (standard
// normal, [N, latent, H/f, W/f]) is not nil. Its result carries no graph.
func (m *AutoencoderKL) EncodeLatents(img, noise *tensor.Tensor) *tensor.Tensor {
	var out *tensor.Tensor
	tensor.NoGrad(func() {
		moments := m.Encode(img)
		defer moments.Release()
		d := NewDiagonalGaussian(moments)
		defer d.Release()
		z := d.Mean
		if noise != nil {
			z = d.Sample(noise)
			defer z.Release()
		}
		out = nn.Pipe(z, addScalar(-m.Config.ShiftFactor), scale(m.Config.ScalingFactor))
	})
	return out
}

// DecodeLatents decodes the denoiser's latents zModel: Decode(zModel/ScalingFactor +
// ShiftFactor).
func (m *AutoencoderKL) DecodeLatents(zModel *tensor.Tensor) *tensor.Tensor {
	z := nn.Pipe(zModel, scale(1/m.Config.ScalingFactor), addScalar(m.Config.ShiftFactor))
	defer z.Release()
	return m.Decode(z)
}

// DiagonalGaussian is the latent distribution the moments describe, as diffusers'
// DiagonalGaussianDistribution: Mean and LogVar are the two halves of the channels,
// LogVar clamped to [-30, 20], Std = exp(LogVar/2). Its tensors are values without a
// graph: difftune uses the VAE frozen (gradients, when wanted, flow through Encode's
// moments). Release frees them.
type DiagonalGaussian struct {
	Mean, LogVar, Std *tensor.Tensor // [N, latent, h, w] each
}

// Log-variance clamp of diffusers' DiagonalGaussianDistribution.
const (
	logVarMin = -30
	logVarMax = 20
)

// NewDiagonalGaussian splits moments [N, 2·latent, h, w] into the distribution.
func NewDiagonalGaussian(moments *tensor.Tensor) *DiagonalGaussian {
	if moments.Rank() != 4 || moments.Dim(1)%2 != 0 {
		panic(fmt.Sprintf("vae.NewDiagonalGaussian: moments %v: want [N, 2·latent, h, w]", moments.Shape()))
	}
	var d DiagonalGaussian
	tensor.NoGrad(func() {
		parts := tensor.Chunk(moments, 2, 1) // mean, logvar: [N, latent, h, w]
		// Chunk may return views of moments (N = 1): clamp a copy.
		d.Mean, d.LogVar = parts[0], parts[1].Clone()
		parts[1].Release()
		d.Std = tensor.Zeros(d.LogVar.Shape()...)
		lv, std := d.LogVar.Data(), d.Std.Data()
		for i, v := range lv {
			lv[i] = min(max(v, logVarMin), logVarMax)
			std[i] = float32(math.Exp(0.5 * float64(lv[i])))
		}
	})
	return &d
}

// Sample returns Mean + Std·noise for standard normal noise of Mean's shape.
func (d *DiagonalGaussian) Sample(noise *tensor.Tensor) *tensor.Tensor {
	var out *tensor.Tensor
	tensor.NoGrad(func() {
		s := tensor.Mul(d.Std, noise)
		defer s.Release()
		out = tensor.Add(d.Mean, s)
	})
	return out
}

// Release frees the distribution's tensors.
func (d *DiagonalGaussian) Release() { tensor.Release(d.Mean, d.LogVar, d.Std) }

// resnet returns the resnet block as a one-input step (no time embedding).
func resnet(r *nn.ResnetBlock2D) func(*tensor.Tensor) *tensor.Tensor {
	return func(x *tensor.Tensor) *tensor.Tensor { return r.Forward(x, nil) }
}

func resnets(rs []*nn.ResnetBlock2D) []func(*tensor.Tensor) *tensor.Tensor {
	fs := make([]func(*tensor.Tensor) *tensor.Tensor, len(rs))
	for i, r := range rs {
		fs[i] = resnet(r)
	}
	return fs
}

// indexed names modules name.0, name.1, ...
func indexed[M nn.Module](name string, ms []M) []nn.Child {
	cs := make([]nn.Child, len(ms))
	for i, m := range ms {
		cs[i] = nn.Child{Name: name + "." + strconv.Itoa(i), M: m}
	}
	return cs
}

// optional returns the layer's forward, or the identity (a copy) for a nil layer.
func optional(c *nn.Conv2d) func(*tensor.Tensor) *tensor.Tensor {
	if c == nil {
		return func(x *tensor.Tensor) *tensor.Tensor { return tensor.Scale(x, 1) }
	}
	return c.Forward
}

func scale(s float64) func(*tensor.Tensor) *tensor.Tensor {
	return func(h *tensor.Tensor) *tensor.Tensor { return tensor.Scale(h, float32(s)) }
}

func addScalar(c float64) func(*tensor.Tensor) *tensor.Tensor {
	return func(h *tensor.Tensor) *tensor.Tensor { return tensor.AddScalar(h, float32(c)) }
}

// Preset is a named VAE: its Config and what it is.
type Preset struct {
	Description string
	Config      Config
}

// Presets are the known VAEs by name, as the CLI lists them. sd is vae/config.json of
// runwayml/stable-diffusion-v1-5 (also used by SD 2.x and stabilityai/sd-vae-ft-mse).
var Presets = map[string]Preset{
	"sd": {Description: "Stable Diffusion 1.x/2.x VAE (84M parameters, 8× downsampling, 4 latent channels, scaling 0.18215)",
		Config: Config{
			InChannels: 3, OutChannels: 3,
			DownBlockTypes:   []string{DownEncoderBlock2D, DownEncoderBlock2D, DownEncoderBlock2D, DownEncoderBlock2D},
			UpBlockTypes:     []string{UpDecoderBlock2D, UpDecoderBlock2D, UpDecoderBlock2D, UpDecoderBlock2D},
			BlockOutChannels: []int{128, 256, 512, 512}, LayersPerBlock: 2, LatentChannels: 4, NormNumGroups: 32,
			SampleSize: 512, ScalingFactor: 0.18215, ForceUpcast: true,
			MidBlockAddAttention: true, UseQuantConv: true, UsePostQuantConv: true,
		}},
}
