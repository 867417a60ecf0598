package dit

import (
	"fmt"
	"math/rand/v2"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// DiT, "Scalable Diffusion Models with Transformers" (Peebles & Xie), as
// facebookresearch/DiT models.py builds it:
//
//	x [N, C, L, L] ─x_embedder─▶ [N, T, D] + pos_embed          T = (L/p)²
//	c = t_embedder(t) + y_embedder(y)                            [N, D]
//	blocks × depth: adaLN-Zero (shift, scale, gate) around attention and MLP
//	final_layer(x, c) ─unpatchify─▶ [N, Cout, L, L]              Cout = 2C with learn_sigma
//
// Parameter names are the official checkpoint keys.

// DiTConfig holds the constructor arguments of DiT's models.DiT under the names of its
// keyword arguments; a JSON file of them (the golden dit/config.json) is a DiT config.
type DiTConfig struct {
	InputSize        int     `json:"input_size"`         // latent side L (256 px / 8 = 32)
	PatchSize        int     `json:"patch_size"`         // p: tokens are p×p patches
	InChannels       int     `json:"in_channels"`        // C
	HiddenSize       int     `json:"hidden_size"`        // D
	Depth            int     `json:"depth"`              // number of DiT blocks
	NumHeads         int     `json:"num_heads"`          // H; the head dim is D/H
	MLPRatio         float64 `json:"mlp_ratio"`          // MLP hidden width int(D·ratio)
	ClassDropoutProb float64 `json:"class_dropout_prob"` // label dropout; > 0 adds the null class
	NumClasses       int     `json:"num_classes"`        // class labels 0..NumClasses-1
	LearnSigma       bool    `json:"learn_sigma"`        // predict [ε, Σ interpolation]: 2C outputs
}

// defaultDiTConfig is models.DiT's keyword defaults (DiT-XL/2 at 256 px).
func defaultDiTConfig() DiTConfig {
	return DiTConfig{InputSize: 32, PatchSize: 2, InChannels: 4, HiddenSize: 1152, Depth: 28, NumHeads: 16,
		MLPRatio: 4, ClassDropoutProb: 0.1, NumClasses: 1000, LearnSigma: true}
}

// Arch returns "dit".
func (c DiTConfig) Arch() string { return "dit" }

// OutChannels returns 2C with learned sigma, else C.
func (c DiTConfig) OutChannels() int {
	if c.LearnSigma {
		return 2 * c.InChannels
	}
	return c.InChannels
}

// Grid returns the number of patches per side, L/p.
func (c DiTConfig) Grid() int { return c.InputSize / c.PatchSize }

// MLPHidden returns the MLP width, int(D·mlp_ratio) as Python truncates it.
func (c DiTConfig) MLPHidden() int { return int(float64(c.HiddenSize) * c.MLPRatio) }

// Validate reports the first field that cannot build a DiT, naming it.
func (c DiTConfig) Validate() error {
	switch {
	case c.PatchSize <= 0 || c.InputSize <= 0 || c.InputSize%c.PatchSize != 0:
		return fmt.Errorf("field \"input_size\" = %d must be a positive multiple of \"patch_size\" = %d", c.InputSize, c.PatchSize)
	case c.InChannels <= 0:
		return fmt.Errorf("field \"in_channels\" = %d must be positive", c.InChannels)
	case c.HiddenSize <= 0 || c.HiddenSize%4 != 0:
		return fmt.Errorf("field \"hidden_size\" = %d must be a positive multiple of 4 (the 2-D sin-cos position embedding needs it)", c.HiddenSize)
	case c.Depth < 0:
		return fmt.Errorf("field \"depth\" = %d must not be negative", c.Depth)
	case c.NumHeads <= 0 || c.HiddenSize%c.NumHeads != 0:
		return fmt.Errorf("field \"num_heads\" = %d must divide \"hidden_size\" = %d", c.NumHeads, c.HiddenSize)
	case c.MLPHidden() <= 0:
		return fmt.Errorf("field \"mlp_ratio\" = %g gives an empty MLP", c.MLPRatio)
	case c.ClassDropoutProb < 0 || c.ClassDropoutProb >= 1:
		return fmt.Errorf("field \"class_dropout_prob\" = %g must be in [0, 1)", c.ClassDropoutProb)
	case c.NumClasses <= 0:
		return fmt.Errorf("field \"num_classes\" = %d must be positive (DiT is class-conditional)", c.NumClasses)
	}
	return nil
}

// labelRows is the size of the label table: one extra "null" row when dropout is on.
func (c DiTConfig) labelRows() int {
	if c.ClassDropoutProb > 0 {
		return c.NumClasses + 1
	}
	return c.NumClasses
}

// NumParams returns the parameter count as the official code reports it
// (sum(p.numel() for p in model.parameters())), which includes the fixed pos_embed
// [1, T, D] that DiT stores as a frozen nn.Parameter.
func (c DiTConfig) NumParams() int64 {
	d, p, h := int64(c.HiddenSize), int64(c.PatchSize), int64(c.MLPHidden())
	linear := func(in, out int64) int64 { return in*out + out }
	block := linear(d, 3*d) + linear(d, d) + linear(d, h) + linear(h, d) + linear(d, 6*d)
	return linear(int64(c.InChannels)*p*p, d) + // x_embedder
		int64(c.Grid()*c.Grid())*d + // pos_embed
		linear(timestepFreqDim, d) + linear(d, d) + // t_embedder
		int64(c.labelRows())*d + // y_embedder
		int64(c.Depth)*block +
		linear(d, 2*d) + linear(d, p*p*int64(c.OutChannels())) // final_layer
}

// timestepFreqDim is the width of the sinusoidal timestep features (DiT's
// frequency_embedding_size, diffusers' Timesteps(256)).
const timestepFreqDim = 256

// timestepFeatures returns the [N, 256] sinusoidal features [cos | sin] of t, computed
// in float32 as both DiT and diffusers (flip_sin_to_cos, shift 0) do.
func timestepFeatures(t []float32) *tensor.Tensor {
	return nn.SinusoidalEmbedding(t, nn.TimestepEmbeddingConfig{Dim: timestepFreqDim, FlipSinToCos: true})
}

// TimestepEmbedder maps diffusion timesteps to [N, D]: 256 sinusoidal features, then
// Linear (mlp.0), SiLU, Linear (mlp.2).
type TimestepEmbedder struct {
	MLP *nn.TimestepMLP // registered as mlp.0 and mlp.2
}

// Params returns mlp.0 and mlp.2.
func (e *TimestepEmbedder) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "mlp.0", M: e.MLP.Linear1}, nn.Child{Name: "mlp.2", M: e.MLP.Linear2})
}

