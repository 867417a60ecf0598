package membench

import (
	"fmt"
	"math"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// LlamaConfig shapes the decoder; Llama32_1B is Llama-3.2-1B's.
type LlamaConfig struct {
	Vocab, Hidden, Intermediate, Layers, Heads, KVHeads int
	RopeTheta                                           float64
	NormEps                                             float32
}

// Llama32_1B is the shape of Meta's Llama-3.2-1B (tied embeddings).
var Llama32_1B = LlamaConfig{Vocab: 128256, Hidden: 2048, Intermediate: 8192, Layers: 16, Heads: 32, KVHeads: 8, RopeTheta: 500000, NormEps: 1e-5}

// HeadDim returns the per-head width.
func (c LlamaConfig) HeadDim() int { return c.Hidden / c.Heads }

// llamaLayer is one decoder layer with Hugging Face's parameter names.
type llamaLayer struct {
	InputNorm, PostNorm *tensor.Tensor // input_layernorm, post_attention_layernorm weights
	Q, K, V, O          *nn.Linear     // self_attn.{q,k,v,o}_proj
	Gate, Up, Down      *nn.Linear     // mlp.{gate,up,down}_proj
}

func (l *llamaLayer) Params(prefix string) []nn.Param {
	ps := nn.Children(prefix, nn.Child{Name: "self_attn.q_proj", M: l.Q}, nn.Child{Name: "self_attn.k_proj", M: l.K},
		nn.Child{Name: "self_attn.v_proj", M: l.V}, nn.Child{Name: "self_attn.o_proj", M: l.O},
		nn.Child{Name: "mlp.gate_proj", M: l.Gate}, nn.Child{Name: "mlp.up_proj", M: l.Up}, nn.Child{Name: "mlp.down_proj", M: l.Down})
	return append(ps, nn.Param{Name: prefix + "input_layernorm.weight", Ptr: &l.InputNorm}, nn.Param{Name: prefix + "post_attention_layernorm.weight", Ptr: &l.PostNorm})
}

// Llama is the decoder: embeddings, layers, final norm, tied output head.
type Llama struct {
	Config LlamaConfig
	Embed  *nn.Embedding
	Layers []*llamaLayer
	Norm   *tensor.Tensor
	// Checkpoint recomputes each layer in backward.
	Checkpoint bool
}

// NewLlama builds a decoder with zero weights (norm weights one): memory and time do
// not depend on the values, and zeros are fast to make at 1B parameters.
func NewLlama(c LlamaConfig) *Llama {
	kv := c.KVHeads * c.HeadDim()
	lin := func(in, out int) *nn.Linear { return &nn.Linear{Weight: tensor.Zeros(out, in).SetRequiresGrad(true)} }
	m := &Llama{Config: c, Embed: &nn.Embedding{Weight: tensor.Zeros(c.Vocab, c.Hidden).SetRequiresGrad(true)},
		Norm: tensor.Full(1, c.Hidden).SetRequiresGrad(true)}
	for range c.Layers {
		m.Layers = append(m.Layers, &llamaLayer{
			InputNorm: tensor.Full(1, c.Hidden).SetRequiresGrad(true), PostNorm: tensor.Full(1, c.Hidden).SetRequiresGrad(true),
			Q: lin(c.Hidden, c.Hidden), K: lin(c.Hidden, kv), V: lin(c.Hidden, kv), O: lin(c.Hidden, c.Hidden),
			Gate: lin(c.Hidden, c.Intermediate), Up: lin(c.Hidden, c.Intermediate), Down: lin(c.Intermediate, c.Hidden),
		})
	}
	return m
}

// Params returns Hugging Face's keys (model.*).
func (m *Llama) Params(prefix string) []nn.Param {
	ps := nn.Children(prefix+"model.", nn.Child{Name: "embed_tokens", M: m.Embed})
	for i, l := range m.Layers {
		ps = append(ps, l.Params(fmt.Sprintf("%smodel.layers.%d.", prefix, i))...)
	}
	return append(ps, nn.Param{Name: prefix + "model.norm.weight", Ptr: &m.Norm})
}

// Loss returns the training loss used for memory measurement: the mean square of the
// final (normed) hidden states. It stands in for the language-model head and
// cross-entropy, which are the same for every method compared and not adapted, so
// that the comparison isolates the decoder layers; like token ids, it needs no
// activation-sized input. ids are [B][T].
func (m *Llama) Loss(ids [][]int) (*tensor.Tensor, error) {
	b, t := len(ids), len(ids[0])
	var flat []int
	for _, row := range ids {
		flat = append(flat, row...)
	}
	e, err := m.Embed.Forward(flat)
	if err != nil {
		return nil, err
	}
	x := tensor.Reshape(e, b, t, m.Config.Hidden) // [B, T, D]
	e.Release()
	cos, sin := rope(t, m.Config.HeadDim(), m.Config.RopeTheta)
	defer tensor.Release(cos, sin)
	for _, l := range m.Layers {
		var y *tensor.Tensor
		if m.Checkpoint {
			y = tensor.Checkpoint(func(in []*tensor.Tensor) *tensor.Tensor { return l.forward(m.Config, in[0], cos, sin) }, x)
		} else {
			y = l.forward(m.Config, x, cos, sin)
		}
		x.Release()
		x = y
	}
	h := tensor.RMSNorm(x, m.Norm, m.Config.NormEps)
	x.Release()
	defer h.Release()
	return tensor.MSELoss(h, nil), nil
}

// forward is x + attn(norm(x)), then + mlp(norm(·)).
func (l *llamaLayer) forward(c LlamaConfig, x, cos, sin *tensor.Tensor) *tensor.Tensor {
	hd := c.HeadDim()
	h := tensor.RMSNorm(x, l.InputNorm, c.NormEps)
	q, k, v := l.Q.Forward(h), l.K.Forward(h), l.V.Forward(h) // [B, T, H·hd], [B, T, KV·hd]
	qr, kr := applyRope(q, cos, sin, c.Heads, hd), applyRope(k, cos, sin, c.KVHeads, hd)
	kx, vx := repeatKV(kr, c.Heads/c.KVHeads, hd), repeatKV(v, c.Heads/c.KVHeads, hd)
	a := tensor.Attention(qr, kx, vx, c.Heads, nil, true) // [B, T, H·hd]
	o := l.O.Forward(a)
	x1 := tensor.Add(x, o)
	tensor.Release(h, q, k, v, qr, kr, kx, vx, a, o)

	h = tensor.RMSNorm(x1, l.PostNorm, c.NormEps)
	g, u := l.Gate.Forward(h), l.Up.Forward(h)   // [B, T, I]
	gu := tensor.GatedAct(u, g, tensor.GateSiLU) // SiLU(g)·u, keeping g and u (as a fused SwiGLU does)
	d := l.Down.Forward(gu)
	defer tensor.Release(x1, h, g, u, gu, d)
	return tensor.Add(x1, d)
}

// rope returns the rotary cos and sin tables [T, hd] (the half-split layout Hugging
// Face's Llama uses: frequencies repeated for both halves).
func rope(t, hd int, theta float64) (*tensor.Tensor, *tensor.Tensor) {
	cos, sin := make([]float32, t*hd), make([]float32, t*hd)
	half := hd / 2
	for p := range t {
		for i := range half {
			f := float64(p) / math.Pow(theta, float64(2*i)/float64(hd))
			c, s := float32(math.Cos(f)), float32(math.Sin(f))
			cos[p*hd+i], cos[p*hd+half+i] = c, c
			sin[p*hd+i], sin[p*hd+half+i] = s, s
		}
	}
	return tensor.FromFloat32(cos, t, hd), tensor.FromFloat32(sin, t, hd)
}

// applyRope rotates x [B, T, H·hd]: x·cos + rotate_half(x)·sin per head, where
// rotate_half(x) = [−x₂, x₁] on the two halves of each head.
func applyRope(x, cos, sin *tensor.Tensor, heads, hd int) *tensor.Tensor {
	b, t := x.Dim(0), x.Dim(1)
	xh := tensor.Reshape(x, b, t, heads, hd) // [B, T, H, hd]
	halves := tensor.Chunk(xh, 2, -1)        // x₁, x₂: [B, T, H, hd/2]
	neg := tensor.Scale(halves[1], -1)
	rot := tensor.Concat(3, neg, halves[0]) // [B, T, H, hd]
	c := tensor.Reshape(cos, 1, t, 1, hd)
	s := tensor.Reshape(sin, 1, t, 1, hd)
	xc, rs := tensor.Mul(xh, c), tensor.Mul(rot, s)
	sum := tensor.Add(xc, rs)
	defer tensor.Release(xh, halves[0], halves[1], neg, rot, c, s, xc, rs, sum)
	return tensor.Reshape(sum, b, t, heads*hd)
}

// repeatKV repeats each of the key/value heads n times (Hugging Face's repeat_kv).
func repeatKV(x *tensor.Tensor, n, hd int) *tensor.Tensor {
	if n == 1 {
		return tensor.Reshape(x, x.Shape()...)
	}
	b, t := x.Dim(0), x.Dim(1)
	kv := x.Dim(2) / hd
	xh := tensor.Reshape(x, b, t, kv, 1, hd) // [B, T, KV, 1, hd]
	parts := make([]*tensor.Tensor, n)
	for i := range parts {
		parts[i] = xh
	}
	r := tensor.Concat(3, parts...) // [B, T, KV, n, hd]
	defer tensor.Release(xh, r)
	return tensor.Reshape(r, b, t, kv*n*hd)
}
