package dit

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// PixArt-α (Chen et al.) as diffusers v0.27.2 builds it: Transformer2DModel with
// norm_type "ada_norm_single" (the same state dict as v0.31's PixArtTransformer2DModel):
//
//	x [N, C, H, W] ─pos_embed─▶ [N, T, D] + 2-D sin-cos
//	t ─adaln_single─▶ mod [N, 6D] (shared by every block), embedded_timestep [N, D]
//	caption [N, L, Ccap] ─caption_projection─▶ [N, L, D]
//	transformer_blocks × layers: scale_shift_table + mod → shift, scale, gate;
//	    x += gate·attn1(modulate(norm1(x)));  x += attn2(x, caption);  x += gate·ff(modulate(norm2(x)))
//	final: scale_shift_table + embedded_timestep → shift, scale; proj_out(modulate(norm_out(x)))
//	unpatchify ─▶ [N, Cout, H, W]   (PixArt: Cout = 2C, the first C channels are ε)
//
// Parameter names are diffusers' checkpoint keys.

// PixArtConfig is the diffusers config.json of a PixArt-α transformer (Transformer2DModel
// with norm_type "ada_norm_single", or PixArtTransformer2DModel). Null JSON values are
// nil pointers. Fields that PixArt-α fixes (norm_type, norm_elementwise_affine, ...)
// are kept so that a config round-trips and Validate can refuse other layouts.
type PixArtConfig struct {
	ClassName               string   `json:"_class_name"`
	NumAttentionHeads       int      `json:"num_attention_heads"`
	AttentionHeadDim        int      `json:"attention_head_dim"`
	InChannels              int      `json:"in_channels"`
	OutChannels             *int     `json:"out_channels"` // nil: in_channels
	NumLayers               int      `json:"num_layers"`
	Dropout                 float64  `json:"dropout"`
	NormNumGroups           int      `json:"norm_num_groups"`
	CrossAttentionDim       int      `json:"cross_attention_dim"`
	AttentionBias           bool     `json:"attention_bias"`
	SampleSize              int      `json:"sample_size"` // latent side the model was trained at
	NumVectorEmbeds         *int     `json:"num_vector_embeds"`
	PatchSize               int      `json:"patch_size"`
	ActivationFn            string   `json:"activation_fn"`
	NumEmbedsAdaNorm        *int     `json:"num_embeds_ada_norm"`
	UseLinearProjection     bool     `json:"use_linear_projection"`
	OnlyCrossAttention      bool     `json:"only_cross_attention"`
	DoubleSelfAttention     bool     `json:"double_self_attention"`
	UpcastAttention         bool     `json:"upcast_attention"`
	NormType                string   `json:"norm_type"`
	NormElementwiseAffine   bool     `json:"norm_elementwise_affine"`
	NormEps                 float64  `json:"norm_eps"`
	AttentionType           string   `json:"attention_type"`
	CaptionChannels         int      `json:"caption_channels"`
	InterpolationScale      *float64 `json:"interpolation_scale"`       // nil: max(sample_size/64, 1)
	UseAdditionalConditions *bool    `json:"use_additional_conditions"` // nil: sample_size == 128
	// PooledProjectionDim, when positive, adds a pooled caption embedding of this width,
	// projected by pooled_projection (linear_1, GELU-tanh, linear_2), to the timestep
	// embedding that modulates every block, as SD3 adds its pooled text embedding.
	// difftune's own models use it; diffusers' PixArt has no such input (0).
	PooledProjectionDim int `json:"pooled_projection_dim,omitempty"`
}

// transformer2DDefaults is diffusers v0.27.2 Transformer2DModel's keyword defaults.
func transformer2DDefaults() PixArtConfig {
	return PixArtConfig{ClassName: "Transformer2DModel", NumAttentionHeads: 16, AttentionHeadDim: 88, NumLayers: 1,
		NormNumGroups: 32, ActivationFn: "geglu", NormType: "layer_norm", NormElementwiseAffine: true, NormEps: 1e-5,
		AttentionType: "default"}
}

