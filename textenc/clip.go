package textenc

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// CLIPConfig is the text half of a Hugging Face CLIP config.json (CLIPTextConfig).
type CLIPConfig struct {
	VocabSize             int     `json:"vocab_size"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	HiddenAct             string  `json:"hidden_act"` // "quick_gelu" (SD1) or "gelu" (SD2's OpenCLIP)
	LayerNormEps          float64 `json:"layer_norm_eps"`
	EOSTokenID            int     `json:"eos_token_id"`
	ProjectionDim         int     `json:"projection_dim"` // width of text_projection, when present
}

// LoadCLIPConfig reads a Hugging Face text-encoder config.json.
func LoadCLIPConfig(path string) (CLIPConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return CLIPConfig{}, fmt.Errorf("read text encoder config: %w", err)
	}
	var c CLIPConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return CLIPConfig{}, fmt.Errorf("%s: %w (want a Hugging Face CLIPTextConfig)", path, err)
	}
	if err := c.Validate(); err != nil {
		return CLIPConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate reports the first field that makes the config unusable.
func (c CLIPConfig) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads}, {"max_position_embeddings", c.MaxPositionEmbeddings}} {
		if f.v <= 0 {
			return fmt.Errorf("text encoder config: %s = %d, want > 0", f.name, f.v)
		}
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		return fmt.Errorf("text encoder config: hidden_size %d is not divisible by num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	}
	if c.HiddenAct != "quick_gelu" && c.HiddenAct != "gelu" {
		return fmt.Errorf("text encoder config: hidden_act %q, want quick_gelu or gelu", c.HiddenAct)
	}
	return nil
}

// clipLayer is one pre-LN transformer layer: x += attn(LN1(x)); x += mlp(LN2(x)).
type clipLayer struct {
	LN1, LN2     *nn.LayerNorm
	Q, K, V, Out *nn.Linear
	FC1, FC2     *nn.Linear
	heads        int
	quickGELU    bool
}

func (l *clipLayer) Params(prefix string) []nn.Param {
	return nn.Children(prefix,
		nn.Child{Name: "self_attn.q_proj", M: l.Q}, nn.Child{Name: "self_attn.k_proj", M: l.K},
		nn.Child{Name: "self_attn.v_proj", M: l.V}, nn.Child{Name: "self_attn.out_proj", M: l.Out},
		nn.Child{Name: "layer_norm1", M: l.LN1}, nn.Child{Name: "mlp.fc1", M: l.FC1},
		nn.Child{Name: "mlp.fc2", M: l.FC2}, nn.Child{Name: "layer_norm2", M: l.LN2})
}

func (l *clipLayer) forward(x *tensor.Tensor) *tensor.Tensor {
	h := l.LN1.Forward(x)
	q, k, v := l.Q.Forward(h), l.K.Forward(h), l.V.Forward(h) // [N, T, W]
	a := tensor.Attention(q, k, v, l.heads, nil, true)
	o := l.Out.Forward(a)
	x1 := tensor.Add(x, o)
	tensor.Release(h, q, k, v, a, o)

	h = l.LN2.Forward(x1)
	f := l.FC1.Forward(h)
	g := l.act(f)
	m := l.FC2.Forward(g)
	defer tensor.Release(x1, h, f, g, m)
	return tensor.Add(x1, m)
}

// act is quick_gelu(x) = x·σ(1.702x) = SiLU(1.702x)/1.702, or exact GELU.
func (l *clipLayer) act(x *tensor.Tensor) *tensor.Tensor {
	if !l.quickGELU {
		return tensor.GELU(x, false)
	}
	const k = 1.702
	s := tensor.Scale(x, k)
	a := tensor.SiLU(s)
	defer tensor.Release(s, a)
	return tensor.Scale(a, 1/k)
}

// CLIPText is the CLIP text transformer, CLIPTextModel in Hugging Face naming, with an
// optional text projection (CLIPTextModelWithProjection's "text_projection").
type CLIPText struct {
	Config         CLIPConfig
	TokenEmbedding *nn.Embedding
	PosEmbedding   *nn.Embedding
	Layers         []*clipLayer
	FinalLN        *nn.LayerNorm
	Projection     *nn.Linear // nil unless the checkpoint has one
}

// NewCLIPText builds a CLIPText with random weights from rng (N(0, 0.02) embeddings,
// PyTorch-default linears). withProjection adds text_projection [ProjectionDim, W].
func NewCLIPText(c CLIPConfig, rng *rand.Rand, withProjection bool) (*CLIPText, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	eps := float32(c.LayerNormEps)
	m := &CLIPText{Config: c,
		TokenEmbedding: nn.NewEmbedding(rng, c.VocabSize, c.HiddenSize),
		PosEmbedding:   nn.NewEmbedding(rng, c.MaxPositionEmbeddings, c.HiddenSize),
		FinalLN:        nn.NewLayerNorm(c.HiddenSize, eps, true),
	}
	scaleInit(m.TokenEmbedding.Weight, 0.02)
	scaleInit(m.PosEmbedding.Weight, 0.01)
	for range c.NumHiddenLayers {
		w, f := c.HiddenSize, c.IntermediateSize
		m.Layers = append(m.Layers, &clipLayer{
			LN1: nn.NewLayerNorm(w, eps, true), LN2: nn.NewLayerNorm(w, eps, true),
			Q: nn.NewLinear(rng, w, w, true), K: nn.NewLinear(rng, w, w, true),
			V: nn.NewLinear(rng, w, w, true), Out: nn.NewLinear(rng, w, w, true),
			FC1: nn.NewLinear(rng, w, f, true), FC2: nn.NewLinear(rng, f, w, true),
			heads: c.NumAttentionHeads, quickGELU: c.HiddenAct == "quick_gelu",
		})
	}
	if withProjection {
		if c.ProjectionDim <= 0 {
			return nil, fmt.Errorf("text encoder config: projection_dim %d, want > 0 for a text projection", c.ProjectionDim)
		}
		m.Projection = nn.NewLinear(rng, c.HiddenSize, c.ProjectionDim, false)
	}
	return m, nil
}

// scaleInit multiplies a freshly drawn N(0, 1) table by std.
func scaleInit(t *tensor.Tensor, std float32) {
	for i, v := range t.Data() {
		t.Data()[i] = v * std
	}
}

// Params returns the Hugging Face keys: "text_model.*" and "text_projection.weight".
func (m *CLIPText) Params(prefix string) []nn.Param {
	cs := []nn.Child{{Name: "text_model.embeddings.token_embedding", M: m.TokenEmbedding},
		{Name: "text_model.embeddings.position_embedding", M: m.PosEmbedding}}
	for i, l := range m.Layers {
		cs = append(cs, nn.Child{Name: fmt.Sprintf("text_model.encoder.layers.%d", i), M: l})
	}
	cs = append(cs, nn.Child{Name: "text_model.final_layer_norm", M: m.FinalLN}, nn.Child{Name: "text_projection", M: m.Projection})
	return nn.Children(prefix, cs...)
}

// CLIPOutput is what the text encoder returns; the caller releases every tensor.
type CLIPOutput struct {
	LastHidden *tensor.Tensor // [N, T, W]: final layer norm of the layer ClipSkip picks
	Pooled     *tensor.Tensor // [N, W]: LastHidden at each sequence's end token
	TextEmbeds *tensor.Tensor // [N, E]: Pooled·text_projectionᵀ, nil without a projection
}

// Release releases the output's tensors.
func (o CLIPOutput) Release() { tensor.Release(o.LastHidden, o.Pooled, o.TextEmbeds) }

// Embed looks up token embeddings for ids [N][T] as [N, T, W]. It returns an error
// naming the id when one is outside the vocabulary or a row has the wrong length.
func (m *CLIPText) Embed(ids [][]int) (*tensor.Tensor, error) {
	flat, t, err := m.flatten(ids)
	if err != nil {
		return nil, err
	}
	e, err := m.TokenEmbedding.Forward(flat)
	if err != nil {
		return nil, fmt.Errorf("text encoder: %w", err)
	}
	defer e.Release()
	return tensor.Reshape(e, len(ids), t, m.Config.HiddenSize), nil
}

func (m *CLIPText) flatten(ids [][]int) ([]int, int, error) {
	if len(ids) == 0 {
		return nil, 0, fmt.Errorf("text encoder: no token sequences")
	}
	t := len(ids[0])
	if t == 0 || t > m.Config.MaxPositionEmbeddings {
		return nil, 0, fmt.Errorf("text encoder: %d tokens per sequence, want 1..%d", t, m.Config.MaxPositionEmbeddings)
	}
	flat := make([]int, 0, len(ids)*t)
	for i, row := range ids {
		if len(row) != t {
			return nil, 0, fmt.Errorf("text encoder: sequence %d has %d tokens, sequence 0 has %d (pad them to one length)", i, len(row), t)
		}
		flat = append(flat, row...)
	}
	return flat, t, nil
}

// Forward encodes token ids [N][T]. clipSkip 0 or 1 uses the last layer; k > 1 uses
// the output of layer L-k+1 (A1111's "clip skip"), always followed by the final norm.
func (m *CLIPText) Forward(ids [][]int, clipSkip int) (CLIPOutput, error) {
	e, err := m.Embed(ids)
	if err != nil {
		return CLIPOutput{}, err
	}
	defer e.Release()
	return m.ForwardEmbeds(e, ids, clipSkip)
}

// ForwardEmbeds runs the transformer from token embeddings [N, T, W] (so that textual
// inversion can differentiate with respect to them); ids locate the end tokens.
func (m *CLIPText) ForwardEmbeds(embeds *tensor.Tensor, ids [][]int, clipSkip int) (CLIPOutput, error) {
	_, t, err := m.flatten(ids)
	if err != nil {
		return CLIPOutput{}, err
	}
	w := m.Config.HiddenSize
	if !slices.Equal(embeds.Shape(), []int{len(ids), t, w}) {
		return CLIPOutput{}, fmt.Errorf("text encoder: embeddings %v for %d sequences of %d tokens", embeds.Shape(), len(ids), t)
	}
	if clipSkip < 0 || clipSkip > len(m.Layers) {
		return CLIPOutput{}, fmt.Errorf("text encoder: clip skip %d, want 0..%d", clipSkip, len(m.Layers))
	}
	pos := make([]int, t)
	for i := range pos {
		pos[i] = i
	}
	p := tensor.Embedding(m.PosEmbedding.Weight, pos) // [T, W]
	x := tensor.Add(embeds, p)                        // [N, T, W]
	p.Release()
	layers := len(m.Layers) - max(clipSkip-1, 0)
	for _, l := range m.Layers[:layers] {
		y := l.forward(x)
		x.Release()
		x = y
	}
	out := CLIPOutput{LastHidden: m.FinalLN.Forward(x)}
	x.Release()
	out.Pooled = m.pool(out.LastHidden, ids)
	if m.Projection != nil {
		out.TextEmbeds = m.Projection.Forward(out.Pooled)
	}
	return out, nil
}

// pool picks each sequence's end-token row. Configs with eos_token_id 2 (the original
// CLIP releases) locate it as the largest id, as transformers does; others use the
// first eos_token_id.
func (m *CLIPText) pool(h *tensor.Tensor, ids [][]int) *tensor.Tensor {
	t, w := len(ids[0]), m.Config.HiddenSize
	rows := make([]*tensor.Tensor, len(ids))
	flat := tensor.Reshape(h, len(ids)*t, w) // [N·T, W]
	defer flat.Release()
	for n, row := range ids {
		at := 0
		for i, id := range row {
			if (m.Config.EOSTokenID == 2 && id > row[at]) || (m.Config.EOSTokenID != 2 && id == m.Config.EOSTokenID) {
				at = i
				if m.Config.EOSTokenID != 2 {
					break
				}
			}
		}
		rows[n] = tensor.Slice(flat, 0, n*t+at, n*t+at+1) // [1, W]
	}
	defer tensor.Release(rows...)
	return tensor.Concat(0, rows...) // [N, W]
}
