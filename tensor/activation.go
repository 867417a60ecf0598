package tensor

import (
	"fmt"
	"math"
	"sync"
)

// This file holds the elementwise activations and the row softmax, plus the small
// helpers shared by all the CPU kernels (length checks, per-worker scratch, a fast
// float32 exp).

// kernelCheckLen panics when a buffer's length differs from what the kernel needs.
func kernelCheckLen(kernel, name string, got, want int) {
	if got != want {
		panic(fmt.Sprintf("tensor.%s: len(%s) = %d, want %d", kernel, name, got, want))
	}
}

// kernelCheckOptLen is kernelCheckLen for an optional (nil-able) buffer.
func kernelCheckOptLen(kernel, name string, s []float32, want int) {
	if s != nil {
		kernelCheckLen(kernel, name, len(s), want)
	}
}

// kernelScratchPool recycles float32 scratch buffers between kernel calls; each
// worker takes one buffer per parallel chunk, so nothing is allocated per element.
var kernelScratchPool sync.Pool

// kernelGetScratch returns a scratch buffer of length n (contents undefined).
func kernelGetScratch(n int) *[]float32 {
	p, _ := kernelScratchPool.Get().(*[]float32)
	if p == nil || cap(*p) < n {
		s := make([]float32, n)
		p = &s
	}
	*p = (*p)[:n]
	return p
}

// kernelPutScratch hands a buffer from kernelGetScratch back to the pool.
func kernelPutScratch(p *[]float32) { kernelScratchPool.Put(p) }

// kernelExpf is exp for float32 arguments, accurate to about 1 ulp; see kernelExpShift.
func kernelExpf(x float32) float32 {
	s := [1]float32{x}
	kernelExpShift(s[:], 0)
	return s[0]
}

// kernelExpShiftGo is the pure-Go kernelExpShift: it overwrites s[i] with
// exp(s[i] − m) and returns the float32 sum of the results. The exp is Cephes expf (about 1 ulp): Cody–Waite reduction by ln 2,
// then a degree-7 polynomial on |r| <= ln2/2, several times faster than float64
// math.Exp. exp(−Inf) = 0, results below the smallest normal float32 flush to 0,
// overflow gives +Inf, NaN propagates.
func kernelExpShiftGo(s []float32, m float32) float32 {
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
		round = 12582912 // 1.5·2²³: adding and subtracting it rounds to an integer
	)
	var sum float32
	for i, v := range s {
		x := v - m
		if !(x > -87.33654) { // also catches −Inf and NaN
			if x != x {
				s[i] = x
				sum += x
			} else {
				s[i] = 0
			}
			continue
		}
		if x > 88.72283 {
			s[i] = float32(math.Inf(1))
			sum = s[i]
			continue
		}
		// fn = round(x·log2 e) in [-126, 128], so 2^fn is a normal float32 (or 2^128,
		// handled as 2·2^127).
		fn := (x*log2e + round) - round
		r := x - fn*c1
		r -= fn * c2
		z := r * r
		p := ((((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+
			1.6666665459e-1)*r+5.0000001201e-1)*z + r) + 1
		n := int32(fn)
		if n > 127 {
			p *= 2
			n--
		}
		e := p * math.Float32frombits(uint32(n+127)<<23)
		s[i] = e
		sum += e
	}
	return sum
}

// kernelGrain is the smallest chunk worth a goroutine for cheap elementwise work.
const kernelGrain = 1 << 13

// ---------------------------------------------------------------------------------
// Softmax over the last axis.

// softmaxForward writes out[r,:] = softmax(x[r,:]) for rows × C, max-subtracted.
// A row whose entries are all -Inf gives zeros.
func softmaxForward(out, x []float32, rows, C int) {
	kernelCheckLen("softmaxForward", "x", len(x), rows*C)
	kernelCheckLen("softmaxForward", "out", len(out), rows*C)
	parallelFor(rows, max(1, kernelGrain/max(C, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := x[r*C : r*C+C]
			or := out[r*C : r*C+C]
			m := float32(math.Inf(-1))
			for _, v := range xr {
				if v > m {
					m = v
				}
			}
			if math.IsInf(float64(m), -1) {
				clear(or)
				continue
			}
			copy(or, xr)
			inv := 1 / kernelExpShift(or, m)
			for i := range or {
				or[i] *= inv
			}
		}
	})
}

