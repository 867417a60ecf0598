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
// backward regenerates the dropout mask from the seed and recomputes H = x̃·Aᵀ. With
// dropout, or with x packed to bf16 (SetSavedBF16), x̃ is formed a block of rows at a
// time, so that nothing of x's size is allocated.
func LoRARankR(x, w, bias, a, b *Tensor, s float32, p float64, seed uint64) *Tensor {
	return loraOp("LoRARankR", x, w, bias, a, b, s, p, seed, false)
}

// LoRAMerged is LoRARankR without dropout, its forward computed with the merged
// weight W′ = W + s·B·A (a transient [out, in]): 2·r·in·out FLOPs instead of
// 2·N·r·(in+out), fewer from N > in·out/(in+out) tokens on. Backward is LoRARankR's:
// it saves x only and builds no [out, in] gradient, where LinearFn's weight-space
// backward forms G = dYᵀ·X, as many FLOPs as the frozen layer's own forward.
func LoRAMerged(x, w, bias, a, b *Tensor, s float32) *Tensor {
	return loraOp("LoRAMerged", x, w, bias, a, b, s, 0, 0, true)
}

func loraOp(op string, x, w, bias, a, b *Tensor, s float32, p float64, seed uint64, merge bool) *Tensor {
	out, in := w.Dim(0), w.Dim(1)
	r := a.Dim(0)
	if x.Dim(-1) != in || a.Dim(1) != in || b.Dim(0) != out || b.Dim(1) != r || w.Rank() != 2 {
		panic(fmt.Sprintf("tensor.%s: input %v, weight %v, A %v, B %v", op, x.shape, w.shape, a.shape, b.shape))
	}
	if p < 0 || p >= 1 {
		panic(fmt.Sprintf("tensor.%s: dropout %g outside [0, 1)", op, p))
	}
	rows := x.Len() / max(in, 1)
	xd, ad, bd := mustF32(op, x), mustF32(op, a), mustF32(op, b)
	we := elemsOf(w)
	y := newTensor(false, append(slices.Clone(x.shape[:x.Rank()-1]), out)...)
	yd := y.Data()
	if merge {
		// W′ = W + s·B·A, then y = x·W′ᵀ.
		wm := CPU.alloc(F32, out*in, false)
		// A 16-bit W is widened straight into wm (the copy is then onto itself).
		copy(wm.f32, we.block(0, out*in, wm.f32))
		Gemm(false, false, out, in, r, s, bd, r, ad, in, 1, wm.f32, in)
		Gemm(false, true, rows, out, in, 1, xd, in, wm.f32, in, 0, yd, out)
		wm.release()
	} else {
		gemmAnyB(false, true, rows, out, in, xd, in, we, in, 0, yd, out)
		// H = x̃·Aᵀ [rows, r]; y += s·H·Bᵀ.
		h := newTensor(false, rows, r)
		hd := h.Data()
		loraBlocks(elemsOf(x), rows, in, p, seed, func(r0, r1 int, xt []float32) {
			Gemm(false, true, r1-r0, r, in, 1, xt, in, ad, in, 0, hd[r0*r:r1*r], r)
		})
		Gemm(false, true, rows, out, r, s, hd, r, bd, r, 1, yd, out)
		h.Release()
	}
	if bias != nil {
		addBiasRows(yd, mustF32(op, bias), out)
	}
	if !needsGrad(x, w, bias, a, b) {
		return y
	}
	if wants(w) {
		panic(fmt.Sprintf("tensor.%s: the base weight must be frozen", op))
	}
	var saved []*Tensor
	if wants(a) || wants(b) {
		saved = append(saved, x)
	}
	if wants(x) {
		saved = append(saved, w, a, b)
	}
	xe := elemsOf(x)
	record(y, op, []*Tensor{x, w, bias, a, b}, saved, func(dout []float32, dx gradFn) {
		// dH = s·dY·B [rows, r]
		dh := newTensor(false, rows, r)
		defer dh.Release()
		dhd := dh.Data()
		Gemm(false, false, rows, r, out, s, dout, out, bd, r, 0, dhd, r)
		da, dbw := dx(3), dx(4)
		if da != nil || dbw != nil {
			// By blocks of x̃: H = x̃·Aᵀ for dB = s·dYᵀ·H, and dA = dHᵀ·x̃.
			var hd []float32
			if dbw != nil {
				h := newTensor(false, rows, r)
				defer h.Release()
				hd = h.Data()
			}
			loraBlocks(xe, rows, in, p, seed, func(r0, r1 int, xt []float32) {
				if hd != nil {
					Gemm(false, true, r1-r0, r, in, 1, xt, in, ad, in, 0, hd[r0*r:r1*r], r)
				}
				if da != nil {
					Gemm(true, false, r, in, r1-r0, 1, dhd[r0*r:r1*r], r, xt, in, 1, da, in)
				}
			})
			if dbw != nil {
				Gemm(true, false, out, r, rows, s, dout, out, hd, r, 1, dbw, r)
			}
		}
		if d := dx(0); d != nil { // dX = dY·W + dropout′(dH·A)
			gemmAnyB(false, false, rows, in, out, dout, out, we, in, 1, d, in)
			if p == 0 {
				Gemm(false, false, rows, in, r, 1, dhd, r, ad, in, 1, d, in)
			} else {
				blk := loraBlockRows(rows, in)
				t := CPU.alloc(F32, blk*in, false)
				for r0 := 0; r0 < rows; r0 += blk {
					r1 := min(r0+blk, rows)
					td := t.f32[:(r1-r0)*in]
					Gemm(false, false, r1-r0, in, r, 1, dhd[r0*r:r1*r], r, ad, in, 0, td, in)
					dropoutAt(d[r0*in:r1*in], td, p, seed, r0*in, true)
				}
				t.release()
			}
		}
		if db := dx(2); db != nil {
			biasGrad(db, dout, out)
		}
	})
	return y
}

