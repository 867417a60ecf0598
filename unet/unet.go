package unet

import (
	"fmt"
	"strconv"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// Block types, as diffusers names them in down_block_types, mid_block_type and
// up_block_types.
const (
	CrossAttnDownBlock2D    = "CrossAttnDownBlock2D"
	DownBlock2D             = "DownBlock2D"
	UNetMidBlock2DCrossAttn = "UNetMidBlock2DCrossAttn"
	CrossAttnUpBlock2D      = "CrossAttnUpBlock2D"
	UpBlock2D               = "UpBlock2D"
)

// Config is the architecture of a UNet2DConditionModel in diffusers' terms, with every
// per-level setting resolved to one value per level (index i is level i, counted from
// the full-resolution level as the down blocks are). LoadConfig reads it from a
// diffusers config.json, DetectConfig from checkpoint shapes, Presets holds the known
// ones.
type Config struct {
	// SampleSize is the latent side the model was trained at (64 for SD 1.5). It is
	// not in the weights; DetectConfig leaves it 0.
	SampleSize  int
	InChannels  int
	OutChannels int
	// CenterInputSample maps the input x to 2x-1 first.
	CenterInputSample bool
	// FlipSinToCos and FreqShift parameterise the sinusoidal timestep projection.
	FlipSinToCos bool
	FreqShift    float64

	DownBlockTypes   []string // CrossAttnDownBlock2D or DownBlock2D per level
	MidBlockType     string   // UNetMidBlock2DCrossAttn
	UpBlockTypes     []string // CrossAttnUpBlock2D or UpBlock2D, lowest resolution first
	BlockOutChannels []int
	// LayersPerBlock is the number of resnets per down block (up blocks have one more).
	LayersPerBlock []int
	// TransformerLayersPerBlock is the number of BasicTransformerBlocks per
	// Transformer2DModel; the mid block uses the last level's.
	TransformerLayersPerBlock []int
	// AttentionHeads is the number of heads per level: diffusers' num_attention_heads,
	// or attention_head_dim when that is null (which, despite its name, is the head
	// count for these UNets). The head width is channels / heads.
	AttentionHeads []int
	// CrossAttentionDim is the width of encoder_hidden_states seen at each level.
	CrossAttentionDim []int
	// UseLinearProjection makes proj_in/proj_out Linear layers instead of 1×1 convs.
	UseLinearProjection bool
	// UpcastAttention is recorded for SD 2.x; it changes nothing here, since
	// attention always runs in float32.
	UpcastAttention bool

	DownsamplePadding    int
	MidBlockScaleFactor  float64 // output_scale_factor of the mid block's resnets
	ResnetOutScaleFactor float64 // output_scale_factor of the other resnets
	NormNumGroups        int
	NormEps              float64
	ConvInKernel         int
	ConvOutKernel        int
	TimeEmbeddingDim     int // 4·BlockOutChannels[0] unless the config says otherwise
}

// Levels returns the number of resolution levels.
func (c Config) Levels() int { return len(c.BlockOutChannels) }

// attends reports whether level i has cross-attention: in its down block, in the up
// block at the same resolution, or (the last level) in the mid block.
func (c Config) attends(i int) bool {
	return c.DownBlockTypes[i] == CrossAttnDownBlock2D || c.UpBlockTypes[c.Levels()-1-i] == CrossAttnUpBlock2D || i == c.Levels()-1
}

// transformerNormEps is Transformer2DModel's GroupNorm eps, fixed in diffusers.
const transformerNormEps = 1e-6

// layerNormEps is BasicTransformerBlock's LayerNorm eps (norm_eps default).
const layerNormEps = 1e-5

// BasicTransformerBlock is diffusers' BasicTransformerBlock with layer norms:
// self-attention, cross-attention to the context, GEGLU feed-forward, each pre-norm
// and residual.
type BasicTransformerBlock struct {
	Norm1 *nn.LayerNorm
	Attn1 *nn.Attention // self
	Norm2 *nn.LayerNorm
	Attn2 *nn.Attention // cross: keys and values from encoder_hidden_states
	Norm3 *nn.LayerNorm
	FF    *nn.FeedForward
}

// Params returns norm1, attn1, norm2, attn2, norm3 and ff.
func (b *BasicTransformerBlock) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "norm1", M: b.Norm1}, nn.Child{Name: "attn1", M: b.Attn1},
		nn.Child{Name: "norm2", M: b.Norm2}, nn.Child{Name: "attn2", M: b.Attn2},
		nn.Child{Name: "norm3", M: b.Norm3}, nn.Child{Name: "ff", M: b.FF})
}