// softmaxBackward accumulates dx += out ∘ (dout − rowsum(dout ∘ out)).
func softmaxBackward(dx, dout, out []float32, rows, C int) {
	if dx == nil {
		return
	}
	kernelCheckLen("softmaxBackward", "dx", len(dx), rows*C)
	kernelCheckLen("softmaxBackward", "dout", len(dout), rows*C)
	kernelCheckLen("softmaxBackward", "out", len(out), rows*C)
	parallelFor(rows, max(1, kernelGrain/max(C, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			g := dout[r*C : r*C+C]
			y := out[r*C : r*C+C]
			d := dx[r*C : r*C+C]
			var s float64
			for i, v := range y {
				s += float64(v) * float64(g[i])
			}
			sf := float32(s)
			for i, v := range y {
				d[i] += v * (g[i] - sf)
			}
		}
	})
}

// softmaxRef is the plain float64 reference for softmaxForward.
func softmaxRef(out, x []float32, rows, C int) {
	for r := 0; r < rows; r++ {
		m := math.Inf(-1)
		for i := 0; i < C; i++ {
			m = math.Max(m, float64(x[r*C+i]))
		}
		if math.IsInf(m, -1) {
			clear(out[r*C : r*C+C])
			continue
		}
		var s float64
		for i := 0; i < C; i++ {
			s += math.Exp(float64(x[r*C+i]) - m)
		}
		for i := 0; i < C; i++ {
			out[r*C+i] = float32(math.Exp(float64(x[r*C+i])-m) / s)
		}
	}
}

// softmaxBackwardRef is the plain reference for softmaxBackward via the Jacobian
// dx_i += Σ_j dout_j·y_j·(δ_ij − y_i).
func softmaxBackwardRef(dx, dout, out []float32, rows, C int) {
	if dx == nil {
		return
	}
	for r := 0; r < rows; r++ {
		for i := 0; i < C; i++ {
			yi := float64(out[r*C+i])
			var s float64
			for j := 0; j < C; j++ {
				yj := float64(out[r*C+j])
				d := 0.0
				if i == j {
					d = 1
				}
				s += float64(dout[r*C+j]) * yj * (d - yi)
			}
			dx[r*C+i] += float32(s)
		}
	}
}

// ---------------------------------------------------------------------------------
// GELU.

const (
	geluSqrt2       = 1.41421356237309504880168872420969808
	geluInvSqrt2Pi  = 0.398942280401432677939946059934381868 // 1/√(2π)
	geluSqrt2OverPi = 0.797884560802865355879892119868763737 // √(2/π)
	geluTanhCubic   = 0.044715
)

// actBlock is how many elements the activation kernels hand to kernelExpShift at a
// time: the exponentials of a block go through a stack buffer, so the exp polynomial
// runs as one tight loop instead of a call per element.
const actBlock = 256

// Erf GELU: Φ(x) = 1 − ½·erfc(x/√2) for x ≥ 0 and ½·erfc(|x|/√2) below, with erfc from
// Abramowitz & Stegun 7.1.26, erfc(z) ≈ t·P(t)·e^(−z²), t = 1/(1 + p·z), whose absolute
// error is at most 1.5e-7. Computing the negative tail as ½·erfc avoids 1 + erf's
// cancellation.
const (
	geluErfP  = 0.3275911
	geluErfA1 = 0.254829592
	geluErfA2 = -0.284496736
	geluErfA3 = 1.421413741
	geluErfA4 = -1.453152027
	geluErfA5 = 1.061405429
)

