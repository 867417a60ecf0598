package nn

import "github.com/difftune/difftune/tensor"

// Upsample2D is diffusers' Upsample2D(use_conv=True) as the UNet and the VAE use it:
// nearest-neighbour doubling of the resolution, then a 3×3 convolution.
type Upsample2D struct {
	Conv *Conv2d
}

// Params returns conv.
func (u *Upsample2D) Params(prefix string) []Param {
	return Children(prefix, Child{Name: "conv", M: u.Conv})
}

// Forward maps [N, C, H, W] to [N, C, 2H, 2W].
func (u *Upsample2D) Forward(x *tensor.Tensor) *tensor.Tensor {
	return Pipe(x, tensor.UpsampleNearest2x, u.Conv.Forward)
}
