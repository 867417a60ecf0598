package dit

import (
	"math"
	"math/rand/v2"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// Pieces both denoisers share: the patch embedding, the fixed 2-D sin-cos position
// embedding, adaLN modulation, unpatchify and the initialisers.

// PatchEmbed turns latents [N, C, H, W] into tokens [N, T, D] with a p×p convolution
// of stride p (T = (H/p)·(W/p), row-major over the patch grid). It is DiT's
// x_embedder and diffusers' pos_embed; its one child is "proj".
type PatchEmbed struct {
	Proj *nn.Conv2d // proj: weight [D, C, p, p], bias [D]
}

// newPatchEmbed returns a PatchEmbed with PyTorch's default Conv2d initialisation.
func newPatchEmbed(rng *rand.Rand, in, dim, patch int) *PatchEmbed {
	return &PatchEmbed{Proj: nn.NewConv2d(rng, in, dim, patch, patch, 0, 1, true)}
}

// Params returns proj.weight and proj.bias.
func (e *PatchEmbed) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "proj", M: e.Proj})
}

// Forward embeds x [N, C, H, W] as tokens [N, T, D].
func (e *PatchEmbed) Forward(x *tensor.Tensor) *tensor.Tensor {
	h := e.Proj.Forward(x) // [N, D, H/p, W/p]
	defer h.Release()
	n, d := h.Dim(0), h.Dim(1)
	flat := tensor.Reshape(h, n, d, -1) // [N, D, T]
	defer flat.Release()
	return tensor.Transpose(flat, 1, 2) // [N, T, D]
}

// sinCosPosEmbed returns the fixed 2-D sin-cos position embedding [gh·gw, dim] as
// DiT's and diffusers' get_2d_sincos_pos_embed compute it. Token n = row·gw + col sits
// at position (col·base/gw/scale, row·base/gh/scale), computed in float32 as numpy does
// (DiT: base = grid, scale = 1, so positions are the plain indices). The first dim/2
// features encode the column, the last dim/2 the row, each as [sin(pos·ω_k) | cos(pos·ω_k)]
// with ω_k = 10000^(-k/(dim/4)), k < dim/4, in float64; the result is rounded to float32.
func sinCosPosEmbed(dim, gh, gw int, base, scale float64) []float32 {
	quarter := dim / 4
	omega := make([]float64, quarter)
	for k := range omega {
		omega[k] = 1 / math.Pow(10000, float64(k)/(float64(dim/2)/2))
	}
	pos := func(i, g int) float64 { // np.arange(g, dtype=float32) / (g / base) / scale
		return float64(float32(float32(i)/float32(float64(g)/base)) / float32(scale))
	}
	out := make([]float32, gh*gw*dim)
	for r := range gh {
		for c := range gw {
			row := out[(r*gw+c)*dim : (r*gw+c+1)*dim]
			for half, p := range [2]float64{pos(c, gw), pos(r, gh)} {
				enc := row[half*dim/2 : (half+1)*dim/2]
				for k, w := range omega {
					s, co := math.Sincos(p * w)
					enc[k], enc[quarter+k] = float32(s), float32(co)
				}
			}
		}
	}
	return out
}

// adaLNChunks splits a modulation vector [N, n·D] (already projected) into n pieces
// [N, 1, D], in the order the papers list them (shift, scale, gate, ...).
func adaLNChunks(mod *tensor.Tensor, n int) []*tensor.Tensor {
	rows := tensor.Reshape(mod, mod.Dim(0), 1, mod.Dim(1)) // [N, 1, n·D]
	defer rows.Release()
	return tensor.Chunk(rows, n, -1) // n × [N, 1, D]
}

// modulate returns norm(x)·(1 + scale) + shift, DiT's modulate after a LayerNorm;
// x is [N, T, D], shift and scale [N, 1, D].
func modulate(norm *nn.LayerNorm, x, shift, scale *tensor.Tensor) *tensor.Tensor {
	h := norm.Forward(x)
	defer h.Release()
	return tensor.Modulate(h, shift, scale)
}