// pixArtDefaults is diffusers v0.31 PixArtTransformer2DModel's keyword defaults
// (PixArt-α XL/2 at 1024 px, except caption_channels, which defaults to none).
func pixArtDefaults() PixArtConfig {
	out, embeds := 8, 1000
	return PixArtConfig{ClassName: "PixArtTransformer2DModel", NumAttentionHeads: 16, AttentionHeadDim: 72, InChannels: 4,
		OutChannels: &out, NumLayers: 28, NormNumGroups: 32, CrossAttentionDim: 1152, AttentionBias: true, SampleSize: 128,
		PatchSize: 2, ActivationFn: "gelu-approximate", NumEmbedsAdaNorm: &embeds, NormType: "ada_norm_single",
		NormEps: 1e-6, AttentionType: "default"}
}

// Arch returns "pixart".
func (c PixArtConfig) Arch() string { return "pixart" }

// Inner returns the model width D = heads · head dim.
func (c PixArtConfig) Inner() int { return c.NumAttentionHeads * c.AttentionHeadDim }

// Out returns the output channels (out_channels, or in_channels when null).
func (c PixArtConfig) Out() int {
	if c.OutChannels == nil {
		return c.InChannels
	}
	return *c.OutChannels
}

// Interpolation returns the position-embedding interpolation scale: interpolation_scale,
// or max(sample_size/64, 1) when null (1 for the 512 px model, 2 for 1024 px).
func (c PixArtConfig) Interpolation() float64 {
	if c.InterpolationScale != nil {
		return *c.InterpolationScale
	}
	return float64(max(c.SampleSize/64, 1))
}

// AdditionalConditions reports whether the model embeds each sample's resolution and
// aspect ratio: use_additional_conditions, or sample_size == 128 when null (the rule
// diffusers applies; PixArt-α 1024 px is the model that has them).
func (c PixArtConfig) AdditionalConditions() bool {
	if c.UseAdditionalConditions != nil {
		return *c.UseAdditionalConditions
	}
	return c.SampleSize == 128
}

// Validate reports the first field that does not describe a PixArt-α transformer this
// package can build, naming it and what to change.
func (c PixArtConfig) Validate() error {
	d := c.Inner()
	switch {
	case c.NormType != "ada_norm_single":
		return fmt.Errorf("field \"norm_type\" = %q: only PixArt-α's \"ada_norm_single\" is supported (is this another Transformer2DModel?)", c.NormType)
	case c.NormElementwiseAffine:
		return fmt.Errorf("field \"norm_elementwise_affine\" = true: PixArt-α's norms have no affine parameters; set it to false")
	case c.PatchSize <= 0:
		return fmt.Errorf("field \"patch_size\" = %d must be positive (PixArt-α takes patched latents)", c.PatchSize)
	case c.SampleSize <= 0 || c.SampleSize%c.PatchSize != 0:
		return fmt.Errorf("field \"sample_size\" = %d must be a positive multiple of \"patch_size\" = %d", c.SampleSize, c.PatchSize)
	case c.InChannels <= 0 || c.Out() <= 0:
		return fmt.Errorf("fields \"in_channels\" = %d and \"out_channels\" = %d must be positive", c.InChannels, c.Out())
	case c.NumAttentionHeads <= 0 || c.AttentionHeadDim <= 0:
		return fmt.Errorf("fields \"num_attention_heads\" = %d and \"attention_head_dim\" = %d must be positive", c.NumAttentionHeads, c.AttentionHeadDim)
	case d%4 != 0:
		return fmt.Errorf("num_attention_heads·attention_head_dim = %d must be a multiple of 4 (the 2-D sin-cos position embedding needs it)", d)
	case c.NumLayers < 0:
		return fmt.Errorf("field \"num_layers\" = %d must not be negative", c.NumLayers)
	case c.PooledProjectionDim < 0:
		return fmt.Errorf("field \"pooled_projection_dim\" = %d: want 0 (none) or the pooled embedding's width", c.PooledProjectionDim)
	case c.CaptionChannels <= 0:
		return fmt.Errorf("field \"caption_channels\" = %d: PixArt-α projects captions (4096 for T5-XXL); set it", c.CaptionChannels)
	case c.CrossAttentionDim != d:
		return fmt.Errorf("field \"cross_attention_dim\" = %d must equal the model width %d (captions are projected to it)", c.CrossAttentionDim, d)
	case c.OnlyCrossAttention || c.DoubleSelfAttention || c.NumVectorEmbeds != nil || c.AttentionType != "default":
		return fmt.Errorf("fields \"only_cross_attention\", \"double_self_attention\", \"num_vector_embeds\", \"attention_type\" must be false, false, null, \"default\" for PixArt-α")
	case c.Dropout != 0:
		return fmt.Errorf("field \"dropout\" = %g: dropout inside the transformer is not implemented; set it to 0 (PixArt-α uses 0)", c.Dropout)
	case c.NormEps <= 0:
		return fmt.Errorf("field \"norm_eps\" = %g must be positive", c.NormEps)
	case c.Interpolation() <= 0:
		return fmt.Errorf("field \"interpolation_scale\" = %g must be positive", c.Interpolation())
	case c.AdditionalConditions() && d%3 != 0:
		return fmt.Errorf("use_additional_conditions needs a model width divisible by 3, got %d", d)
	}
	switch nn.Activation(c.ActivationFn) {
	case nn.ActGELU, nn.ActGELUTanh, nn.ActGEGLU, nn.ActGEGLUTanh:
	default:
		return fmt.Errorf("field \"activation_fn\" = %q: want gelu-approximate (PixArt-α), gelu, geglu or geglu-approximate", c.ActivationFn)
	}
	return nil
}

