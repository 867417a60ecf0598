package tensor

import (
	"fmt"
	"slices"
)

// The adapter forms of "Activations Aren't Cheap in LoRA, Weights Are" as fused ops.
// An adapter changes a frozen layer's weight W into W′ = f(W, θ) for small trainable
// parameters θ. LinearFn and Conv2dFn evaluate f inside the op, keep only the layer's
// input for backward, and rebuild W′ in backward to get dX and, through f's own small
// graph, dθ. LoRARankR is LoRA's unmerged path with H = X̃Aᵀ recomputed in backward.
// DropoutMasked is the activation-space baseline: dropout that keeps its mask, one
// byte per element, as PyTorch's does.

// LinearFn returns x·f()ᵀ + bias for x [..., in], where weight builds the [out, in]
// weight from params with ops (params must be leaves). It saves x only: backward
// rebuilds the weight, computes dx = dy·W′ and G = dyᵀx, and backpropagates G through
// weight's graph into the params. bias may be nil.
func LinearFn(x, bias *Tensor, params []*Tensor, weight func() *Tensor) *Tensor {
	checkLeaves("LinearFn", params)
	var w *Tensor
	NoGrad(func() { w = weight() })
	if w.Rank() != 2 || w.Dim(1) != x.Dim(-1) {
		panic(fmt.Sprintf("tensor.LinearFn: weight %v for input %v", w.shape, x.shape))
	}
	out, in := w.shape[0], w.shape[1]
	rows := x.Len() / max(in, 1)
	xd := mustF32("LinearFn", x)
	shape := append(slices.Clone(x.shape[:x.Rank()-1]), out)
	y := newTensor(false, shape...)
	gemmAnyB(false, true, rows, out, in, xd, in, elemsOf(w), in, 0, y.Data(), out)
	w.Release()
	if bias != nil {
		addBiasRows(y.Data(), mustF32("LinearFn", bias), out)
	}
	inputs := append([]*Tensor{x, bias}, params...)
	if !needsGrad(inputs...) {
		return y
	}
	paramsWant := needsGrad(params...)
	var saved []*Tensor
	if paramsWant {
		saved = append(saved, x)
	}
	xe := elemsOf(x)
	record(y, "LinearFn", inputs, saved, func(dout []float32, dx gradFn) {
		wg := weight() // recorded: the graph from params to W′
		defer wg.Release()
		wd, done := wg.f32()
		if d := dx(0); d != nil {
			Gemm(false, false, rows, in, out, 1, dout, out, wd, in, 1, d, in)
		}
		done()
		if db := dx(1); db != nil {
			biasGrad(db, dout, out)
		}
		if paramsWant && wg.node != nil {
			g := newTensor(false, out, in)
			// x as the B operand: a packed x is widened panel by panel, not copied whole.
			gemmAnyB(true, false, out, in, rows, dout, out, xe, in, 0, g.Data(), in)
			BackwardWith([]*Tensor{wg}, []*Tensor{g})
			g.Release()
		}
	})
	return y
}

// Conv2dFn is Conv2d with its weight built by weight() from leaf params, saving x only
// (see LinearFn).
func Conv2dFn(x, bias *Tensor, params []*Tensor, weight func() *Tensor, stride, padding, groups int) *Tensor {
	checkLeaves("Conv2dFn", params)
	var y *Tensor
	NoGrad(func() {
		w := weight()
		y = Conv2d(x, w, bias, stride, padding, groups)
		w.Release()
	})
	inputs := append([]*Tensor{x, bias}, params...)
	if !needsGrad(inputs...) {
		return y
	}
	paramsWant := needsGrad(params...)
	var saved []*Tensor
	if paramsWant {
		saved = append(saved, x)
	}
	xe, xs := elemsOf(x), slices.Clone(x.shape)
	record(y, "Conv2dFn", inputs, saved, func(dout []float32, dx gradFn) {
		xd, doneX := xe.f32If(paramsWant)
		defer doneX()
		wg := weight()
		defer wg.Release()
		p := ConvParams{N: xs[0], C: xs[1], H: xs[2], W: xs[3], O: wg.shape[0], KH: wg.shape[2], KW: wg.shape[3],
			StrideH: stride, StrideW: stride, PadH: padding, PadW: padding, Groups: groups}
		wd, done := wg.f32()
		defer done()
		var g *Tensor
		var gd []float32
		if paramsWant && wg.node != nil {
			g = newTensor(true, wg.shape...)
			gd = g.Data()
		}
		var dxd []float32
		if d := dx(0); d != nil {
			dxd = d
		}
		conv2dBackward(dxd, gd, dx(1), dout, xd, wd, p)
		if g != nil {
			BackwardWith([]*Tensor{wg}, []*Tensor{g})
			g.Release()
		}
	})
	return y
}