// Forward embeds t (one timestep per sample) as [N, D].
func (e *TimestepEmbedder) Forward(t []float32) *tensor.Tensor {
	freq := timestepFeatures(t) // [N, 256]
	defer freq.Release()
	return e.MLP.Forward(freq)
}

// LabelEmbedder maps class labels to [N, D]. When DropoutProb > 0 its table has a
// last "null" row (index NumClasses) that stands for "no class": label dropout during
// training and the unconditional branch of classifier-free guidance use it.
type LabelEmbedder struct {
	NumClasses  int
	DropoutProb float64
	Table       *nn.Embedding // embedding_table: [NumClasses (+1), D]
}

// Params returns embedding_table.weight.
func (e *LabelEmbedder) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "embedding_table", M: e.Table})
}

// Null returns the null-class label for classifier-free guidance, or an error when the
// model was built without one (class_dropout_prob 0).
func (e *LabelEmbedder) Null() (int, error) {
	if e.DropoutProb <= 0 {
		return 0, fmt.Errorf("this DiT has no null class (class_dropout_prob is 0): it cannot do classifier-free guidance")
	}
	return e.NumClasses, nil
}

// Drop returns a copy of labels where each is replaced by the null class with
// probability DropoutProb, drawing from rng (DiT's training-time label dropout; pass a
// seeded rng to make a step reproducible). With DropoutProb 0 it returns a copy.
func (e *LabelEmbedder) Drop(labels []int, rng *rand.Rand) []int {
	out := make([]int, len(labels))
	for i, y := range labels {
		out[i] = y
		if e.DropoutProb > 0 && rng.Float64() < e.DropoutProb {
			out[i] = e.NumClasses
		}
	}
	return out
}