// loraBlockElems sizes the row blocks of LoRA's x̃: about 1 MiB of float32 (tests
// make it small to run several blocks).
var loraBlockElems = 1 << 18

// loraBlockRows is the rows of one block of x̃.
func loraBlockRows(rows, in int) int { return max(1, min(rows, loraBlockElems/max(in, 1))) }

// loraBlocks calls f on consecutive row blocks [r0, r1) of x̃ = dropout(x, p, seed), x
// [rows, in] read from e: x itself in one block when there is no dropout and x is
// float32, otherwise each block widened and dropped out into one small buffer.
func loraBlocks(e elems, rows, in int, p float64, seed uint64, f func(r0, r1 int, xt []float32)) {
	if p == 0 && e.st.dtype == F32 {
		f(0, rows, e.st.f32[e.off:e.off+rows*in])
		return
	}
	blk := loraBlockRows(rows, in)
	buf := CPU.alloc(F32, blk*in, false)
	defer buf.release()
	for r0 := 0; r0 < rows; r0 += blk {
		r1 := min(r0+blk, rows)
		xt := e.block(r0*in, r1*in, buf.f32)
		if p > 0 {
			dropoutAt(buf.f32[:len(xt)], xt, p, seed, r0*in, false)
			xt = buf.f32[:len(xt)]
		}
		f(r0, r1, xt)
	}
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

// dropoutAt writes (or, with accumulate, adds) dropout(src) into dst with the mask of
// Dropout(·, p, seed) for the elements from off on of a tensor: element i of dst and
// src is element off+i of the tensor, and gets that element's mask.
func dropoutAt(dst, src []float32, p float64, seed uint64, off int, accumulate bool) {
	threshold := uint32(p * (1 << 32))
	scale := float32(1 / (1 - p))
	parallelFor(len(dst), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v := float32(0)
			if dropKeep(seed, off+i, threshold) {
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