// Forward maps tokens x [N, T, C] attending to context [N, S, Ctx] to [N, T, C].
func (b *BasicTransformerBlock) Forward(x, context *tensor.Tensor) *tensor.Tensor {
	selfAttn := func(h *tensor.Tensor) *tensor.Tensor { return b.Attn1.Forward(h, nil, nil) }
	crossAttn := func(h *tensor.Tensor) *tensor.Tensor { return b.Attn2.Forward(h, context, nil) }
	x1 := residual(x, b.Norm1.Forward, selfAttn)
	defer x1.Release()
	x2 := residual(x1, b.Norm2.Forward, crossAttn)
	defer x2.Release()
	return residual(x2, b.Norm3.Forward, b.FF.Forward)
}

// Transformer2DModel is diffusers' Transformer2DModel for continuous inputs: GroupNorm,
// proj_in, BasicTransformerBlocks over the H·W tokens, proj_out, plus the input.
type Transformer2DModel struct {
	Norm *nn.GroupNorm
	// ProjIn and ProjOut are *nn.Linear with UseLinearProjection, 1×1 *nn.Conv2d otherwise.
	ProjIn, ProjOut     projection
	UseLinearProjection bool
	TransformerBlocks   []*BasicTransformerBlock
}

// projection is a module with a one-input forward (nn.Linear, nn.Conv2d).
type projection interface {
	nn.Module
	Forward(x *tensor.Tensor) *tensor.Tensor
}

// Params returns norm, proj_in, transformer_blocks.i and proj_out.
func (t *Transformer2DModel) Params(prefix string) []nn.Param {
	cs := []nn.Child{{Name: "norm", M: t.Norm}, {Name: "proj_in", M: t.ProjIn}}
	for i, b := range t.TransformerBlocks {
		cs = append(cs, nn.Child{Name: "transformer_blocks." + strconv.Itoa(i), M: b})
	}
	return nn.Children(prefix, append(cs, nn.Child{Name: "proj_out", M: t.ProjOut})...)
}

// Forward maps x [N, C, H, W] attending to context [N, S, Ctx] to [N, C, H, W].
func (t *Transformer2DModel) Forward(x, context *tensor.Tensor) *tensor.Tensor {
	return t.forward(nil, x, context)
}

func (t *Transformer2DModel) forward(run *runner, x, context *tensor.Tensor) *tensor.Tensor {
	hh, ww := x.Dim(2), x.Dim(3)
	var h *tensor.Tensor
	if t.UseLinearProjection {
		h = nn.Pipe(x, t.Norm.Forward, nn.Tokens, t.ProjIn.Forward) // [N, H·W, inner]
	} else {
		h = nn.Pipe(x, t.Norm.Forward, t.ProjIn.Forward, nn.Tokens) // [N, H·W, inner]
	}
	for _, b := range t.TransformerBlocks {
		next := run.checkpoint(func(in []*tensor.Tensor) *tensor.Tensor { return b.Forward(in[0], in[1]) }, h, context)
		h.Release()
		h = next
	}
	defer h.Release()
	var out *tensor.Tensor
	if t.UseLinearProjection {
		out = nn.Pipe(h, t.ProjOut.Forward, nn.Image(hh, ww)) // [N, C, H, W]
	} else {
		out = nn.Pipe(h, nn.Image(hh, ww), t.ProjOut.Forward) // [N, C, H, W]
	}
	defer out.Release()
	return tensor.Add(out, x)
}

// Downsample2D halves the resolution with a stride-2 3×3 convolution ("conv"; the
// original checkpoints call it "op").
type Downsample2D struct {
	Conv *nn.Conv2d
}

// Params returns conv.
func (d *Downsample2D) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "conv", M: d.Conv})
}

// Forward maps [N, C, H, W] to [N, C, H/2, W/2].
func (d *Downsample2D) Forward(x *tensor.Tensor) *tensor.Tensor { return d.Conv.Forward(x) }

// DownBlock is CrossAttnDownBlock2D (a Transformer2DModel after each resnet) or
// DownBlock2D (no attentions), with a Downsample2D except at the last level.
type DownBlock struct {
	Type        string
	Resnets     []*nn.ResnetBlock2D
	Attentions  []*Transformer2DModel // empty for DownBlock2D
	Downsampler *Downsample2D         // downsamplers.0; nil at the last level
	name        string                // checkpoint key prefix, for BlockSaved
}