// Forward returns the embeddings [N, D] of labels. It fails naming the label when one
// is outside [0, NumClasses] (NumClasses itself only with a null class).
func (e *LabelEmbedder) Forward(labels []int) (*tensor.Tensor, error) {
	rows := e.Table.Weight.Dim(0)
	for i, y := range labels {
		if y < 0 || y >= rows {
			return nil, fmt.Errorf("dit: class label %d (sample %d) is outside [0, %d) (num_classes %d; the null class %d exists only when class_dropout_prob > 0)",
				y, i, rows, e.NumClasses, e.NumClasses)
		}
	}
	return e.Table.Forward(labels)
}

// Attention is DiT's (timm's) self-attention: one fused qkv projection whose output
// features are [q | k | v], each H heads of D/H contiguous features, then proj.
type Attention struct {
	Heads int
	QKV   *nn.Linear // qkv: [3D, D]
	Proj  *nn.Linear // proj: [D, D]
}

// Params returns qkv and proj.
func (a *Attention) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "qkv", M: a.QKV}, nn.Child{Name: "proj", M: a.Proj})
}

// Forward attends x [N, T, D] to itself: softmax(q·kᵀ/√(D/H))·v per head.
func (a *Attention) Forward(x *tensor.Tensor) *tensor.Tensor {
	qkv := a.QKV.Forward(x) // [N, T, 3D]
	defer qkv.Release()
	parts := tensor.Chunk(qkv, 3, -1) // q, k, v: [N, T, D] each
	defer tensor.Release(parts...)
	o := tensor.Attention(parts[0], parts[1], parts[2], a.Heads, nil, false) // [N, T, D]
	defer o.Release()
	return a.Proj.Forward(o)
}

// MLP is fc1, GELU (tanh approximation), fc2.
type MLP struct {
	FC1, FC2 *nn.Linear
}

// Params returns fc1 and fc2.
func (m *MLP) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "fc1", M: m.FC1}, nn.Child{Name: "fc2", M: m.FC2})
}

// Forward applies the MLP to x [..., D].
func (m *MLP) Forward(x *tensor.Tensor) *tensor.Tensor { return geluMLP(x, m.FC1, m.FC2) }

// DiTBlock is a transformer block with adaLN-Zero conditioning: from c it regresses a
// shift, scale and gate for the attention and for the MLP branch.
type DiTBlock struct {
	Norm1, Norm2    *nn.LayerNorm // no affine, eps 1e-6 (no parameters)
	Attn            *Attention
	MLP             *MLP
	AdaLNModulation *nn.Linear // adaLN_modulation.1 ([0] is the SiLU): [6D, D]
}

// Params returns attn, mlp and adaLN_modulation.1.
func (b *DiTBlock) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "attn", M: b.Attn}, nn.Child{Name: "mlp", M: b.MLP},
		nn.Child{Name: "adaLN_modulation.1", M: b.AdaLNModulation})
}

// Forward applies the block to x [N, T, D] conditioned on c [N, D].
func (b *DiTBlock) Forward(x, c *tensor.Tensor) *tensor.Tensor {
	m := adaLNModulation(b.AdaLNModulation, c, 6) // 6 × [N, 1, D]
	defer tensor.Release(m...)
	shiftMSA, scaleMSA, gateMSA, shiftMLP, scaleMLP, gateMLP := m[0], m[1], m[2], m[3], m[4], m[5]

	h1 := modulate(b.Norm1, x, shiftMSA, scaleMSA)
	attn := b.Attn.Forward(h1)
	x1 := gatedResidual(x, gateMSA, attn) // x + gateMSA·attn(modulate(norm1(x)))
	h2 := modulate(b.Norm2, x1, shiftMLP, scaleMLP)
	mlp := b.MLP.Forward(h2)
	defer tensor.Release(h1, attn, x1, h2, mlp)
	return gatedResidual(x1, gateMLP, mlp) // x1 + gateMLP·mlp(modulate(norm2(x1)))
}