// NumParams returns the number of parameters the config builds (the sin-cos position
// embedding is a non-persistent buffer in diffusers and is not counted).
func (c PixArtConfig) NumParams() int64 {
	d, p, ctx := int64(c.Inner()), int64(c.PatchSize), int64(c.CaptionChannels)
	linear := func(in, out int64, bias bool) int64 {
		if bias {
			return in*out + out
		}
		return in * out
	}
	ffWidth := 4 * d
	if a := nn.Activation(c.ActivationFn); a == nn.ActGEGLU || a == nn.ActGEGLUTanh {
		ffWidth *= 2
	}
	b := c.AttentionBias
	block := 3*linear(d, d, b) + linear(d, d, true) + // attn1
		linear(d, d, b) + 2*linear(int64(c.CrossAttentionDim), d, b) + linear(d, d, true) + // attn2
		linear(d, ffWidth, true) + linear(4*d, d, true) + // ff
		6*d // scale_shift_table
	n := linear(int64(c.InChannels)*p*p, d, true) + // pos_embed.proj
		linear(timestepFreqDim, d, true) + linear(d, d, true) + linear(d, 6*d, true) + // adaln_single
		linear(ctx, d, true) + linear(d, d, true) + // caption_projection
		int64(c.NumLayers)*block +
		2*d + linear(d, p*p*int64(c.Out()), true) // scale_shift_table, proj_out
	if c.AdditionalConditions() {
		s := d / 3
		n += 2 * (linear(timestepFreqDim, s, true) + linear(s, s, true))
	}
	if c.PooledProjectionDim > 0 {
		n += linear(int64(c.PooledProjectionDim), d, true) + linear(d, d, true)
	}
	return n
}

// SizeCond is PixArt-α 1024 px's micro-conditioning (diffusers' added_cond_kwargs):
// each sample's resolution (height, width) in pixels and aspect ratio (height / width).
type SizeCond struct {
	Resolution  [][2]float32 // [N] (height, width)
	AspectRatio []float32    // [N]
}

// CaptionProjection maps caption features [N, L, Ccap] to the model width: linear_1,
// GELU (tanh approximation), linear_2 (diffusers' PixArtAlphaTextProjection).
type CaptionProjection struct {
	Linear1, Linear2 *nn.Linear
}

// Params returns linear_1 and linear_2.
func (p *CaptionProjection) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "linear_1", M: p.Linear1}, nn.Child{Name: "linear_2", M: p.Linear2})
}