// geluForward writes out = GELU(x): exact 0.5x(1+erf(x/√2)), or PyTorch's
// approximate='tanh' form 0.5x(1+tanh(√(2/π)(x+0.044715x³))), in float32.
//
// The tanh form is computed as x·σ(2u) = x/(1+e^(−2u)), u = √(2/π)(x+0.044715x³),
// one exp and one division; the erf form as x·Φ(x) above. Error against the float64
// reference geluRef, |got − want| <= bound·max(1, |x|) (TestActivationAccuracy; about
// 1.5× the worst seen, i.e. 2–3 float32 ulps at |x| ≈ 1): 2e-7 for tanh, 3e-7 for erf
// (the A&S error, 1.5e-7 in erf, is halved in Φ).
func geluForward(out, x []float32, approxTanh bool) {
	kernelCheckLen("geluForward", "out", len(out), len(x))
	parallelFor(len(x), kernelGrain, func(lo, hi int) {
		if approxTanh && geluUseFast {
			lo += geluTanhFast(out[lo:hi], x[lo:hi])
		}
		var e [actBlock]float32
		for b := lo; b < hi; b += actBlock {
			xs := x[b:min(b+actBlock, hi)]
			ys, es := out[b:b+len(xs)], e[:len(xs)]
			if approxTanh {
				for i, v := range xs {
					es[i] = -2 * geluSqrt2OverPi * (v + geluTanhCubic*v*v*v)
				}
				kernelExpShift(es, 0)
				for i, v := range xs {
					ys[i] = v / (1 + es[i]) // e = +Inf (x ≪ 0) gives −0, as the reference
				}
				continue
			}
			for i, v := range xs {
				es[i] = -0.5 * v * v
			}
			kernelExpShift(es, 0)
			for i, v := range xs {
				ys[i] = v * geluErfPhi(v, es[i])
			}
		}
	})
}

// geluUseFast lets the tanh GELU kernels hand whole groups of 16 to the AVX-512
// kernels (gelu_amd64.s) where the CPU has them; tests turn it off to compare.
var geluUseFast = true

// geluClamp clamps x to [−10, 10], leaving NaN as it is (cheaper than the builtin
// min and max, which order NaN and signed zeros).
func geluClamp(x float32) float32 {
	if x < -10 {
		return -10
	}
	if x > 10 {
		return 10
	}
	return x
}

// geluErfPhi returns Φ(x) given e = exp(−x²/2).
func geluErfPhi(x, e float32) float32 {
	z := x * (1 / geluSqrt2)
	if z < 0 {
		z = -z
	}
	t := 1 / (1 + geluErfP*z)
	h := 0.5 * t * ((((geluErfA5*t+geluErfA4)*t+geluErfA3)*t+geluErfA2)*t + geluErfA1) * e // ½·erfc(|z|)
	if x < 0 {
		return h
	}
	return 1 - h
}

// geluBackward accumulates dx += dout·GELU'(x).
//
// Tanh form: with e = e^(−2u) and s = 1/(1+e) = σ(2u), GELU' = s + 2x·e·s²·du/dx,
// du/dx = √(2/π)(1+3·0.044715x²); x is clamped to [−10, 10] first, where GELU' is
// 0 or 1 to far below float32 resolution of the result, so that e·s² and x² stay
// finite. Erf form: GELU' = Φ(x) + x·φ(x). Error against geluBackwardRef, per unit
// |dout|: within 3e-7·max(1, |x|) for tanh, 3.6e-7·max(1, |x|) for erf.
func geluBackward(dx, dout, x []float32, approxTanh bool) {
	if dx == nil {
		return
	}
	kernelCheckLen("geluBackward", "dx", len(dx), len(x))
	kernelCheckLen("geluBackward", "dout", len(dout), len(x))
	parallelFor(len(x), kernelGrain, func(lo, hi int) {
		if approxTanh && geluUseFast {
			lo += geluTanhBackwardFast(dx[lo:hi], dout[lo:hi], x[lo:hi])
		}
		var e [actBlock]float32
		for b := lo; b < hi; b += actBlock {
			xs := x[b:min(b+actBlock, hi)]
			gs, ds, es := dout[b:b+len(xs)], dx[b:b+len(xs)], e[:len(xs)]
			if approxTanh {
				for i, v := range xs {
					v = geluClamp(v)
					es[i] = -2 * geluSqrt2OverPi * (v + geluTanhCubic*v*v*v)
				}
				kernelExpShift(es, 0)
				for i, v := range xs {
					v = geluClamp(v)
					s := 1 / (1 + es[i])
					es := es[i] * s * s // e·s² = σ(2u)(1−σ(2u)) ≤ ¼: formed first, so nothing overflows
					du := geluSqrt2OverPi * (1 + 3*geluTanhCubic*v*v)
					ds[i] += gs[i] * (s + 2*v*du*es)
				}
				continue
			}
			for i, v := range xs {
				es[i] = -0.5 * v * v
			}
			kernelExpShift(es, 0)
			for i, v := range xs {
				ds[i] += gs[i] * (geluErfPhi(v, es[i]) + v*geluInvSqrt2Pi*es[i])
			}
		}
	})
}