// adaLNModulation returns Linear(SiLU(c)) split into n pieces [N, 1, D].
func adaLNModulation(l *nn.Linear, c *tensor.Tensor, n int) []*tensor.Tensor {
	a := tensor.SiLU(c)
	defer a.Release()
	mod := l.Forward(a) // [N, n·D]
	defer mod.Release()
	return adaLNChunks(mod, n)
}

// FinalLayer is adaLN (shift, scale; no gate) around a LayerNorm, then the Linear to
// p·p·Cout values per token.
type FinalLayer struct {
	NormFinal       *nn.LayerNorm // norm_final: no affine, eps 1e-6
	Linear          *nn.Linear    // linear: [p·p·Cout, D]
	AdaLNModulation *nn.Linear    // adaLN_modulation.1: [2D, D]
}

// Params returns linear and adaLN_modulation.1.
func (f *FinalLayer) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "linear", M: f.Linear}, nn.Child{Name: "adaLN_modulation.1", M: f.AdaLNModulation})
}

// Forward maps x [N, T, D] conditioned on c [N, D] to [N, T, p·p·Cout].
func (f *FinalLayer) Forward(x, c *tensor.Tensor) *tensor.Tensor {
	m := adaLNModulation(f.AdaLNModulation, c, 2) // 2 × [N, 1, D]
	defer tensor.Release(m...)
	shift, scale := m[0], m[1]
	h := modulate(f.NormFinal, x, shift, scale)
	defer h.Release()
	return f.Linear.Forward(h)
}

// DiT is the class-conditional diffusion transformer.
type DiT struct {
	Config     DiTConfig
	XEmbedder  *PatchEmbed       // x_embedder
	TEmbedder  *TimestepEmbedder // t_embedder
	YEmbedder  *LabelEmbedder    // y_embedder
	Blocks     []*DiTBlock       // blocks.N
	FinalLayer *FinalLayer       // final_layer
	// PosEmbed is the fixed sin-cos position embedding [1, T, D]. It is not a
	// parameter (Params leaves it out, so it is never trained or counted by
	// nn.CountParams) but it is part of the checkpoint as "pos_embed", which Load
	// reads and Save writes.
	PosEmbed *tensor.Tensor

	// Checkpoint runs every block under tensor.Checkpoint (gradient checkpointing): it
	// keeps only the block's inputs for backward and recomputes the block then.
	Checkpoint bool
	// SavedPerBlock is filled by each Forward: the bytes each block left saved for
	// backward (tensor.SavedBytes deltas; zeros under NoGrad).
	SavedPerBlock []int64
}

// NewDiT builds a DiT initialised as DiT's initialize_weights does, drawing from rng:
// xavier-uniform Linears with zero biases, the patch convolution xavier-uniform as a
// [D, C·p·p] matrix, label table and timestep MLP weights N(0, 0.02²), and every
// adaLN modulation and the final Linear zero (adaLN-Zero: each block starts as the
// identity and the output as 0). It fails when the config is invalid.
func NewDiT(c DiTConfig, rng *rand.Rand) (*DiT, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("dit config: %w", err)
	}
	d, p, g := c.HiddenSize, c.PatchSize, c.Grid()
	m := &DiT{Config: c,
		XEmbedder: &PatchEmbed{Proj: &nn.Conv2d{Weight: xavierUniform(rng, c.InChannels*p*p, d, d, c.InChannels, p, p),
			Bias: zeros(d), Stride: p, Groups: 1}},
		TEmbedder: &TimestepEmbedder{MLP: &nn.TimestepMLP{
			Linear1: &nn.Linear{Weight: normal(rng, 0.02, d, timestepFreqDim), Bias: zeros(d)},
			Linear2: &nn.Linear{Weight: normal(rng, 0.02, d, d), Bias: zeros(d)}}},
		YEmbedder: &LabelEmbedder{NumClasses: c.NumClasses, DropoutProb: c.ClassDropoutProb,
			Table: &nn.Embedding{Weight: normal(rng, 0.02, c.labelRows(), d)}},
		PosEmbed: tensor.FromFloat32(sinCosPosEmbed(d, g, g, float64(g), 1), 1, g*g, d),
		FinalLayer: &FinalLayer{NormFinal: nn.NewLayerNorm(d, 1e-6, false),
			Linear:          &nn.Linear{Weight: zeros(p*p*c.OutChannels(), d), Bias: zeros(p * p * c.OutChannels())},
			AdaLNModulation: &nn.Linear{Weight: zeros(2*d, d), Bias: zeros(2 * d)}},
	}
	for range c.Depth {
		m.Blocks = append(m.Blocks, &DiTBlock{
			Norm1: nn.NewLayerNorm(d, 1e-6, false), Norm2: nn.NewLayerNorm(d, 1e-6, false),
			Attn:            &Attention{Heads: c.NumHeads, QKV: xavierLinear(rng, d, 3*d), Proj: xavierLinear(rng, d, d)},
			MLP:             &MLP{FC1: xavierLinear(rng, d, c.MLPHidden()), FC2: xavierLinear(rng, c.MLPHidden(), d)},
			AdaLNModulation: &nn.Linear{Weight: zeros(6*d, d), Bias: zeros(6 * d)},
		})
	}
	return m, nil
}

