package tensor

import (
	"fmt"
	"math"
)

// Normalisation kernels. Statistics are accumulated in float64 (two passes: mean,
// then the centred variance), so they match PyTorch to float32 rounding. Forward
// kernels save mean and rstd = 1/√(var+eps) (biased variance), exactly what the
// backward kernels need. Reductions of dw/db over rows or samples are race-free and
// deterministic: either each channel is owned by one worker (group norm), or each of
// a fixed set of contiguous row slots has its own float64 partial sum and the slots
// are added in slot order (layer and RMS norm).

// normSlots is how many contiguous row slots a dw/db reduction over rows uses: at
// most Threads(), each holding at least minRows rows.
func normSlots(rows, minRows int) int {
	s := min(Threads(), (rows+minRows-1)/minRows)
	return max(s, 1)
}

func checkGroupNorm(kernel string, N, C, HW, G int) {
	if N < 0 || C < 0 || HW < 0 || G <= 0 || C%G != 0 {
		panic(fmt.Sprintf("tensor.%s: C=%d not divisible into G=%d groups (N=%d, HW=%d)", kernel, C, G, N, HW))
	}
}

// meanRstd returns the mean of xs and 1/√(variance + eps), the statistics the
// optimised group and layer norm kernels normalise with: two passes in float64 (the
// references compute them on their own).
func meanRstd(xs []float32, eps float32) (mu, rstd float64) {
	n := float64(max(len(xs), 1))
	var s float64
	for _, v := range xs {
		s += float64(v)
	}
	mu = s / n
	var ss float64
	for _, v := range xs {
		d := float64(v) - mu
		ss += d * d
	}
	return mu, 1 / math.Sqrt(ss/n+float64(eps))
}

// groupNormForward normalises x [N, C, HW] over each of G groups of C/G channels,
// then applies the per-channel affine w, b [C] (either may be nil). It writes
// mean and rstd [N·G].
func groupNormForward(out, mean, rstd, x, w, b []float32, N, C, HW, G int, eps float32) {
	const k = "groupNormForward"
	checkGroupNorm(k, N, C, HW, G)
	kernelCheckLen(k, "x", len(x), N*C*HW)
	kernelCheckLen(k, "out", len(out), N*C*HW)
	kernelCheckLen(k, "mean", len(mean), N*G)
	kernelCheckLen(k, "rstd", len(rstd), N*G)
	kernelCheckOptLen(k, "w", w, C)
	kernelCheckOptLen(k, "b", b, C)
	Cg := C / G
	n := Cg * HW
	parallelFor(N*G, max(1, kernelGrain/max(n, 1)), func(lo, hi int) {
		for ng := lo; ng < hi; ng++ {
			base := ng * n // groups are contiguous: (n·C + g·Cg)·HW = ng·Cg·HW
			xs := x[base : base+n]
			mu, r := meanRstd(xs, eps)
			mean[ng], rstd[ng] = float32(mu), float32(r)
			c0 := (ng % G) * Cg
			for ci := 0; ci < Cg; ci++ {
				sc, sh := r, 0.0
				if w != nil {
					sc *= float64(w[c0+ci])
				}
				if b != nil {
					sh = float64(b[c0+ci])
				}
				xr := xs[ci*HW : ci*HW+HW]
				or := out[base+ci*HW : base+ci*HW+HW]
				for i, v := range xr {
					or[i] = float32((float64(v)-mu)*sc + sh)
				}
			}
		}
	})
}