// LoRARankR returns x·Wᵀ + bias + s·(x̃·Aᵀ)·Bᵀ with x̃ = dropout(x, p, seed), for x
// [..., in], W [out, in] (frozen, any dtype), A [r, in], B [out, r]. It saves x only:
// backward regenerates the dropout mask from the seed and recomputes H = x̃·Aᵀ.
func LoRARankR(x, w, bias, a, b *Tensor, s float32, p float64, seed uint64) *Tensor {
	out, in := w.Dim(0), w.Dim(1)
	r := a.Dim(0)
	if x.Dim(-1) != in || a.Dim(1) != in || b.Dim(0) != out || b.Dim(1) != r || w.Rank() != 2 {
		panic(fmt.Sprintf("tensor.LoRARankR: input %v, weight %v, A %v, B %v", x.shape, w.shape, a.shape, b.shape))
	}
	if p < 0 || p >= 1 {
		panic(fmt.Sprintf("tensor.LoRARankR: dropout %g outside [0, 1)", p))
	}
	rows := x.Len() / max(in, 1)
	xd, ad, bd := mustF32("LoRARankR", x), mustF32("LoRARankR", a), mustF32("LoRARankR", b)
	we := elemsOf(w)
	y := newTensor(false, append(slices.Clone(x.shape[:x.Rank()-1]), out)...)
	yd := y.Data()
	gemmAnyB(false, true, rows, out, in, xd, in, we, in, 0, yd, out)
	if bias != nil {
		addBiasRows(yd, mustF32("LoRARankR", bias), out)
	}
	// H = x̃·Aᵀ [rows, r]; y += s·H·Bᵀ.
	h := loraH(xd, ad, rows, in, r, p, seed)
	Gemm(false, true, rows, out, r, s, h.Data(), r, bd, r, 1, yd, out)
	h.Release()
	if !needsGrad(x, w, bias, a, b) {
		return y
	}
	if wants(w) {
		panic("tensor.LoRARankR: the base weight must be frozen")
	}
	var saved []*Tensor
	if wants(a) || wants(b) {
		saved = append(saved, x)
	}
	if wants(x) {
		saved = append(saved, w, a, b)
	}
	xe, keepX := elemsOf(x), wants(a) || wants(b)
	record(y, "LoRARankR", []*Tensor{x, w, bias, a, b}, saved, func(dout []float32, dx gradFn) {
		xd, doneX := xe.f32If(keepX) // saved activations may be packed (SetSavedBF16)
		defer doneX()
		if db := dx(4); db != nil { // dB = s·dYᵀ·H
			h := loraH(xd, ad, rows, in, r, p, seed)
			Gemm(true, false, out, r, rows, s, dout, out, h.Data(), r, 1, db, r)
			h.Release()
		}
		// dH = s·dY·B [rows, r]
		dh := newTensor(false, rows, r)
		defer dh.Release()
		dhd := dh.Data()
		Gemm(false, false, rows, r, out, s, dout, out, bd, r, 0, dhd, r)
		if da := dx(3); da != nil { // dA = dHᵀ·x̃
			xt := xd
			if p > 0 {
				m := newTensor(false, rows, in)
				defer m.Release()
				dropoutKernel(m.Data(), xd, p, seed, false)
				xt = m.Data()
			}
			Gemm(true, false, r, in, rows, 1, dhd, r, xt, in, 1, da, in)
		}
		if d := dx(0); d != nil { // dX = dY·W + dropout′(dH·A)
			gemmAnyB(false, false, rows, in, out, dout, out, we, in, 1, d, in)
			if p == 0 {
				Gemm(false, false, rows, in, r, 1, dhd, r, ad, in, 1, d, in)
			} else {
				t := newTensor(false, rows, in)
				Gemm(false, false, rows, in, r, 1, dhd, r, ad, in, 0, t.Data(), in)
				dropoutKernel(d, t.Data(), p, seed, true)
				t.Release()
			}
		}
		if db := dx(2); db != nil {
			biasGrad(db, dout, out)
		}
	})
	return y
}

// loraH returns H = dropout(x)·Aᵀ [rows, r].
func loraH(xd, ad []float32, rows, in, r int, p float64, seed uint64) *Tensor {
	h := newTensor(false, rows, r)
	xt := xd
	if p > 0 {
		m := newTensor(false, rows, in)
		defer m.Release()
		dropoutKernel(m.Data(), xd, p, seed, false)
		xt = m.Data()
	}
	Gemm(false, true, rows, r, in, 1, xt, in, ad, in, 0, h.Data(), r)
	return h
}

// DropoutMasked is Dropout as PyTorch computes it for activation-space adapters: the
// same mask as Dropout(x, p, seed), but kept for backward as one byte per element, so
// that the activation form's saved bytes are what PEFT's are.
func DropoutMasked(x *Tensor, p float64, seed uint64) *Tensor {
	if p <= 0 {
		return Dropout(x, p, seed)
	}
	y := Dropout(x, p, seed)
	if y.node == nil {
		return y
	}
	mask := CPU.alloc(byteMask, x.Len(), false)
	mask.activ = true
	threshold := uint32(p * (1 << 32))
	for i := range mask.u8 {
		if dropKeep(seed, i, threshold) {
			mask.u8[i] = 1
		}
	}
	scale := float32(1 / (1 - p))
	m := &Tensor{st: mask, shape: slices.Clone(x.shape)}
	defer m.Release()
	y.node.free()
	y.node = nil
	record(y, "DropoutMasked", []*Tensor{x}, []*Tensor{m}, func(dout []float32, dx gradFn) {
		d := dx(0)
		for i, k := range mask.u8 {
			if k != 0 {
				d[i] += dout[i] * scale
			}
		}
	})
	return y
}

// dropoutKernel writes (or, with accumulate, adds) dropout(src) into dst with the
// mask of Dropout(·, p, seed).
func dropoutKernel(dst, src []float32, p float64, seed uint64, accumulate bool) {
	threshold := uint32(p * (1 << 32))
	scale := float32(1 / (1 - p))
	parallelFor(len(dst), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v := float32(0)
			if dropKeep(seed, i, threshold) {
				v = src[i] * scale
			}
			if accumulate {
				dst[i] += v
			} else {
				dst[i] = v
			}
		}
	})
}

func checkLeaves(op string, params []*Tensor) {
	for i, p := range params {
		if p.node != nil {
			panic(fmt.Sprintf("tensor.%s: param %d %v is not a leaf", op, i, p.shape))
		}
	}
}