// Forward projects caption features [N, L, Ccap] to [N, L, D].
func (p *CaptionProjection) Forward(x *tensor.Tensor) *tensor.Tensor {
	return geluMLP(x, p.Linear1, p.Linear2)
}

// TimestepSizeEmbeddings is diffusers' PixArtAlphaCombinedTimestepSizeEmbeddings: the
// timestep MLP over 256 sinusoidal features and, for the 1024 px model, resolution and
// aspect-ratio MLPs (width D/3 each) over the same features of those numbers.
type TimestepSizeEmbeddings struct {
	TimestepEmbedder    *nn.TimestepMLP // timestep_embedder
	ResolutionEmbedder  *nn.TimestepMLP // resolution_embedder (nil without additional conditions)
	AspectRatioEmbedder *nn.TimestepMLP // aspect_ratio_embedder (nil without additional conditions)
}

// Params returns timestep_embedder and, when present, resolution_embedder and
// aspect_ratio_embedder.
func (e *TimestepSizeEmbeddings) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "timestep_embedder", M: e.TimestepEmbedder},
		nn.Child{Name: "resolution_embedder", M: e.ResolutionEmbedder}, nn.Child{Name: "aspect_ratio_embedder", M: e.AspectRatioEmbedder})
}

// Forward returns the conditioning [N, D]: the timestep embedding, plus
// [resolution (height, width) | aspect ratio] embeddings when the model has them.
func (e *TimestepSizeEmbeddings) Forward(t []float32, size *SizeCond) (*tensor.Tensor, error) {
	n := len(t)
	extra := e.ResolutionEmbedder != nil
	if extra && (size == nil || len(size.Resolution) != n || len(size.AspectRatio) != n) {
		return nil, fmt.Errorf("pixart: this model (use_additional_conditions: PixArt-α 1024 px) needs the resolution and aspect ratio of each of the %d samples (SizeCond)", n)
	}
	freq := timestepFeatures(t) // [N, 256]
	defer freq.Release()
	emb := e.TimestepEmbedder.Forward(freq) // [N, D]
	if !extra {
		return emb, nil
	}
	defer emb.Release()
	hw := make([]float32, 0, 2*n)
	for _, r := range size.Resolution {
		hw = append(hw, r[0], r[1])
	}
	resFreq, arFreq := timestepFeatures(hw), timestepFeatures(size.AspectRatio) // [2N, 256], [N, 256]
	res, ar := e.ResolutionEmbedder.Forward(resFreq), e.AspectRatioEmbedder.Forward(arFreq)
	res2 := tensor.Reshape(res, n, -1)  // [N, 2·D/3]: (height, width)
	sizes := tensor.Concat(1, res2, ar) // [N, D]
	defer tensor.Release(resFreq, arFreq, res, ar, res2, sizes)
	return tensor.Add(emb, sizes), nil
}

// AdaLayerNormSingle is PixArt-α's shared adaLN: one conditioning vector per sample,
// projected once to the 6·D modulation that every block offsets by its own table.
type AdaLayerNormSingle struct {
	Emb    *TimestepSizeEmbeddings // emb
	Linear *nn.Linear              // linear: [6D, D]
}

// Params returns emb and linear.
func (a *AdaLayerNormSingle) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "emb", M: a.Emb}, nn.Child{Name: "linear", M: a.Linear})
}

// Forward returns the modulation Linear(SiLU(emb)) [N, 6D] and the embedded timestep
// emb [N, D] (which the final layer uses).
func (a *AdaLayerNormSingle) Forward(t []float32, size *SizeCond) (mod, embedded *tensor.Tensor, err error) {
	return a.forward(t, size, nil)
}

// forward adds extra [N, D] (nil: nothing) to the embedding before the modulation.
func (a *AdaLayerNormSingle) forward(t []float32, size *SizeCond, extra *tensor.Tensor) (mod, embedded *tensor.Tensor, err error) {
	embedded, err = a.Emb.Forward(t, size)
	if err != nil {
		return nil, nil, err
	}
	if extra != nil {
		sum := tensor.Add(embedded, extra)
		embedded.Release()
		embedded = sum
	}
	act := tensor.SiLU(embedded)
	defer act.Release()
	return a.Linear.Forward(act), embedded, nil
}