// geluRef is the serial reference for geluForward.
func geluRef(out, x []float32, approxTanh bool) {
	for i, v := range x {
		xv := float64(v)
		if approxTanh {
			inner := math.Sqrt(2/math.Pi) * (xv + 0.044715*math.Pow(xv, 3))
			out[i] = float32(0.5 * xv * (1 + math.Tanh(inner)))
		} else {
			cdf := 0.5 * (1 + math.Erf(xv/math.Sqrt2))
			out[i] = float32(xv * cdf)
		}
	}
}

// geluBackwardRef is the serial reference for geluBackward.
func geluBackwardRef(dx, dout, x []float32, approxTanh bool) {
	if dx == nil {
		return
	}
	for i, v := range x {
		xv := float64(v)
		var d float64
		if approxTanh {
			c := math.Sqrt(2 / math.Pi)
			u := c * (xv + 0.044715*math.Pow(xv, 3))
			du := c * (1 + 3*0.044715*xv*xv)
			sech2 := 1 / (math.Cosh(u) * math.Cosh(u))
			d = 0.5*(1+math.Tanh(u)) + 0.5*xv*sech2*du
		} else {
			pdf := math.Exp(-xv*xv/2) / math.Sqrt(2*math.Pi)
			d = 0.5*(1+math.Erf(xv/math.Sqrt2)) + xv*pdf
		}
		dx[i] += float32(float64(dout[i]) * d)
	}
}

// ---------------------------------------------------------------------------------
// SiLU.

// siluForward writes out = x·σ(x) = x/(1+e^(−x)), within 2.5e-7·max(1, |x|) of siluRef.
func siluForward(out, x []float32) {
	kernelCheckLen("siluForward", "out", len(out), len(x))
	parallelFor(len(x), kernelGrain, func(lo, hi int) {
		if siluUseFast {
			lo += siluFast(out[lo:hi], x[lo:hi])
		}
		var e [actBlock]float32
		for b := lo; b < hi; b += actBlock {
			xs := x[b:min(b+actBlock, hi)]
			ys, es := out[b:b+len(xs)], e[:len(xs)]
			for i, v := range xs {
				es[i] = -v
			}
			kernelExpShift(es, 0)
			for i, v := range xs {
				ys[i] = v * (1 / (1 + es[i]))
			}
		}
	})
}

// siluBackward accumulates dx += dout·σ(x)(1 + x(1 − σ(x))), within 2e-7·max(1, |x|)·|dout|
// of siluBackwardRef.
func siluBackward(dx, dout, x []float32) {
	if dx == nil {
		return
	}
	kernelCheckLen("siluBackward", "dx", len(dx), len(x))
	kernelCheckLen("siluBackward", "dout", len(dout), len(x))
	parallelFor(len(x), kernelGrain, func(lo, hi int) {
		if siluUseFast {
			lo += siluBackwardFast(dx[lo:hi], dout[lo:hi], x[lo:hi])
		}
		var e [actBlock]float32
		for b := lo; b < hi; b += actBlock {
			xs := x[b:min(b+actBlock, hi)]
			gs, ds, es := dout[b:b+len(xs)], dx[b:b+len(xs)], e[:len(xs)]
			for i, v := range xs {
				es[i] = -v
			}
			kernelExpShift(es, 0)
			for i, v := range xs {
				s := 1 / (1 + es[i]) // e = +Inf gives s = 0 and a zero derivative
				ds[i] += gs[i] * s * (1 + v*(1-s))
			}
		}
	})
}

// siluUseFast lets the SiLU kernels hand whole groups of 16 to the AVX-512 kernels
// (silu_amd64.s) where the CPU has them; tests turn it off to compare.
var siluUseFast = true

// siluRef is the float64 reference for siluForward.
func siluRef(out, x []float32) {
	for i, v := range x {
		xv := float64(v)
		out[i] = float32(xv / (1 + math.Exp(-xv)))
	}
}

// siluBackwardRef is the float64 reference for siluBackward.
func siluBackwardRef(dx, dout, x []float32) {
	if dx == nil {
		return
	}
	for i, v := range x {
		xv := float64(v)
		s := 1 / (1 + math.Exp(-xv))
		dx[i] += float32(float64(dout[i]) * (s + xv*s*(1-s)))
	}
}