// gatedResidual returns x + gate·h (gate [N, 1, D], or nil for a plain residual).
func gatedResidual(x, gate, h *tensor.Tensor) *tensor.Tensor { return tensor.GatedAdd(x, gate, h) }

// geluMLP returns l2(GELU(l1(x))) with the tanh-approximate GELU: DiT's MLP and
// PixArt-α's caption projection, which differ only in their key names.
func geluMLP(x *tensor.Tensor, l1, l2 *nn.Linear) *tensor.Tensor {
	h := l1.Forward(x)
	defer h.Release()
	a := tensor.GELU(h, true)
	defer a.Release()
	return l2.Forward(a)
}

// unpatchify turns tokens [N, gh·gw, p·p·C] back into an image [N, C, gh·p, gw·p]
// (einsum "nhwpqc->nchpwq").
func unpatchify(x *tensor.Tensor, gh, gw, p, c int) *tensor.Tensor {
	n := x.Dim(0)
	grid := tensor.Reshape(x, n, gh, gw, p, p, c) // [N, h, w, p, q, C]
	defer grid.Release()
	img := tensor.Permute(grid, 0, 5, 1, 3, 2, 4) // [N, C, h, p, w, q]
	defer img.Release()
	return tensor.Reshape(img, n, c, gh*p, gw*p) // [N, C, H, W]
}

// runBlocks applies blocks in order to x, each through tensor.Checkpoint when
// checkpoint is set, and returns the result and the bytes each block left saved for
// backward (tensor.SavedBytes after minus before). ctx are the other inputs every
// block reads (conditioning, context): they must be passed here rather than captured,
// so that a checkpointed block recomputes against detached copies. x is not released.
func runBlocks(n int, block func(i int, x *tensor.Tensor, ctx []*tensor.Tensor) *tensor.Tensor,
	checkpoint bool, x *tensor.Tensor, ctx ...*tensor.Tensor) (*tensor.Tensor, []int64) {
	saved := make([]int64, n)
	h := x
	for i := range n {
		before := tensor.SavedBytes()
		var next *tensor.Tensor
		if checkpoint {
			next = tensor.Checkpoint(func(in []*tensor.Tensor) *tensor.Tensor { return block(i, in[0], in[1:]) },
				append([]*tensor.Tensor{h}, ctx...)...)
		} else {
			next = block(i, h, ctx)
		}
		saved[i] = tensor.SavedBytes() - before
		if h != x {
			h.Release()
		}
		h = next
	}
	if h == x { // no blocks: hand back a tensor the caller may release
		h = tensor.Scale(x, 1)
	}
	return h, saved
}

// xavierLinear returns a Linear with xavier-uniform weight (bound √(6/(in+out))) and
// zero bias, as DiT's initialize_weights sets every Linear.
func xavierLinear(rng *rand.Rand, in, out int) *nn.Linear {
	return &nn.Linear{Weight: xavierUniform(rng, in, out, out, in), Bias: zeros(out)}
}

// xavierUniform returns a trainable leaf of the given shape drawn uniformly from
// ±√(6/(fanIn+fanOut)).
func xavierUniform(rng *rand.Rand, fanIn, fanOut int, shape ...int) *tensor.Tensor {
	bound := math.Sqrt(6 / float64(fanIn+fanOut))
	if rng == nil {
		return zeros(shape...) // a model about to be loaded
	}
	return random(func() float64 { return (2*rng.Float64() - 1) * bound }, shape)
}

// normal returns a trainable leaf of the given shape drawn from N(0, std²).
func normal(rng *rand.Rand, std float64, shape ...int) *tensor.Tensor {
	if rng == nil {
		return zeros(shape...)
	}
	return random(func() float64 { return rng.NormFloat64() * std }, shape)
}

// zeros returns a trainable leaf of zeros.
func zeros(shape ...int) *tensor.Tensor { return tensor.Zeros(shape...).SetRequiresGrad(true) }

func random(draw func() float64, shape []int) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(draw())
	}
	return tensor.FromFloat32(d, shape...).SetRequiresGrad(true)
}