// PixArtBlock is diffusers' BasicTransformerBlock in PixArt-α's configuration.
type PixArtBlock struct {
	Norm1, Norm2    *nn.LayerNorm // no affine
	Attn1           *nn.Attention // attn1: self-attention
	Attn2           *nn.Attention // attn2: cross-attention to the caption
	FF              *nn.FeedForward
	ScaleShiftTable *tensor.Tensor // scale_shift_table [6, D]
}

// Params returns attn1, attn2, ff and scale_shift_table.
func (b *PixArtBlock) Params(prefix string) []nn.Param {
	return append(nn.Children(prefix, nn.Child{Name: "attn1", M: b.Attn1}, nn.Child{Name: "attn2", M: b.Attn2}, nn.Child{Name: "ff", M: b.FF}),
		nn.Param{Name: prefix + "scale_shift_table", Ptr: &b.ScaleShiftTable})
}

// Forward applies the block to x [N, T, D] with the shared modulation mod [N, 6D], the
// projected caption [N, L, D] and its additive key mask [N, L] (nil: no mask).
func (b *PixArtBlock) Forward(x, mod, caption, mask *tensor.Tensor) *tensor.Tensor {
	rows := tensor.Reshape(mod, mod.Dim(0), 6, -1) // [N, 6, D]
	m := offsetChunks(b.ScaleShiftTable, rows)     // 6 × [N, 1, D]
	defer tensor.Release(rows)
	defer tensor.Release(m...)
	shiftMSA, scaleMSA, gateMSA, shiftMLP, scaleMLP, gateMLP := m[0], m[1], m[2], m[3], m[4], m[5]

	h1 := modulate(b.Norm1, x, shiftMSA, scaleMSA)
	attn := b.Attn1.Forward(h1, nil, nil)
	x1 := gatedResidual(x, gateMSA, attn)       // x + gateMSA·attn1(modulate(norm1(x)))
	cross := b.Attn2.Forward(x1, caption, mask) // PixArt-α: no norm before cross-attention
	x2 := gatedResidual(x1, nil, cross)
	h2 := modulate(b.Norm2, x2, shiftMLP, scaleMLP)
	ff := b.FF.Forward(h2)
	defer tensor.Release(h1, attn, x1, cross, x2, h2, ff)
	return gatedResidual(x2, gateMLP, ff) // x2 + gateMLP·ff(modulate(norm2(x2)))
}

// offsetChunks returns (table[None] + mod).chunk(n, dim=1): n pieces [N, 1, D] of a
// per-sample modulation mod [N, n, D] (or [N, 1, D], broadcast) offset by a learned
// table [n, D].
func offsetChunks(table, mod *tensor.Tensor) []*tensor.Tensor {
	sum := tensor.Add(table, mod) // [N, n, D]
	defer sum.Release()
	return tensor.Chunk(sum, table.Dim(0), 1) // n × [N, 1, D]
}

// PixArt is the PixArt-α text-to-image transformer.
type PixArt struct {
	Config            PixArtConfig
	PosEmbed          *PatchEmbed         // pos_embed (diffusers' name for the patch embedding)
	AdaLNSingle       *AdaLayerNormSingle // adaln_single
	CaptionProjection *CaptionProjection  // caption_projection
	PooledProjection  *CaptionProjection  // pooled_projection (nil unless pooled_projection_dim > 0)
	Blocks            []*PixArtBlock      // transformer_blocks.N
	NormOut           *nn.LayerNorm       // norm_out: no affine, eps 1e-6
	ScaleShiftTable   *tensor.Tensor      // scale_shift_table [2, D]
	ProjOut           *nn.Linear          // proj_out: [p·p·Cout, D]
	// PosTable is the sin-cos position embedding [1, T, D] of the sample_size grid, a
	// fixed buffer (not in checkpoints); other grids get theirs computed per call.
	PosTable *tensor.Tensor

	// Checkpoint runs every block under tensor.Checkpoint (see DiT.Checkpoint).
	Checkpoint bool
	// SavedPerBlock is filled by each Forward with the bytes each block left saved.
	SavedPerBlock []int64
}

