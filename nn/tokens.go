package nn

import "github.com/difftune/difftune/tensor"

// Tokens turns an image [N, C, H, W] into tokens [N, H·W, C], row-major over the
// positions, for attention over an image (the UNet's transformers, the VAE's mid
// block). It panics unless x has rank 4.
func Tokens(x *tensor.Tensor) *tensor.Tensor {
	n, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	p := tensor.Permute(x, 0, 2, 3, 1) //           [N, H, W, C]
	defer p.Release()
	return tensor.Reshape(p, n, h*w, c) //           [N, H·W, C]
}

// Image returns the inverse of Tokens for an h×w image: [N, h·w, C] to [N, C, h, w],
// as a step for Pipe.
func Image(h, w int) func(*tensor.Tensor) *tensor.Tensor {
	return func(x *tensor.Tensor) *tensor.Tensor {
		r := tensor.Reshape(x, x.Dim(0), h, w, x.Dim(2)) // [N, H, W, C]
		defer r.Release()
		return tensor.Permute(r, 0, 3, 1, 2) //             [N, C, H, W]
	}
}