// Params returns every trainable tensor under its checkpoint key (pos_embed excluded).
func (m *DiT) Params(prefix string) []nn.Param {
	cs := []nn.Child{{Name: "x_embedder", M: m.XEmbedder}, {Name: "t_embedder", M: m.TEmbedder}, {Name: "y_embedder", M: m.YEmbedder}}
	for i, b := range m.Blocks {
		cs = append(cs, nn.Child{Name: fmt.Sprintf("blocks.%d", i), M: b})
	}
	return nn.Children(prefix, append(cs, nn.Child{Name: "final_layer", M: m.FinalLayer})...)
}

// checkpointState is m's state dict as the official code saves it: the parameters plus
// pos_embed.
type checkpointState struct{ m *DiT }

func (s checkpointState) Params(prefix string) []nn.Param {
	return append(s.m.Params(prefix), nn.Param{Name: prefix + "pos_embed", Ptr: &s.m.PosEmbed})
}

// Load reads the model's tensors (parameters and pos_embed) from a safetensors file
// with nn.LoadFile's checks: every key present with the right shape, no surplus keys.
// pos_embed is widened to float32 even under KeepHalf, since it is added to
// activations.
func (m *DiT) Load(path string, o nn.LoadOptions) error {
	if err := nn.LoadFile(checkpointState{m}, path, o); err != nil {
		return err
	}
	if m.PosEmbed.DType() != tensor.F32 {
		wide := m.PosEmbed.Clone()
		m.PosEmbed.Release()
		m.PosEmbed = wide
	}
	return nil
}

// Save writes the parameters and pos_embed to a safetensors file (atomically).
func (m *DiT) Save(path, prefix string, metadata map[string]string) error {
	return nn.SaveFile(checkpointState{m}, path, prefix, metadata)
}

// Release releases every parameter and the position embedding.
func (m *DiT) Release() {
	nn.ReleaseParams(m)
	m.PosEmbed.Release()
}

// Forward predicts from latents x [N, C, L, L] at timesteps t (one per sample) for
// class labels y the output [N, Cout, L, L]; with learn_sigma channels [0, C) are ε
// and [C, 2C) the variance interpolation. The caller releases the result. It fails,
// naming the argument, when x's shape does not fit the config or a label is out of
// range; use YEmbedder.Null() as the label of the unconditional CFG branch.
func (m *DiT) Forward(x *tensor.Tensor, t []float32, y []int) (*tensor.Tensor, error) {
	c := m.Config
	if x.Rank() != 4 || x.Dim(1) != c.InChannels || x.Dim(2) != c.InputSize || x.Dim(3) != c.InputSize {
		return nil, fmt.Errorf("dit: latents %v: want [N, %d, %d, %d] (in_channels, input_size)", x.Shape(), c.InChannels, c.InputSize, c.InputSize)
	}
	if len(t) != x.Dim(0) || len(y) != x.Dim(0) {
		return nil, fmt.Errorf("dit: %d timesteps and %d labels for a batch of %d", len(t), len(y), x.Dim(0))
	}
	yEmb, err := m.YEmbedder.Forward(y) // [N, D]
	if err != nil {
		return nil, err
	}
	defer yEmb.Release()
	return m.ForwardEmbedded(x, t, yEmb)
}