// NewPixArt builds a PixArt-α transformer initialised as diffusers does (PyTorch's
// default Linear and Conv2d init; scale-shift tables N(0, 1/D)), drawing from rng.
// It fails when the config is invalid.
func NewPixArt(c PixArtConfig, rng *rand.Rand) (*PixArt, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("pixart config: %w", err)
	}
	d, p, g := c.Inner(), c.PatchSize, c.SampleSize/c.PatchSize
	eps := float32(c.NormEps)
	table := func(rows int) *tensor.Tensor { return normal(rng, 1/math.Sqrt(float64(d)), rows, d) }
	emb := &TimestepSizeEmbeddings{TimestepEmbedder: nn.NewTimestepMLP(rng, timestepFreqDim, d)}
	if c.AdditionalConditions() {
		emb.ResolutionEmbedder = nn.NewTimestepMLP(rng, timestepFreqDim, d/3)
		emb.AspectRatioEmbedder = nn.NewTimestepMLP(rng, timestepFreqDim, d/3)
	}
	m := &PixArt{Config: c,
		PosEmbed:          newPatchEmbed(rng, c.InChannels, d, p),
		AdaLNSingle:       &AdaLayerNormSingle{Emb: emb, Linear: nn.NewLinear(rng, d, 6*d, true)},
		CaptionProjection: &CaptionProjection{Linear1: nn.NewLinear(rng, c.CaptionChannels, d, true), Linear2: nn.NewLinear(rng, d, d, true)},
		NormOut:           nn.NewLayerNorm(d, 1e-6, false),
		ScaleShiftTable:   table(2),
		ProjOut:           nn.NewLinear(rng, d, p*p*c.Out(), true),
		PosTable:          tensor.FromFloat32(sinCosPosEmbed(d, g, g, float64(g), c.Interpolation()), 1, g*g, d),
	}
	if c.PooledProjectionDim > 0 {
		m.PooledProjection = &CaptionProjection{Linear1: nn.NewLinear(rng, c.PooledProjectionDim, d, true), Linear2: nn.NewLinear(rng, d, d, true)}
	}
	for range c.NumLayers {
		ff, err := nn.NewFeedForward(rng, d, 0, d, nn.Activation(c.ActivationFn))
		if err != nil {
			m.Release()
			return nil, fmt.Errorf("pixart config: %w", err)
		}
		m.Blocks = append(m.Blocks, &PixArtBlock{
			Norm1: nn.NewLayerNorm(d, eps, false), Norm2: nn.NewLayerNorm(d, eps, false),
			Attn1: nn.NewAttention(rng, d, d, c.NumAttentionHeads, c.AttentionHeadDim, c.AttentionBias),
			Attn2: nn.NewAttention(rng, d, c.CrossAttentionDim, c.NumAttentionHeads, c.AttentionHeadDim, c.AttentionBias),
			FF:    ff, ScaleShiftTable: table(6),
		})
	}
	return m, nil
}

// Params returns every parameter under its diffusers checkpoint key.
func (m *PixArt) Params(prefix string) []nn.Param {
	cs := []nn.Child{{Name: "pos_embed", M: m.PosEmbed}, {Name: "adaln_single", M: m.AdaLNSingle}, {Name: "caption_projection", M: m.CaptionProjection}}
	if m.PooledProjection != nil {
		cs = append(cs, nn.Child{Name: "pooled_projection", M: m.PooledProjection})
	}
	for i, b := range m.Blocks {
		cs = append(cs, nn.Child{Name: fmt.Sprintf("transformer_blocks.%d", i), M: b})
	}
	cs = append(cs, nn.Child{Name: "proj_out", M: m.ProjOut})
	return append(nn.Children(prefix, cs...), nn.Param{Name: prefix + "scale_shift_table", Ptr: &m.ScaleShiftTable})
}