// Params returns resnets.i, attentions.i and downsamplers.0.
func (d *DownBlock) Params(prefix string) []nn.Param {
	var cs []nn.Child
	for i, r := range d.Resnets {
		cs = append(cs, nn.Child{Name: "resnets." + strconv.Itoa(i), M: r})
	}
	for i, a := range d.Attentions {
		cs = append(cs, nn.Child{Name: "attentions." + strconv.Itoa(i), M: a})
	}
	return nn.Children(prefix, append(cs, nn.Child{Name: "downsamplers.0", M: d.Downsampler})...)
}

// forward returns the output of every layer (resnet, or resnet+attention) and of the
// downsampler: the skip connections, the last of which is the block's output.
func (d *DownBlock) forward(run *runner, x, temb, context *tensor.Tensor) []*tensor.Tensor {
	var states []*tensor.Tensor
	h := x
	for i, r := range d.Resnets {
		h = run.resnet(d.name+".resnets."+strconv.Itoa(i), r, h, temb)
		if len(d.Attentions) > 0 {
			h = run.attention(d.name+".attentions."+strconv.Itoa(i), d.Attentions[i], h, context, true)
		}
		states = append(states, h)
	}
	if d.Downsampler != nil {
		states = append(states, run.layer(d.name+".downsamplers.0", d.Downsampler.Forward, h))
	}
	return states
}

// MidBlock is UNetMidBlock2DCrossAttn: resnet, then (attention, resnet) pairs.
type MidBlock struct {
	Resnets    []*nn.ResnetBlock2D
	Attentions []*Transformer2DModel
	name       string
}

// Params returns resnets.i and attentions.i.
func (m *MidBlock) Params(prefix string) []nn.Param {
	var cs []nn.Child
	for i, a := range m.Attentions {
		cs = append(cs, nn.Child{Name: "attentions." + strconv.Itoa(i), M: a})
	}
	for i, r := range m.Resnets {
		cs = append(cs, nn.Child{Name: "resnets." + strconv.Itoa(i), M: r})
	}
	return nn.Children(prefix, cs...)
}

func (m *MidBlock) forward(run *runner, x, temb, context *tensor.Tensor) *tensor.Tensor {
	h := run.resnet(m.name+".resnets.0", m.Resnets[0], x, temb)
	for i, a := range m.Attentions {
		h = run.attention(m.name+".attentions."+strconv.Itoa(i), a, h, context, true)
		next := run.resnet(m.name+".resnets."+strconv.Itoa(i+1), m.Resnets[i+1], h, temb)
		h.Release()
		h = next
	}
	return h
}

// UpBlock is CrossAttnUpBlock2D or UpBlock2D: each resnet takes the hidden state
// concatenated with the last unused skip connection; an Upsample2D follows except at
// the full-resolution level.
type UpBlock struct {
	Type       string
	Resnets    []*nn.ResnetBlock2D
	Attentions []*Transformer2DModel // empty for UpBlock2D
	Upsampler  *nn.Upsample2D        // upsamplers.0; nil at the last (full-resolution) block
	name       string
}

// Params returns resnets.i, attentions.i and upsamplers.0.
func (u *UpBlock) Params(prefix string) []nn.Param {
	var cs []nn.Child
	for i, a := range u.Attentions {
		cs = append(cs, nn.Child{Name: "attentions." + strconv.Itoa(i), M: a})
	}
	for i, r := range u.Resnets {
		cs = append(cs, nn.Child{Name: "resnets." + strconv.Itoa(i), M: r})
	}
	return nn.Children(prefix, append(cs, nn.Child{Name: "upsamplers.0", M: u.Upsampler})...)
}

// forward consumes skips from the end, as diffusers pops res_hidden_states_tuple.
func (u *UpBlock) forward(run *runner, x *tensor.Tensor, skips []*tensor.Tensor, temb, context *tensor.Tensor) *tensor.Tensor {
	h := x
	for i, r := range u.Resnets {
		cat := tensor.Concat(1, h, skips[len(skips)-1-i]) // [N, C + C_skip, H, W]
		if i > 0 {
			h.Release()
		}
		h = run.resnet(u.name+".resnets."+strconv.Itoa(i), r, cat, temb)
		cat.Release()
		if len(u.Attentions) > 0 {
			h = run.attention(u.name+".attentions."+strconv.Itoa(i), u.Attentions[i], h, context, true)
		}
	}
	if u.Upsampler != nil {
		up := run.layer(u.name+".upsamplers.0", u.Upsampler.Forward, h)
		h.Release()
		h = up
	}
	return h
}