// groupNormBackward accumulates dx, dw, db (each may be nil) for groupNormForward.
func groupNormBackward(dx, dw, db, dout, x, w, mean, rstd []float32, N, C, HW, G int) {
	const k = "groupNormBackward"
	checkGroupNorm(k, N, C, HW, G)
	kernelCheckLen(k, "x", len(x), N*C*HW)
	kernelCheckLen(k, "dout", len(dout), N*C*HW)
	kernelCheckLen(k, "mean", len(mean), N*G)
	kernelCheckLen(k, "rstd", len(rstd), N*G)
	kernelCheckOptLen(k, "dx", dx, N*C*HW)
	kernelCheckOptLen(k, "w", w, C)
	kernelCheckOptLen(k, "dw", dw, C)
	kernelCheckOptLen(k, "db", db, C)
	Cg := C / G
	n := Cg * HW
	if dx != nil {
		parallelFor(N*G, max(1, kernelGrain/max(n, 1)), func(lo, hi int) {
			for ng := lo; ng < hi; ng++ {
				base := ng * n
				mu, r := float64(mean[ng]), float64(rstd[ng])
				c0 := (ng % G) * Cg
				// a = mean(dx̂), bb = mean(dx̂·x̂) with dx̂ = dout·w.
				var sa, sb float64
				for ci := 0; ci < Cg; ci++ {
					wc := 1.0
					if w != nil {
						wc = float64(w[c0+ci])
					}
					off := base + ci*HW
					var s1, s2 float64
					for i, g := range dout[off : off+HW] {
						gv := float64(g)
						s1 += gv
						s2 += gv * (float64(x[off+i]) - mu)
					}
					sa += wc * s1
					sb += wc * s2 * r
				}
				a, bb := sa/float64(max(n, 1)), sb/float64(max(n, 1))
				for ci := 0; ci < Cg; ci++ {
					wc := 1.0
					if w != nil {
						wc = float64(w[c0+ci])
					}
					off := base + ci*HW
					d := dx[off : off+HW]
					for i, g := range dout[off : off+HW] {
						xh := (float64(x[off+i]) - mu) * r
						d[i] += float32(r * (float64(g)*wc - a - xh*bb))
					}
				}
			}
		})
	}
	if dw == nil && db == nil {
		return
	}
	// Each channel is owned by one worker and sums samples in order: deterministic.
	parallelFor(C, max(1, kernelGrain/max(N*HW, 1)), func(lo, hi int) {
		for c := lo; c < hi; c++ {
			g := c / Cg
			var sw, sb float64
			for s := 0; s < N; s++ {
				mu, r := float64(mean[s*G+g]), float64(rstd[s*G+g])
				off := (s*C + c) * HW
				var s1, s2 float64
				for i, gv := range dout[off : off+HW] {
					s1 += float64(gv)
					s2 += float64(gv) * (float64(x[off+i]) - mu)
				}
				sb += s1
				sw += s2 * r
			}
			if dw != nil {
				dw[c] += float32(sw)
			}
			if db != nil {
				db[c] += float32(sb)
			}
		}
	})
}

// groupNormRef is the plain reference for groupNormForward.
func groupNormRef(out, mean, rstd, x, w, b []float32, N, C, HW, G int, eps float32) {
	Cg := C / G
	for s := 0; s < N; s++ {
		for g := 0; g < G; g++ {
			var sum float64
			cnt := float64(Cg * HW)
			for c := g * Cg; c < (g+1)*Cg; c++ {
				for i := 0; i < HW; i++ {
					sum += float64(x[(s*C+c)*HW+i])
				}
			}
			mu := sum / cnt
			var v float64
			for c := g * Cg; c < (g+1)*Cg; c++ {
				for i := 0; i < HW; i++ {
					d := float64(x[(s*C+c)*HW+i]) - mu
					v += d * d
				}
			}
			r := 1 / math.Sqrt(v/cnt+float64(eps))
			mean[s*G+g], rstd[s*G+g] = float32(mu), float32(r)
			for c := g * Cg; c < (g+1)*Cg; c++ {
				for i := 0; i < HW; i++ {
					y := (float64(x[(s*C+c)*HW+i]) - mu) * r
					if w != nil {
						y *= float64(w[c])
					}
					if b != nil {
						y += float64(b[c])
					}
					out[(s*C+c)*HW+i] = float32(y)
				}
			}
		}
	}
}

