package tensor

// upsampleNearest2xForward writes out [NC, 2H, 2W] with out[c, 2h+a, 2w+b] = x[c, h, w].
func upsampleNearest2xForward(out, x []float32, NC, H, W int) {
	kernelCheckLen("upsampleNearest2xForward", "x", len(x), NC*H*W)
	kernelCheckLen("upsampleNearest2xForward", "out", len(out), NC*4*H*W)
	W2 := 2 * W
	parallelFor(NC*H, max(1, kernelGrain/max(4*W, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ { // r = c·H + h; output rows 2r and 2r+1
			xr := x[r*W : r*W+W]
			o0 := out[2*r*W2 : 2*r*W2+W2]
			for w, v := range xr {
				o0[2*w] = v
				o0[2*w+1] = v
			}
			copy(out[(2*r+1)*W2:(2*r+1)*W2+W2], o0)
		}
	})
}

// upsampleNearest2xBackward accumulates dx[c, h, w] += Σ of the four dout cells it fed.
func upsampleNearest2xBackward(dx, dout []float32, NC, H, W int) {
	if dx == nil {
		return
	}
	kernelCheckLen("upsampleNearest2xBackward", "dx", len(dx), NC*H*W)
	kernelCheckLen("upsampleNearest2xBackward", "dout", len(dout), NC*4*H*W)
	W2 := 2 * W
	parallelFor(NC*H, max(1, kernelGrain/max(4*W, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			d := dx[r*W : r*W+W]
			g0 := dout[2*r*W2 : 2*r*W2+W2]
			g1 := dout[(2*r+1)*W2 : (2*r+1)*W2+W2]
			for w := range d {
				d[w] += (g0[2*w] + g0[2*w+1]) + (g1[2*w] + g1[2*w+1])
			}
		}
	})
}

// upsampleNearest2xRef is the plain reference for upsampleNearest2xForward.
func upsampleNearest2xRef(out, x []float32, NC, H, W int) {
	for c := 0; c < NC; c++ {
		for oh := 0; oh < 2*H; oh++ {
			for ow := 0; ow < 2*W; ow++ {
				out[(c*2*H+oh)*2*W+ow] = x[(c*H+oh/2)*W+ow/2]
			}
		}
	}
}

// upsampleNearest2xBackwardRef is the plain reference for upsampleNearest2xBackward.
func upsampleNearest2xBackwardRef(dx, dout []float32, NC, H, W int) {
	if dx == nil {
		return
	}
	for c := 0; c < NC; c++ {
		for h := 0; h < H; h++ {
			for w := 0; w < W; w++ {
				var s float64
				for a := 0; a < 2; a++ {
					for b := 0; b < 2; b++ {
						s += float64(dout[(c*2*H+2*h+a)*2*W+2*w+b])
					}
				}
				dx[(c*H+h)*W+w] += float32(s)
			}
		}
	}
}