// UNet2DConditionModel is diffusers' (v0.27) UNet2DConditionModel: the Stable
// Diffusion 1.x/2.x denoiser. Parameter names are diffusers' checkpoint keys.
type UNet2DConditionModel struct {
	Config        Config
	ConvIn        *nn.Conv2d
	TimeEmbedding *nn.TimestepMLP // time_embedding (time_proj has no parameters)
	DownBlocks    []*DownBlock
	MidBlock      *MidBlock
	UpBlocks      []*UpBlock
	ConvNormOut   *nn.GroupNorm
	ConvOut       *nn.Conv2d

	// GradientCheckpointing runs every resnet and every BasicTransformerBlock under
	// tensor.Checkpoint: only block inputs are kept, and blocks are recomputed in
	// backward.
	GradientCheckpointing bool
	// BlockSaved is filled by each Forward that records a graph: the activation bytes
	// each block added to tensor.SavedBytes(), in execution order. With nothing
	// recorded outside the blocks, the entries add up to the forward's total.
	BlockSaved []BlockSaved
}

// BlockSaved is the activation memory one block keeps for backward.
type BlockSaved struct {
	Name  string // checkpoint key prefix, e.g. "down_blocks.0.resnets.1"
	Bytes int64
}

// Params returns every parameter under its diffusers checkpoint key.
func (m *UNet2DConditionModel) Params(prefix string) []nn.Param {
	cs := []nn.Child{{Name: "conv_in", M: m.ConvIn}, {Name: "time_embedding", M: m.TimeEmbedding}}
	for i, d := range m.DownBlocks {
		cs = append(cs, nn.Child{Name: "down_blocks." + strconv.Itoa(i), M: d})
	}
	cs = append(cs, nn.Child{Name: "mid_block", M: m.MidBlock})
	for i, u := range m.UpBlocks {
		cs = append(cs, nn.Child{Name: "up_blocks." + strconv.Itoa(i), M: u})
	}
	cs = append(cs, nn.Child{Name: "conv_norm_out", M: m.ConvNormOut}, nn.Child{Name: "conv_out", M: m.ConvOut})
	return nn.Children(prefix, cs...)
}

// Forward predicts the model output (noise, or v) for sample [N, Cin, H, W] at
// timesteps (one per sample, or one for all) given encoder_hidden_states context
// [N, S, CrossAttentionDim]; it returns [N, Cout, H, W]. H and W must be divisible by
// 2^(levels-1). It panics on shape misuse, naming the shapes.
func (m *UNet2DConditionModel) Forward(sample *tensor.Tensor, timesteps []float32, context *tensor.Tensor) *tensor.Tensor {
	m.checkInputs(sample, timesteps, context)
	run := &runner{checkpointing: m.GradientCheckpointing && m.needsGrad(sample, context)}
	defer func() { m.BlockSaved = run.saved }()
	c := m.Config

	if len(timesteps) == 1 && sample.Dim(0) > 1 {
		timesteps = repeat(timesteps[0], sample.Dim(0))
	}
	tproj := nn.SinusoidalEmbedding(timesteps, nn.TimestepEmbeddingConfig{
		Dim: c.BlockOutChannels[0], FlipSinToCos: c.FlipSinToCos, DownscaleFreqShift: c.FreqShift}) // [N, C0]
	// tproj is released inside the layer, so that backward's hold on it is logged there.
	emb := run.layer("time_embedding", func(tp *tensor.Tensor) *tensor.Tensor {
		defer tp.Release()
		return m.TimeEmbedding.Forward(tp)
	}, tproj) // [N, T]
	defer emb.Release()

	x := sample
	if c.CenterInputSample {
		x = nn.Pipe(sample, scale(2), addScalar(-1))
		defer x.Release()
	}
	skips := []*tensor.Tensor{run.layer("conv_in", m.ConvIn.Forward, x)} // [N, C0, H, W]
	for _, d := range m.DownBlocks {
		skips = append(skips, d.forward(run, skips[len(skips)-1], emb, context)...)
	}
	h := m.MidBlock.forward(run, skips[len(skips)-1], emb, context)
	for _, u := range m.UpBlocks {
		n := len(u.Resnets)
		next := u.forward(run, h, skips[len(skips)-n:], emb, context)
		tensor.Release(skips[len(skips)-n:]...)
		skips = skips[:len(skips)-n]
		h.Release()
		h = next
	}
	defer h.Release()
	return run.layer("conv_norm_out+conv_out", func(h *tensor.Tensor) *tensor.Tensor {
		return nn.Pipe(h, m.ConvNormOut.Forward, tensor.SiLU, m.ConvOut.Forward)
	}, h)
}

