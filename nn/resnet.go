package nn

import (
	"fmt"

	"github.com/difftune/difftune/tensor"
)

// ResnetBlock2D is diffusers' ResnetBlock2D with the default time-embedding norm:
//
//	h   = conv1(SiLU(norm1(x)))
//	h   = h + time_emb_proj(SiLU(temb))     (only with a time embedding)
//	out = (shortcut(x) + conv2(SiLU(norm2(h)))) / output_scale_factor
//
// The UNet's resnets have a TimeEmbProj; the VAE's (temb_channels=None) do not.
type ResnetBlock2D struct {
	Norm1        *GroupNorm
	Conv1        *Conv2d
	TimeEmbProj  *Linear // nil without a time embedding
	Norm2        *GroupNorm
	Conv2        *Conv2d
	ConvShortcut *Conv2d // 1×1, only when the channel count changes
	// OutputScaleFactor divides the output (1 for Stable Diffusion).
	OutputScaleFactor float64
}

// Params returns norm1, conv1, time_emb_proj, norm2, conv2 and conv_shortcut.
func (r *ResnetBlock2D) Params(prefix string) []Param {
	return Children(prefix, Child{"norm1", r.Norm1}, Child{"conv1", r.Conv1},
		Child{"time_emb_proj", r.TimeEmbProj}, Child{"norm2", r.Norm2},
		Child{"conv2", r.Conv2}, Child{"conv_shortcut", r.ConvShortcut})
}

// Forward maps x [N, Cin, H, W] and the time embedding temb [N, T] to [N, Cout, H, W].
// temb must be nil exactly when the block has no TimeEmbProj; it panics otherwise.
func (r *ResnetBlock2D) Forward(x, temb *tensor.Tensor) *tensor.Tensor {
	if (temb == nil) != (r.TimeEmbProj == nil) {
		panic(fmt.Sprintf("nn.ResnetBlock2D: time embedding given: %t, block has time_emb_proj: %t", temb != nil, r.TimeEmbProj != nil))
	}
	h := Pipe(x, r.Norm1.Forward, tensor.SiLU, r.Conv1.Forward) // [N, Cout, H, W]
	if temb != nil {
		e := Pipe(temb, tensor.SiLU, r.TimeEmbProj.Forward) // [N, Cout]
		e4 := tensor.Reshape(e, e.Dim(0), e.Dim(1), 1, 1)   // [N, Cout, 1, 1]
		he := tensor.Add(h, e4)
		tensor.Release(h, e, e4)
		h = he
	}
	h2 := Pipe(h, r.Norm2.Forward, tensor.SiLU, r.Conv2.Forward) // [N, Cout, H, W]
	h.Release()
	defer h2.Release()
	skip := x
	if r.ConvShortcut != nil {
		skip = r.ConvShortcut.Forward(x)
		defer skip.Release()
	}
	if r.OutputScaleFactor == 1 {
		return tensor.Add(skip, h2)
	}
	sum := tensor.Add(skip, h2)
	defer sum.Release()
	return tensor.Scale(sum, float32(1/r.OutputScaleFactor))
}

// Pipe applies fs to x in turn, releasing each intermediate result as soon as the
// next exists; x itself stays the caller's. Blocks use it to write a forward pass as
// the figure reads: Pipe(x, norm.Forward, tensor.SiLU, conv.Forward).
func Pipe(x *tensor.Tensor, fs ...func(*tensor.Tensor) *tensor.Tensor) *tensor.Tensor {
	h := x
	for _, f := range fs {
		next := f(h)
		if h != x {
			h.Release()
		}
		h = next
	}
	return h
}