// Load reads the parameters from a diffusers safetensors file (nn.LoadFile's checks).
func (m *PixArt) Load(path string, o nn.LoadOptions) error { return nn.LoadFile(m, path, o) }

// Save writes the parameters to a safetensors file (atomically).
func (m *PixArt) Save(path, prefix string, metadata map[string]string) error {
	return nn.SaveFile(m, path, prefix, metadata)
}

// Release releases every parameter and the position table.
func (m *PixArt) Release() {
	nn.ReleaseParams(m)
	m.PosTable.Release()
}

// Forward predicts from latents x [N, C, H, W] (H, W multiples of the patch size; any
// aspect ratio) at timesteps t, for caption features [N, L, caption_channels] with
// captionMask [N·L] (1 keep, 0 padding; nil keeps all), the output [N, Cout, H, W].
// size is needed only by models with additional conditions (PixArt-α 1024 px) and is
// ignored otherwise, as diffusers does. The caller releases the result. It fails,
// naming the argument, when a shape does not fit the config.
func (m *PixArt) Forward(x *tensor.Tensor, t []float32, caption *tensor.Tensor, captionMask []int, size *SizeCond) (*tensor.Tensor, error) {
	return m.ForwardPooled(x, t, caption, captionMask, nil, size)
}

// ForwardPooled is Forward with the pooled caption embedding [N, pooled_projection_dim]
// a model with pooled_projection_dim > 0 needs (and others must not be given).
func (m *PixArt) ForwardPooled(x *tensor.Tensor, t []float32, caption *tensor.Tensor, captionMask []int, pooled *tensor.Tensor, size *SizeCond) (*tensor.Tensor, error) {
	c := m.Config
	if (pooled != nil) != (c.PooledProjectionDim > 0) || pooled != nil && (pooled.Rank() != 2 || pooled.Dim(1) != c.PooledProjectionDim || pooled.Dim(0) != x.Dim(0)) {
		shape := []int(nil)
		if pooled != nil {
			shape = pooled.Shape()
		}
		return nil, fmt.Errorf("pixart: pooled caption embedding %v: want [N, %d] (pooled_projection_dim; none when 0)", shape, c.PooledProjectionDim)
	}
	p := c.PatchSize
	if x.Rank() != 4 || x.Dim(1) != c.InChannels || x.Dim(2)%p != 0 || x.Dim(3)%p != 0 || x.Dim(2) == 0 || x.Dim(3) == 0 {
		return nil, fmt.Errorf("pixart: latents %v: want [N, %d, H, W] with H and W multiples of patch_size %d", x.Shape(), c.InChannels, p)
	}
	n, gh, gw := x.Dim(0), x.Dim(2)/p, x.Dim(3)/p
	if len(t) != n {
		return nil, fmt.Errorf("pixart: %d timesteps for a batch of %d", len(t), n)
	}
	if caption.Rank() != 3 || caption.Dim(0) != n || caption.Dim(2) != c.CaptionChannels {
		return nil, fmt.Errorf("pixart: caption features %v: want [%d, L, %d] (caption_channels)", caption.Shape(), n, c.CaptionChannels)
	}
	bias, err := captionBias(captionMask, n, caption.Dim(1))
	if err != nil {
		return nil, err
	}
	var extra *tensor.Tensor
	if pooled != nil {
		extra = m.PooledProjection.Forward(pooled)
		defer extra.Release()
	}
	mod, embedded, err := m.AdaLNSingle.forward(t, size, extra) // [N, 6D], [N, D]
	if err != nil {
		tensor.Release(bias)
		return nil, err
	}
	pos := m.posTable(gh, gw)        // [1, T, D]
	patches := m.PosEmbed.Forward(x) // [N, T, D]
	tokens := tensor.Add(patches, pos)
	ctx := m.CaptionProjection.Forward(caption) // [N, L, D]
	defer tensor.Release(bias, mod, embedded, patches, tokens, ctx)
	if pos != m.PosTable {
		defer pos.Release()
	}

	blockInputs := []*tensor.Tensor{mod, ctx}
	if bias != nil {
		blockInputs = append(blockInputs, bias)
	}
	h, saved := runBlocks(len(m.Blocks), func(i int, h *tensor.Tensor, in []*tensor.Tensor) *tensor.Tensor {
		var mask *tensor.Tensor
		if len(in) > 2 {
			mask = in[2]
		}
		return m.Blocks[i].Forward(h, in[0], in[1], mask)
	}, m.Checkpoint, tokens, blockInputs...)
	m.SavedPerBlock = saved
	defer h.Release()

	emb := tensor.Reshape(embedded, n, 1, -1)    // [N, 1, D]
	mods := offsetChunks(m.ScaleShiftTable, emb) // 2 × [N, 1, D]
	defer tensor.Release(emb)
	defer tensor.Release(mods...)
	shift, scale := mods[0], mods[1] // [N, 1, D] each
	hOut := modulate(m.NormOut, h, shift, scale)
	out := m.ProjOut.Forward(hOut) // [N, T, p·p·Cout]
	defer tensor.Release(hOut, out)
	return unpatchify(out, gh, gw, p, c.Out()), nil
}