// needsGrad reports whether the forward pass will be recorded: recording is on and an
// input, a parameter or an attached adapter's parameter requires a gradient.
// Checkpointing a pass that records nothing would keep block inputs alive for a
// backward that never comes.
func (m *UNet2DConditionModel) needsGrad(sample, context *tensor.Tensor) bool {
	if !tensor.GradEnabled() {
		return false
	}
	return sample.RequiresGrad() || context.RequiresGrad() || nn.NeedsGrad(m)
}

// checkInputs panics with the offending shapes when the inputs do not fit the config.
func (m *UNet2DConditionModel) checkInputs(sample *tensor.Tensor, timesteps []float32, context *tensor.Tensor) {
	c := m.Config
	f := 1 << (c.Levels() - 1)
	if sample.Rank() != 4 || sample.Dim(1) != c.InChannels || sample.Dim(2)%f != 0 || sample.Dim(3)%f != 0 {
		panic(fmt.Sprintf("unet.Forward: sample %v: want [N, %d, H, W] with H and W divisible by %d", sample.Shape(), c.InChannels, f))
	}
	if len(timesteps) != 1 && len(timesteps) != sample.Dim(0) {
		panic(fmt.Sprintf("unet.Forward: %d timesteps for sample %v (want 1 or %d)", len(timesteps), sample.Shape(), sample.Dim(0)))
	}
	if context.Rank() != 3 || context.Dim(0) != sample.Dim(0) {
		panic(fmt.Sprintf("unet.Forward: encoder_hidden_states %v for sample %v: want [%d, S, D]", context.Shape(), sample.Shape(), sample.Dim(0)))
	}
	for i, d := range c.CrossAttentionDim {
		if c.attends(i) && d != context.Dim(2) {
			panic(fmt.Sprintf("unet.Forward: encoder_hidden_states %v: level %d attends to %d features", context.Shape(), i, d))
		}
	}
}

// runner carries the forward pass's options through the blocks: gradient
// checkpointing and the per-block saved-bytes log. A nil runner runs plainly.
type runner struct {
	checkpointing bool
	saved         []BlockSaved
}

// layer runs f(x) and logs the saved bytes it added under name.
func (r *runner) layer(name string, f func(*tensor.Tensor) *tensor.Tensor, x *tensor.Tensor) *tensor.Tensor {
	before := tensor.SavedBytes()
	out := f(x)
	r.log(name, before)
	return out
}

// resnet runs a resnet block, checkpointed when enabled, and logs its saved bytes.
func (r *runner) resnet(name string, b *nn.ResnetBlock2D, x, temb *tensor.Tensor) *tensor.Tensor {
	before := tensor.SavedBytes()
	out := r.checkpoint(func(in []*tensor.Tensor) *tensor.Tensor { return b.Forward(in[0], in[1]) }, x, temb)
	r.log(name, before)
	return out
}

// attention runs a Transformer2DModel (its transformer blocks checkpointed when
// enabled), logs its saved bytes, and releases x when consume is set.
func (r *runner) attention(name string, a *Transformer2DModel, x, context *tensor.Tensor, consume bool) *tensor.Tensor {
	before := tensor.SavedBytes()
	out := a.forward(r, x, context)
	r.log(name, before)
	if consume {
		x.Release()
	}
	return out
}

// checkpoint runs f(in) under tensor.Checkpoint when checkpointing is on.
func (r *runner) checkpoint(f func(in []*tensor.Tensor) *tensor.Tensor, in ...*tensor.Tensor) *tensor.Tensor {
	if r != nil && r.checkpointing {
		return tensor.Checkpoint(f, in...)
	}
	return f(in)
}

func (r *runner) log(name string, before int64) {
	if r != nil && tensor.GradEnabled() {
		r.saved = append(r.saved, BlockSaved{Name: name, Bytes: tensor.SavedBytes() - before})
	}
}

// residual returns x + f_n(...f_1(x)).
func residual(x *tensor.Tensor, fs ...func(*tensor.Tensor) *tensor.Tensor) *tensor.Tensor {
	return nn.Pipe(x, append(fs, plus(x))...)
}