// ForwardEmbedded is Forward with the class embedding given directly as yEmb [N, D]
// (added to the timestep embedding): text-conditioned pipelines pass a projection of
// a pooled text embedding there.
func (m *DiT) ForwardEmbedded(x *tensor.Tensor, t []float32, yEmb *tensor.Tensor) (*tensor.Tensor, error) {
	c := m.Config
	if x.Rank() != 4 || x.Dim(1) != c.InChannels || x.Dim(2) != c.InputSize || x.Dim(3) != c.InputSize {
		return nil, fmt.Errorf("dit: latents %v: want [N, %d, %d, %d] (in_channels, input_size)", x.Shape(), c.InChannels, c.InputSize, c.InputSize)
	}
	if len(t) != x.Dim(0) || yEmb.Rank() != 2 || yEmb.Dim(0) != x.Dim(0) || yEmb.Dim(1) != c.HiddenSize {
		return nil, fmt.Errorf("dit: %d timesteps and conditioning %v for a batch of %d (want [N, %d])", len(t), yEmb.Shape(), x.Dim(0), c.HiddenSize)
	}
	tEmb := m.TEmbedder.Forward(t)    // [N, D]
	cond := tensor.Add(tEmb, yEmb)    // [N, D]
	patches := m.XEmbedder.Forward(x) // [N, T, D]
	tokens := tensor.Add(patches, m.PosEmbed)
	defer tensor.Release(tEmb, cond, patches, tokens)

	h, saved := runBlocks(len(m.Blocks), func(i int, h *tensor.Tensor, ctx []*tensor.Tensor) *tensor.Tensor {
		return m.Blocks[i].Forward(h, ctx[0])
	}, m.Checkpoint, tokens, cond)
	m.SavedPerBlock = saved
	defer h.Release()
	out := m.FinalLayer.Forward(h, cond) // [N, T, p·p·Cout]
	defer out.Release()
	return unpatchify(out, c.Grid(), c.Grid(), c.PatchSize, c.OutChannels()), nil
}

// ditPreset returns the DiT paper's model (Table 1) at 256 px (latent 32) on the
// 1000 ImageNet classes with learned sigma, as the official checkpoints are.
func ditPreset(hidden, depth, heads, patch int) DiTConfig {
	c := defaultDiTConfig()
	c.HiddenSize, c.Depth, c.NumHeads, c.PatchSize = hidden, depth, heads, patch
	return c
}

// ditPresets lists the DiT paper's S/B/L/XL models at patch 2, 4 and 8, the 512 px
// DiT-XL/2 and tiny-dit: a pixel-space 32×32 RGB model with 10 classes small enough
// to train on a CPU in minutes (depth 4, width 128, 2 heads of 64 as in the paper's models,
// patch 4: 64 tokens).
func ditPresets() map[string]Config {
	ps := map[string]Config{}
	for _, s := range []struct {
		name                 string
		hidden, depth, heads int
	}{{"s", 384, 12, 6}, {"b", 768, 12, 12}, {"l", 1024, 24, 16}, {"xl", 1152, 28, 16}} {
		for _, p := range []int{2, 4, 8} {
			ps[fmt.Sprintf("dit-%s-%d", s.name, p)] = ditPreset(s.hidden, s.depth, s.heads, p)
		}
	}
	xl512 := ditPreset(1152, 28, 16, 2)
	xl512.InputSize = 64
	ps["dit-xl-2-512"] = xl512
	ps["tiny-dit"] = DiTConfig{InputSize: 32, PatchSize: 4, InChannels: 3, HiddenSize: 128, Depth: 4, NumHeads: 2,
		MLPRatio: 4, ClassDropoutProb: 0.1, NumClasses: 10, LearnSigma: true}
	return ps
}
