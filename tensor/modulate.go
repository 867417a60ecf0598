package tensor

import (
	"fmt"
	"slices"
)

// adaLN's two per-sample elementwise steps as fused ops (DiT, PixArt-α): modulate,
// x·(1 + scale) + shift, and the gated residual, x + gate·h, where x and h are
// [N, T, D] and shift, scale and gate are [N, 1, D]. Composed from AddScalar, Mul and
// Add they write two or three full-size temporaries forward and as many gradient
// buffers backward; fused, each is one pass forward and one backward. Every element
// is rounded as the composition rounds it (explicit float32 conversions keep a
// product from being fused into an FMA) and the broadcast sums are float64 in the same
// order, so the results are the composition's bit for bit. A plain serial
// reference stays next to each kernel (…Ref) and the tests compare them.

// Modulate returns x·(1 + scale) + shift for x [N, T, D] and shift, scale [N, 1, D]:
// AddScalar(scale, 1), Mul and Add as one op. It saves x if scale needs a gradient
// and scale if x needs one. It panics, naming the shapes, when they do not fit.
func Modulate(x, shift, scale *Tensor) *Tensor {
	n, t, d := modShape("Modulate", x, shift, scale)
	xd, sh, sc := mustF32("Modulate", x), mustF32("Modulate", shift), mustF32("Modulate", scale)
	out := newTensor(false, x.shape...)
	modulateForward(out.Data(), xd, sh, sc, n, t, d)
	if !needsGrad(x, shift, scale) {
		return out
	}
	var saved []*Tensor
	if wants(scale) {
		saved = append(saved, x)
	}
	if wants(x) {
		saved = append(saved, scale)
	}
	xe, se, keepX, keepS := elemsOf(x), elemsOf(scale), wants(scale), wants(x)
	record(out, "Modulate", []*Tensor{x, shift, scale}, saved, func(dout []float32, dx gradFn) {
		xd, doneX := xe.f32If(keepX) // saved activations may be packed (SetSavedBF16)
		sc, doneS := se.f32If(keepS)
		defer doneX()
		defer doneS()
		modulateBackward(dx(0), dx(1), dx(2), dout, xd, sc, n, t, d)
	})
	return out
}

// GatedAdd returns x + gate·h for x, h [N, T, D] and gate [N, 1, D] (nil: x + h):
// Mul and Add as one op, DiT's gated residual. It saves h if gate needs a gradient and
// gate if h needs one. It panics, naming the shapes, when they do not fit.
func GatedAdd(x, gate, h *Tensor) *Tensor {
	if gate == nil {
		return Add(x, h)
	}
	n, t, d := modShape("GatedAdd", h, gate, gate)
	if !slices.Equal(x.shape, h.shape) {
		panic(fmt.Sprintf("tensor.GatedAdd: x %v and h %v differ", x.shape, h.shape))
	}
	xd, gd, hd := mustF32("GatedAdd", x), mustF32("GatedAdd", gate), mustF32("GatedAdd", h)
	out := newTensor(false, x.shape...)
	gatedAddForward(out.Data(), xd, gd, hd, n, t, d)
	if !needsGrad(x, gate, h) {
		return out
	}
	var saved []*Tensor
	if wants(gate) {
		saved = append(saved, h)
	}
	if wants(h) {
		saved = append(saved, gate)
	}
	ge, he, keepG, keepH := elemsOf(gate), elemsOf(h), wants(h), wants(gate)
	record(out, "GatedAdd", []*Tensor{x, gate, h}, saved, func(dout []float32, dx gradFn) {
		gd, doneG := ge.f32If(keepG) // saved activations may be packed (SetSavedBF16)
		hd, doneH := he.f32If(keepH)
		defer doneG()
		defer doneH()
		gatedAddBackward(dx(0), dx(1), dx(2), dout, gd, hd, n, t, d)
	})
	return out
}

// modShape checks x [N, T, D] against a and b [N, 1, D] and returns N, T, D.
func modShape(op string, x, a, b *Tensor) (n, t, d int) {
	ok := x.Rank() == 3
	for _, v := range []*Tensor{a, b} {
		ok = ok && v.Rank() == 3 && v.shape[0] == x.shape[0] && v.shape[1] == 1 && v.shape[2] == x.shape[2]
	}
	if !ok {
		panic(fmt.Sprintf("tensor.%s: input %v with %v and %v (want [N, T, D] with [N, 1, D])", op, x.shape, a.shape, b.shape))
	}
	return x.shape[0], x.shape[1], x.shape[2]
}

// modColBlock is the column block of the backward reductions: its float64
// accumulators live on the stack.
const modColBlock = 128

// modTasks runs body(s, c0, c1) for every sample s < n and column block [c0, c1) of
// d columns, in parallel. Each task owns its columns of sample s, so the reductions
// over T need no synchronisation and their order does not depend on the threads.
func modTasks(n, t, d int, body func(s, c0, c1 int)) {
	if n == 0 || t == 0 || d == 0 {
		return
	}
	nb := (d + modColBlock - 1) / modColBlock
	parallelFor(n*nb, max(1, kernelGrain/(t*min(d, modColBlock))), func(lo, hi int) {
		for k := lo; k < hi; k++ {
			s, c0 := k/nb, k%nb*modColBlock
			body(s, c0, min(c0+modColBlock, d))
		}
	})
}