// plus returns h ↦ h + y.
func plus(y *tensor.Tensor) func(*tensor.Tensor) *tensor.Tensor {
	return func(h *tensor.Tensor) *tensor.Tensor { return tensor.Add(h, y) }
}

// scale returns h ↦ s·h.
func scale(s float64) func(*tensor.Tensor) *tensor.Tensor {
	return func(h *tensor.Tensor) *tensor.Tensor { return tensor.Scale(h, float32(s)) }
}

// addScalar returns h ↦ h + c.
func addScalar(c float32) func(*tensor.Tensor) *tensor.Tensor {
	return func(h *tensor.Tensor) *tensor.Tensor { return tensor.AddScalar(h, c) }
}

func repeat(v float32, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// Preset is a named model: its Config, the objective it was trained with, and the
// seed NewRandom uses for presets without published weights.
type Preset struct {
	Description string
	Config      Config
	// PredictionType is what the model predicts: "epsilon" (the noise) or
	// "v_prediction". It belongs to the scheduler's config in diffusers; it is
	// recorded here so that a preset names a complete training setup.
	PredictionType string
	Seed           uint64
}

// NewRandom returns the preset's model initialised from its Seed.
func (p Preset) NewRandom() (*UNet2DConditionModel, error) { return NewRandom(p.Config, p.Seed) }

// sdConfig is the Stable Diffusion 1.x/2.x layout: four levels of 320, 640, 1280 and
// 1280 channels, cross-attention at the first three, two resnets per down block. SD
// 2.x also has linear proj_in/proj_out and sets upcast_attention.
func sdConfig(sampleSize, crossDim int, heads []int, sd2 bool) Config {
	return Config{
		SampleSize: sampleSize, InChannels: 4, OutChannels: 4, FlipSinToCos: true,
		DownBlockTypes:   []string{CrossAttnDownBlock2D, CrossAttnDownBlock2D, CrossAttnDownBlock2D, DownBlock2D},
		MidBlockType:     UNetMidBlock2DCrossAttn,
		UpBlockTypes:     []string{UpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D},
		BlockOutChannels: []int{320, 640, 1280, 1280}, LayersPerBlock: []int{2, 2, 2, 2},
		TransformerLayersPerBlock: []int{1, 1, 1, 1}, AttentionHeads: heads,
		CrossAttentionDim:   []int{crossDim, crossDim, crossDim, crossDim},
		UseLinearProjection: sd2, UpcastAttention: sd2,
		DownsamplePadding: 1, MidBlockScaleFactor: 1, ResnetOutScaleFactor: 1,
		NormNumGroups: 32, NormEps: 1e-5, ConvInKernel: 3, ConvOutKernel: 3, TimeEmbeddingDim: 1280,
	}
}

// Presets are the known UNets by name, as the CLI lists them. sd15 and sd21 are the
// unet/config.json of runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2-1.
var Presets = map[string]Preset{
	"sd15": {Description: "Stable Diffusion 1.5 UNet (860M parameters, 64×64 latents, CLIP ViT-L/14 context)",
		Config: sdConfig(64, 768, []int{8, 8, 8, 8}, false), PredictionType: "epsilon"},
	"sd21": {Description: "Stable Diffusion 2.1 UNet (866M parameters, 96×96 latents, OpenCLIP ViT-H/14 context)",
		Config: sdConfig(96, 1024, []int{5, 10, 20, 20}, true), PredictionType: "v_prediction"},
	"tiny-unet": {Description: "a small pixel-space UNet for tests: 32×32×3 images, 32/64 channels, 32-wide context, random weights",
		Config: Config{
			SampleSize: 32, InChannels: 3, OutChannels: 3, FlipSinToCos: true,
			DownBlockTypes: []string{DownBlock2D, CrossAttnDownBlock2D}, MidBlockType: UNetMidBlock2DCrossAttn,
			UpBlockTypes:     []string{CrossAttnUpBlock2D, UpBlock2D},
			BlockOutChannels: []int{32, 64}, LayersPerBlock: []int{1, 1}, TransformerLayersPerBlock: []int{1, 1},
			AttentionHeads: []int{4, 4}, CrossAttentionDim: []int{32, 32},
			DownsamplePadding: 1, MidBlockScaleFactor: 1, ResnetOutScaleFactor: 1,
			NormNumGroups: 8, NormEps: 1e-5, ConvInKernel: 3, ConvOutKernel: 3, TimeEmbeddingDim: 128,
		},
		PredictionType: "epsilon", Seed: 1},
}