// posTable returns the position embedding [1, gh·gw, D] for a patch grid: the stored
// table for the sample_size grid, else a new one (diffusers recomputes it the same way,
// with base size sample_size/patch_size) that the caller releases.
func (m *PixArt) posTable(gh, gw int) *tensor.Tensor {
	base := m.Config.SampleSize / m.Config.PatchSize
	if gh == base && gw == base {
		return m.PosTable
	}
	d := m.Config.Inner()
	return tensor.FromFloat32(sinCosPosEmbed(d, gh, gw, float64(base), m.Config.Interpolation()), 1, gh*gw, d)
}

// captionBias turns a keep-mask [N·L] of 0/1 into the additive attention bias
// (1 - mask)·-10000 [N, L] that diffusers applies to the cross-attention scores; nil
// for no mask. It fails naming the position of a value other than 0 or 1.
func captionBias(mask []int, n, l int) (*tensor.Tensor, error) {
	if mask == nil {
		return nil, nil
	}
	if len(mask) != n*l {
		return nil, fmt.Errorf("pixart: caption mask has %d values, want %d·%d (batch · caption length)", len(mask), n, l)
	}
	bias := make([]float32, len(mask))
	for i, v := range mask {
		if v != 0 && v != 1 {
			return nil, fmt.Errorf("pixart: caption mask value %d at sample %d, token %d: want 1 (keep) or 0 (padding)", v, i/l, i%l)
		}
		bias[i] = float32(1-v) * -10000
	}
	return tensor.FromFloat32(bias, n, l), nil
}

// pixArtPreset returns diffusers' PixArt-α XL/2 transformer config at a latent size.
func pixArtPreset(sampleSize int) PixArtConfig {
	c := pixArtDefaults()
	c.ClassName, c.SampleSize, c.CaptionChannels = "Transformer2DModel", sampleSize, 4096
	return c
}

// pixArtPresets lists PixArt-α XL/2 at 512 px (latent 64) and 1024 px (latent 128,
// with the resolution and aspect-ratio conditions), and tiny-pixart: a pixel-space
// 32×32 RGB model (patch 4, 4 layers, 2 heads × 32) reading 768-channel caption
// features (CLIP ViT-L/14's text width).
func pixArtPresets() map[string]Config {
	tiny := pixArtPreset(32)
	out := 6
	tiny.InChannels, tiny.OutChannels, tiny.PatchSize = 3, &out, 4
	tiny.NumLayers, tiny.NumAttentionHeads, tiny.AttentionHeadDim = 4, 2, 32
	// Caption features come from the tiny pipelines' 32-wide CLIP (textenc.TinyCLIPConfig).
	tiny.CrossAttentionDim, tiny.CaptionChannels = 64, 32
	return map[string]Config{"pixart-alpha-512": pixArtPreset(64), "pixart-alpha-1024": pixArtPreset(128), "tiny-pixart": tiny}
}
