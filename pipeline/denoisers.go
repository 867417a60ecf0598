package pipeline

import (
	"github.com/difftune/difftune/dit"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
	"github.com/difftune/difftune/unet"
)

// unetDenoiser conditions a UNet on the text hidden states (cross-attention).
type unetDenoiser struct{ *unet.UNet2DConditionModel }

func (d *unetDenoiser) Predict(x *tensor.Tensor, t []float32, c Cond) (*tensor.Tensor, error) {
	return d.Forward(x, t, c.Hidden), nil
}

// ditDenoiser conditions a class-conditional DiT on a pooled text embedding projected
// into its class-embedding space (TextProj, "text_proj").
type ditDenoiser struct {
	*dit.DiT
	TextProj *nn.Linear
}

func (d *ditDenoiser) Params(prefix string) []nn.Param {
	return append(d.DiT.Params(prefix), d.TextProj.Params(prefix+"text_proj.")...)
}

func (d *ditDenoiser) Release() {
	d.DiT.Release()
	nn.ReleaseParams(d.TextProj)
}

func (d *ditDenoiser) Predict(x *tensor.Tensor, t []float32, c Cond) (*tensor.Tensor, error) {
	y := d.TextProj.Forward(c.Pooled) // [N, D]
	defer y.Release()
	return d.ForwardEmbedded(x, t, y)
}

// pixartDenoiser conditions PixArt on the text hidden states as its caption features.
type pixartDenoiser struct{ *dit.PixArt }

func (d *pixartDenoiser) Predict(x *tensor.Tensor, t []float32, c Cond) (*tensor.Tensor, error) {
	mask := c.Mask
	if mask == nil {
		mask = make([]int, c.Hidden.Dim(0)*c.Hidden.Dim(1))
		for i := range mask {
			mask[i] = 1 // CLIP pads with its end token, which the model may attend to
		}
	}
	if d.Config.PooledProjectionDim > 0 {
		return d.ForwardPooled(x, t, c.Hidden, mask, c.Pooled, nil)
	}
	return d.Forward(x, t, c.Hidden, mask, nil)
}