// modulateForward writes out = x·(1 + scale) + shift (see Modulate).
func modulateForward(out, x, shift, scale []float32, n, t, d int) {
	parallelRows(n*t, d, func(r, lo, hi int) {
		s := r / t
		o, xs := out[r*d+lo:r*d+hi], x[r*d+lo:r*d+hi]
		sh, sc := shift[s*d+lo:s*d+hi], scale[s*d+lo:s*d+hi]
		mulAddRow(o, xs, sc, sh, 1) // float32(v·(sc+1)) + sh
	})
}

// modulateBackward accumulates dx += dout·(1 + scale), dshift += Σ_T dout and
// dscale += Σ_T dout·x (any of them may be nil).
func modulateBackward(dx, dshift, dscale, dout, x, scale []float32, n, t, d int) {
	modTasks(n, t, d, func(s, c0, c1 int) {
		var accSh, accSc [modColBlock]float64
		w := c1 - c0
		var sc []float32 // read (and saved) only when x needs its gradient
		if dx != nil {
			sc = scale[s*d+c0 : s*d+c1]
		}
		for i := range t {
			r := (s*t+i)*d + c0
			g := dout[r : r+w]
			if dx != nil {
				mulAccPlusRow(dx[r:r+w], g, sc, 1) // dx += float32(g·(sc+1))
			}
			if dshift != nil {
				accRow64(accSh[:w], g)
			}
			if dscale != nil {
				accMulRow64(accSc[:w], g, x[r:r+w])
			}
		}
		for j := range w {
			if dshift != nil {
				dshift[s*d+c0+j] += float32(accSh[j])
			}
			if dscale != nil {
				dscale[s*d+c0+j] += float32(accSc[j])
			}
		}
	})
}

// gatedAddForward writes out = x + gate·h (see GatedAdd).
func gatedAddForward(out, x, gate, h []float32, n, t, d int) {
	parallelRows(n*t, d, func(r, lo, hi int) {
		s := r / t
		o := out[r*d+lo : r*d+hi]
		xs, hs, g := x[r*d+lo:r*d+hi], h[r*d+lo:r*d+hi], gate[s*d+lo:s*d+hi]
		mulAddRow(o, g, hs, xs, negZero) // xs + float32(g·hs)
	})
}

// gatedAddBackward accumulates dx += dout, dh += dout·gate and dgate += Σ_T dout·h
// (any of them may be nil).
func gatedAddBackward(dx, dgate, dh, dout, gate, h []float32, n, t, d int) {
	modTasks(n, t, d, func(s, c0, c1 int) {
		var acc [modColBlock]float64
		w := c1 - c0
		var g []float32 // read (and saved) only when h needs its gradient
		if dh != nil {
			g = gate[s*d+c0 : s*d+c1]
		}
		for i := range t {
			r := (s*t+i)*d + c0
			gr := dout[r : r+w]
			if dx != nil {
				axpyRow(dx[r:r+w], gr, 1)
			}
			if dh != nil {
				mulAccPlusRow(dh[r:r+w], gr, g, negZero) // dh += float32(dout·gate)
			}
			if dgate != nil {
				accMulRow64(acc[:w], gr, h[r:r+w])
			}
		}
		if dgate != nil {
			for j := range w {
				dgate[s*d+c0+j] += float32(acc[j])
			}
		}
	})
}

// modulateRef is the serial reference for modulateForward.
func modulateRef(out, x, shift, scale []float32, n, t, d int) {
	for s := range n {
		for i := range t {
			for j := range d {
				k := (s*t+i)*d + j
				onePlus := scale[s*d+j] + 1
				out[k] = float32(x[k]*onePlus) + shift[s*d+j]
			}
		}
	}
}

// modulateBackwardRef is the serial reference for modulateBackward.
func modulateBackwardRef(dx, dshift, dscale, dout, x, scale []float32, n, t, d int) {
	for s := range n {
		for j := range d {
			var sh, sc float64
			for i := range t {
				k := (s*t+i)*d + j
				if dx != nil {
					dx[k] += float32(dout[k] * (scale[s*d+j] + 1))
				}
				sh += float64(dout[k])
				sc += float64(dout[k] * x[k])
			}
			if dshift != nil {
				dshift[s*d+j] += float32(sh)
			}
			if dscale != nil {
				dscale[s*d+j] += float32(sc)
			}
		}
	}
}

// gatedAddRef is the serial reference for gatedAddForward.
func gatedAddRef(out, x, gate, h []float32, n, t, d int) {
	for s := range n {
		for i := range t {
			for j := range d {
				k := (s*t+i)*d + j
				out[k] = x[k] + float32(gate[s*d+j]*h[k])
			}
		}
	}
}

// gatedAddBackwardRef is the serial reference for gatedAddBackward.
func gatedAddBackwardRef(dx, dgate, dh, dout, gate, h []float32, n, t, d int) {
	for s := range n {
		for j := range d {
			var sg float64
			for i := range t {
				k := (s*t+i)*d + j
				if dx != nil {
					dx[k] += dout[k]
				}
				if dh != nil {
					dh[k] += float32(dout[k] * gate[s*d+j])
				}
				sg += float64(dout[k] * h[k])
			}
			if dgate != nil {
				dgate[s*d+j] += float32(sg)
			}
		}
	}
}
