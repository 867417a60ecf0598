package tensor

import "fmt"

// Pad2d zero-pads the last two axes of x [N, C, H, W] by left and right columns and
// top and bottom rows, giving [N, C, top+H+bottom, left+W+right]. diffusers'
// Downsample2D with padding=0 pads (0, 1, 0, 1) before its stride-2 convolution.
// It saves nothing. It panics on a negative pad or an input that is not 4-D.
func Pad2d(x *Tensor, left, right, top, bottom int) *Tensor {
	if x.Rank() != 4 || left < 0 || right < 0 || top < 0 || bottom < 0 {
		panic(fmt.Sprintf("tensor.Pad2d: input %v, pads (left %d, right %d, top %d, bottom %d)", x.shape, left, right, top, bottom))
	}
	p := padParams{NC: x.shape[0] * x.shape[1], H: x.shape[2], W: x.shape[3], Left: left, Right: right, Top: top, Bottom: bottom}
	out := newTensor(true, x.shape[0], x.shape[1], p.OH(), p.OW())
	pad2dForward(out.Data(), mustF32("Pad2d", x), p)
	if needsGrad(x) {
		record(out, "Pad2d", []*Tensor{x}, nil, func(dout []float32, dx gradFn) {
			pad2dBackward(dx(0), dout, p)
		})
	}
	return out
}

// padParams describes a 2-D zero pad of NC planes of H×W.
type padParams struct{ NC, H, W, Left, Right, Top, Bottom int }

func (p padParams) OH() int { return p.Top + p.H + p.Bottom }
func (p padParams) OW() int { return p.Left + p.W + p.Right }

// pad2dForward copies each row of x into out, whose border must already be zero.
func pad2dForward(out, x []float32, p padParams) {
	kernelCheckLen("pad2dForward", "x", len(x), p.NC*p.H*p.W)
	kernelCheckLen("pad2dForward", "out", len(out), p.NC*p.OH()*p.OW())
	parallelFor(p.NC*p.H, max(1, kernelGrain/max(p.W, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ { // r = c·H + h
			c, h := r/p.H, r%p.H
			o := (c*p.OH()+p.Top+h)*p.OW() + p.Left
			copy(out[o:o+p.W], x[r*p.W:r*p.W+p.W])
		}
	})
}

// pad2dBackward accumulates the interior of dout into dx; the border had no input.
func pad2dBackward(dx, dout []float32, p padParams) {
	if dx == nil {
		return
	}
	kernelCheckLen("pad2dBackward", "dx", len(dx), p.NC*p.H*p.W)
	kernelCheckLen("pad2dBackward", "dout", len(dout), p.NC*p.OH()*p.OW())
	parallelFor(p.NC*p.H, max(1, kernelGrain/max(p.W, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			c, h := r/p.H, r%p.H
			o := (c*p.OH()+p.Top+h)*p.OW() + p.Left
			add(dx[r*p.W:r*p.W+p.W], dout[o:o+p.W])
		}
	})
}