// groupNormBackwardRef is the plain reference for groupNormBackward, using the
// textbook formula dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)).
func groupNormBackwardRef(dx, dw, db, dout, x, w, mean, rstd []float32, N, C, HW, G int) {
	Cg := C / G
	for s := 0; s < N; s++ {
		for g := 0; g < G; g++ {
			mu, r := float64(mean[s*G+g]), float64(rstd[s*G+g])
			cnt := float64(Cg * HW)
			xhat := func(c, i int) float64 { return (float64(x[(s*C+c)*HW+i]) - mu) * r }
			dxhat := func(c, i int) float64 {
				d := float64(dout[(s*C+c)*HW+i])
				if w != nil {
					d *= float64(w[c])
				}
				return d
			}
			var m1, m2 float64
			for c := g * Cg; c < (g+1)*Cg; c++ {
				for i := 0; i < HW; i++ {
					m1 += dxhat(c, i)
					m2 += dxhat(c, i) * xhat(c, i)
				}
			}
			m1 /= cnt
			m2 /= cnt
			for c := g * Cg; c < (g+1)*Cg; c++ {
				var sw, sb float64
				for i := 0; i < HW; i++ {
					if dx != nil {
						dx[(s*C+c)*HW+i] += float32(r * (dxhat(c, i) - m1 - xhat(c, i)*m2))
					}
					sw += float64(dout[(s*C+c)*HW+i]) * xhat(c, i)
					sb += float64(dout[(s*C+c)*HW+i])
				}
				if dw != nil {
					dw[c] += float32(sw)
				}
				if db != nil {
					db[c] += float32(sb)
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------------
// Layer norm over the last axis.

// layerNormForward normalises each of rows rows of C values, then applies w, b [C]
// (either may be nil). It writes mean and rstd [rows].
func layerNormForward(out, mean, rstd, x, w, b []float32, rows, C int, eps float32) {
	const k = "layerNormForward"
	kernelCheckLen(k, "x", len(x), rows*C)
	kernelCheckLen(k, "out", len(out), rows*C)
	kernelCheckLen(k, "mean", len(mean), rows)
	kernelCheckLen(k, "rstd", len(rstd), rows)
	kernelCheckOptLen(k, "w", w, C)
	kernelCheckOptLen(k, "b", b, C)
	parallelFor(rows, max(1, kernelGrain/max(C, 1)), func(lo, hi int) {
		for row := lo; row < hi; row++ {
			xs := x[row*C : row*C+C]
			mu, r := meanRstd(xs, eps)
			mean[row], rstd[row] = float32(mu), float32(r)
			ys := out[row*C : row*C+C]
			switch {
			case w != nil && b != nil:
				for i, v := range xs {
					ys[i] = float32((float64(v)-mu)*r*float64(w[i]) + float64(b[i]))
				}
			case w != nil:
				for i, v := range xs {
					ys[i] = float32((float64(v) - mu) * r * float64(w[i]))
				}
			case b != nil:
				for i, v := range xs {
					ys[i] = float32((float64(v)-mu)*r + float64(b[i]))
				}
			default:
				for i, v := range xs {
					ys[i] = float32((float64(v) - mu) * r)
				}
			}
		}
	})
}

// layerNormBackward accumulates dx, dw, db (each may be nil) for layerNormForward.
func layerNormBackward(dx, dw, db, dout, x, w, mean, rstd []float32, rows, C int) {
	const k = "layerNormBackward"
	kernelCheckLen(k, "x", len(x), rows*C)
	kernelCheckLen(k, "dout", len(dout), rows*C)
	kernelCheckLen(k, "mean", len(mean), rows)
	kernelCheckLen(k, "rstd", len(rstd), rows)
	kernelCheckOptLen(k, "dx", dx, rows*C)
	kernelCheckOptLen(k, "w", w, C)
	kernelCheckOptLen(k, "dw", dw, C)
	kernelCheckOptLen(k, "db", db, C)
	if dx == nil && dw == nil && db == nil {
		return
	}
	slots := normSlots(rows, max(1, kernelGrain/max(C, 1)))
	var part []float64 // per slot: dw partial [C] then db partial [C]
	if dw != nil || db != nil {
		part = make([]float64, slots*2*C)
	}
	parallelFor(slots, 1, func(lo, hi int) {
		for sl := lo; sl < hi; sl++ {
			var pw, pb []float64
			if part != nil {
				pw = part[sl*2*C : sl*2*C+C]
				pb = part[sl*2*C+C : sl*2*C+2*C]
			}
			for row := sl * rows / slots; row < (sl+1)*rows/slots; row++ {
				mu, r := float64(mean[row]), float64(rstd[row])
				xs := x[row*C : row*C+C]
				gs := dout[row*C : row*C+C]
				if part != nil {
					for i, g := range gs {
						gv := float64(g)
						pw[i] += gv * (float64(xs[i]) - mu) * r
						pb[i] += gv
					}
				}
				if dx == nil {
					continue
				}
				var s1, s2 float64
				for i, g := range gs {
					d := float64(g)
					if w != nil {
						d *= float64(w[i])
					}
					s1 += d
					s2 += d * (float64(xs[i]) - mu)
				}
				a := s1 / float64(C)
				bb := s2 * r / float64(C)
				ds := dx[row*C : row*C+C]
				for i, g := range gs {
					d := float64(g)
					if w != nil {
						d *= float64(w[i])
					}
					ds[i] += float32(r * (d - a - (float64(xs[i])-mu)*r*bb))
				}
			}
		}
	})
	if part == nil {
		return
	}
	parallelFor(C, 256, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var sw, sb float64
			for sl := 0; sl < slots; sl++ { // fixed slot order: deterministic
				sw += part[sl*2*C+i]
				sb += part[sl*2*C+C+i]
			}
			if dw != nil {
				dw[i] += float32(sw)
			}
			if db != nil {
				db[i] += float32(sb)
			}
		}
	})
}

// layerNormRef is the plain reference for layerNormForward.
func layerNormRef(out, mean, rstd, x, w, b []float32, rows, C int, eps float32) {
	for row := 0; row < rows; row++ {
		var sum float64
		for i := 0; i < C; i++ {
			sum += float64(x[row*C+i])
		}
		mu := sum / float64(C)
		var v float64
		for i := 0; i < C; i++ {
			d := float64(x[row*C+i]) - mu
			v += d * d
		}
		r := 1 / math.Sqrt(v/float64(C)+float64(eps))
		mean[row], rstd[row] = float32(mu), float32(r)
		for i := 0; i < C; i++ {
			y := (float64(x[row*C+i]) - mu) * r
			if w != nil {
				y *= float64(w[i])
			}
			if b != nil {
				y += float64(b[i])
			}
			out[row*C+i] = float32(y)
		}
	}
}

// layerNormBackwardRef is the plain reference for layerNormBackward.
func layerNormBackwardRef(dx, dw, db, dout, x, w, mean, rstd []float32, rows, C int) {
	sw := make([]float64, C)
	sb := make([]float64, C)
	for row := 0; row < rows; row++ {
		mu, r := float64(mean[row]), float64(rstd[row])
		var m1, m2 float64
		for i := 0; i < C; i++ {
			d := float64(dout[row*C+i])
			if w != nil {
				d *= float64(w[i])
			}
			xh := (float64(x[row*C+i]) - mu) * r
			m1 += d
			m2 += d * xh
		}
		m1 /= float64(C)
		m2 /= float64(C)
		for i := 0; i < C; i++ {
			g := float64(dout[row*C+i])
			d := g
			if w != nil {
				d *= float64(w[i])
			}
			xh := (float64(x[row*C+i]) - mu) * r
			if dx != nil {
				dx[row*C+i] += float32(r * (d - m1 - xh*m2))
			}
			sw[i] += g * xh
			sb[i] += g
		}
	}
	for i := 0; i < C; i++ {
		if dw != nil {
			dw[i] += float32(sw[i])
		}
		if db != nil {
			db[i] += float32(sb[i])
		}
	}
}

// ---------------------------------------------------------------------------------
// RMS norm over the last axis.

// rmsNormForward writes out = x·rstd·w with rstd = 1/√(mean(x²)+eps) per row; w [C]
// may be nil. It writes rstd [rows].
func rmsNormForward(out, rstd, x, w []float32, rows, C int, eps float32) {
	const k = "rmsNormForward"
	kernelCheckLen(k, "x", len(x), rows*C)
	kernelCheckLen(k, "out", len(out), rows*C)
	kernelCheckLen(k, "rstd", len(rstd), rows)
	kernelCheckOptLen(k, "w", w, C)
	parallelFor(rows, max(1, kernelGrain/max(C, 1)), func(lo, hi int) {
		for row := lo; row < hi; row++ {
			xs := x[row*C : row*C+C]
			var ss float64
			for _, v := range xs {
				ss += float64(v) * float64(v)
			}
			r := 1 / math.Sqrt(ss/float64(max(C, 1))+float64(eps))
			rstd[row] = float32(r)
			ys := out[row*C : row*C+C]
			if w != nil {
				for i, v := range xs {
					ys[i] = float32(float64(v) * r * float64(w[i]))
				}
			} else {
				for i, v := range xs {
					ys[i] = float32(float64(v) * r)
				}
			}
		}
	})
}

// rmsNormBackward accumulates dx and dw (each may be nil) for rmsNormForward:
// dx = rstd·(dout·w − x·rstd²·mean(dout·w·x)), dw = Σ_rows dout·x·rstd.
func rmsNormBackward(dx, dw, dout, x, w, rstd []float32, rows, C int) {
	const k = "rmsNormBackward"
	kernelCheckLen(k, "x", len(x), rows*C)
	kernelCheckLen(k, "dout", len(dout), rows*C)
	kernelCheckLen(k, "rstd", len(rstd), rows)
	kernelCheckOptLen(k, "dx", dx, rows*C)
	kernelCheckOptLen(k, "w", w, C)
	kernelCheckOptLen(k, "dw", dw, C)
	if dx == nil && dw == nil {
		return
	}
	slots := normSlots(rows, max(1, kernelGrain/max(C, 1)))
	var part []float64
	if dw != nil {
		part = make([]float64, slots*C)
	}
	parallelFor(slots, 1, func(lo, hi int) {
		for sl := lo; sl < hi; sl++ {
			var pw []float64
			if part != nil {
				pw = part[sl*C : sl*C+C]
			}
			for row := sl * rows / slots; row < (sl+1)*rows/slots; row++ {
				r := float64(rstd[row])
				xs := x[row*C : row*C+C]
				gs := dout[row*C : row*C+C]
				if pw != nil {
					for i, g := range gs {
						pw[i] += float64(g) * float64(xs[i]) * r
					}
				}
				if dx == nil {
					continue
				}
				var s float64
				for i, g := range gs {
					d := float64(g)
					if w != nil {
						d *= float64(w[i])
					}
					s += d * float64(xs[i])
				}
				c := r * r * s / float64(C)
				ds := dx[row*C : row*C+C]
				for i, g := range gs {
					d := float64(g)
					if w != nil {
						d *= float64(w[i])
					}
					ds[i] += float32(r * (d - float64(xs[i])*c))
				}
			}
		}
	})
	if part == nil {
		return
	}
	parallelFor(C, 256, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var sw float64
			for sl := 0; sl < slots; sl++ {
				sw += part[sl*C+i]
			}
			dw[i] += float32(sw)
		}
	})
}

// rmsNormRef is the plain reference for rmsNormForward.
func rmsNormRef(out, rstd, x, w []float32, rows, C int, eps float32) {
	for row := 0; row < rows; row++ {
		var ss float64
		for i := 0; i < C; i++ {
			v := float64(x[row*C+i])
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(C)+float64(eps))
		rstd[row] = float32(r)
		for i := 0; i < C; i++ {
			y := float64(x[row*C+i]) * r
			if w != nil {
				y *= float64(w[i])
			}
			out[row*C+i] = float32(y)
		}
	}
}

// rmsNormBackwardRef is the plain reference for rmsNormBackward via the Jacobian
// ∂y_i/∂x_j = w_i·(r·δ_ij − r³·x_i·x_j/C).
func rmsNormBackwardRef(dx, dw, dout, x, w, rstd []float32, rows, C int) {
	sw := make([]float64, C)
	for row := 0; row < rows; row++ {
		r := float64(rstd[row])
		for j := 0; j < C; j++ {
			if dx != nil {
				var s float64
				for i := 0; i < C; i++ {
					wi := 1.0
					if w != nil {
						wi = float64(w[i])
					}
					jac := -r * r * r * float64(x[row*C+i]) * float64(x[row*C+j]) / float64(C)
					if i == j {
						jac += r
					}
					s += float64(dout[row*C+i]) * wi * jac
				}
				dx[row*C+j] += float32(s)
			}
			sw[j] += float64(dout[row*C+j]) * float64(x[row*C+j]) * r
		}
	}
	if dw != nil {
		for j := range sw {
			dw[j] += float32(sw[j])
		}
	}
}
