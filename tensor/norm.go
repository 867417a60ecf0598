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
	mu = rowSum64(xs) / n
	return mu, 1 / math.Sqrt(rowCentredSq64(xs, mu)/n+float64(eps))
}

// unitF32 and zeroF32 stand in for a missing weight or bias (with increment 0).
var unitF32, zeroF32 = []float32{1}, []float32{0}

// weightOr returns w with increment 1, or def (one value, increment 0) when w is nil.
func weightOr(w, def []float32) ([]float32, int) {
	if w == nil {
		return def, 0
	}
	return w, 1
}

// channelOr returns w[c:] with increment 0 (w[c] for every element), or def.
func channelOr(w []float32, c int, def []float32) []float32 {
	if w == nil {
		return def
	}
	return w[c : c+1]
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
				normRow(out[base+ci*HW:base+ci*HW+HW], xs[ci*HW:ci*HW+HW],
					channelOr(w, c0+ci, unitF32), 0, channelOr(b, c0+ci, zeroF32), 0, mu, r)
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
					s1, s2 := rowGradSums64(dout[off:off+HW], x[off:off+HW], unitF32, 0, mu)
					sa += wc * s1
					sb += wc * s2 * r
				}
				a, bb := sa/float64(max(n, 1)), sb/float64(max(n, 1))
				for ci := 0; ci < Cg; ci++ {
					off := base + ci*HW
					normDxRow(dx[off:off+HW], dout[off:off+HW], x[off:off+HW], channelOr(w, c0+ci, unitF32), 0, mu, r, a, bb)
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
				s1, s2 := rowGradSums64(dout[off:off+HW], x[off:off+HW], unitF32, 0, mu)
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
	wv, wInc := weightOr(w, unitF32)
	bv, bInc := weightOr(b, zeroF32)
	parallelFor(rows, max(1, kernelGrain/max(C, 1)), func(lo, hi int) {
		for row := lo; row < hi; row++ {
			xs := x[row*C : row*C+C]
			mu, r := meanRstd(xs, eps)
			mean[row], rstd[row] = float32(mu), float32(r)
			normRow(out[row*C:row*C+C], xs, wv, wInc, bv, bInc, mu, r)
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
	wv, wInc := weightOr(w, unitF32)
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
					normPartRow(pw, pb, gs, xs, mu, r)
				}
				if dx == nil {
					continue
				}
				s1, s2 := rowGradSums64(gs, xs, wv, wInc, mu)
				a := s1 / float64(C)
				bb := s2 * r / float64(C)
				normDxRow(dx[row*C:row*C+C], gs, xs, wv, wInc, mu, r, a, bb)
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
	wv, wInc := weightOr(w, unitF32)
	parallelFor(rows, max(1, kernelGrain/max(C, 1)), func(lo, hi int) {
		for row := lo; row < hi; row++ {
			xs := x[row*C : row*C+C]
			r := 1 / math.Sqrt(rowCentredSq64(xs, 0)/float64(max(C, 1))+float64(eps))
			rstd[row] = float32(r)
			normRow(out[row*C:row*C+C], xs, wv, wInc, zeroF32, 0, 0, r)
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
	wv, wInc := weightOr(w, unitF32)
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
					normPartRow(pw, nil, gs, xs, 0, r)
				}
				if dx == nil {
					continue
				}
				// dx = r·(d − x·r²·s/C) with s = Σ d·x: normDxRow with mu = a = 0.
				_, s := rowGradSums64(gs, xs, wv, wInc, 0)
				normDxRow(dx[row*C:row*C+C], gs, xs, wv, wInc, 0, r, 0, r*s/float64(C))
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
