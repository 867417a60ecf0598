package tensor

import (
	"fmt"
	"math"
)

// GELU applies the Gaussian error linear unit: exact (erf) or PyTorch's tanh
// approximation. It saves its input.
func GELU(x *Tensor, approxTanh bool) *Tensor {
	xd := mustF32("GELU", x)
	out := newTensor(false, x.shape...)
	geluForward(out.Data(), xd, approxTanh)
	if needsGrad(x) {
		xe := elemsOf(x)
		record(out, "GELU", []*Tensor{x}, []*Tensor{x}, func(dout []float32, dx gradFn) {
			xd, done := xe.f32()
			defer done()
			geluBackward(dx(0), dout, xd, approxTanh)
		})
	}
	return out
}

// SiLU applies x·sigmoid(x). It saves its input.
func SiLU(x *Tensor) *Tensor {
	xd := mustF32("SiLU", x)
	out := newTensor(false, x.shape...)
	siluForward(out.Data(), xd)
	if needsGrad(x) {
		xe := elemsOf(x)
		record(out, "SiLU", []*Tensor{x}, []*Tensor{x}, func(dout []float32, dx gradFn) {
			xd, done := xe.f32()
			defer done()
			siluBackward(dx(0), dout, xd)
		})
	}
	return out
}

// Softmax normalises the last axis. It saves its output.
func Softmax(x *Tensor) *Tensor {
	xd := mustF32("Softmax", x)
	c := x.Dim(-1)
	out := newTensor(false, x.shape...)
	od := out.Data()
	softmaxForward(od, xd, x.Len()/max(c, 1), c)
	if needsGrad(x) {
		oe := elemsOf(out)
		record(out, "Softmax", []*Tensor{x}, []*Tensor{out}, func(dout []float32, dx gradFn) {
			od, done := oe.f32()
			defer done()
			softmaxBackward(dx(0), dout, od, len(od)/max(c, 1), c)
		})
	}
	return out
}

// optF32 returns t's data, or nil for a nil tensor.
func optF32(op string, t *Tensor) []float32 {
	if t == nil {
		return nil
	}
	return mustF32(op, t)
}

// checkVec panics unless t is nil or a vector of n elements.
func checkVec(op, what string, t *Tensor, n int, x *Tensor) {
	if t != nil && (t.Rank() != 1 || t.shape[0] != n) {
		panic(fmt.Sprintf("tensor.%s: %s shape %v for input %v (want [%d])", op, what, t.shape, x.shape, n))
	}
}

// LayerNorm normalises the last axis of x, then applies w and b when they are not nil
// (both [C]). It saves x, w, and the per-row mean and 1/std.
func LayerNorm(x, w, b *Tensor, eps float32) *Tensor {
	c := x.Dim(-1)
	checkVec("LayerNorm", "weight", w, c, x)
	checkVec("LayerNorm", "bias", b, c, x)
	rows := x.Len() / max(c, 1)
	xd, wd, bd := mustF32("LayerNorm", x), optF32("LayerNorm", w), optF32("LayerNorm", b)
	out := newTensor(false, x.shape...)
	stats := newTensor(false, 2, rows)
	mean, rstd := stats.Data()[:rows], stats.Data()[rows:]
	layerNormForward(out.Data(), mean, rstd, xd, wd, bd, rows, c, eps)
	stats.st.exact = true
	defer stats.Release()
	if needsGrad(x, w, b) {
		// x stays float32: backward subtracts the mean, and a bf16 x would lose the
		// deviations of rows whose mean is large next to their spread.
		x.st.exact = true
		xe, we := elemsOf(x), optElems(w)
		record(out, "LayerNorm", []*Tensor{x, w, b}, []*Tensor{x, w, stats}, func(dout []float32, dx gradFn) {
			xd, doneX := xe.f32()
			wd, doneW := we.f32()
			defer doneX()
			defer doneW()
			layerNormBackward(dx(0), dx(1), dx(2), dout, xd, wd, mean, rstd, rows, c)
		})
	}
	return out
}

// GroupNorm normalises x [N, C, ...] over groups of C/groups channels and all spatial
// positions, then applies per-channel w and b when not nil. It saves x, w and the
// per-group statistics.
func GroupNorm(x *Tensor, groups int, w, b *Tensor, eps float32) *Tensor {
	if x.Rank() < 2 || groups <= 0 || x.shape[1]%groups != 0 {
		panic(fmt.Sprintf("tensor.GroupNorm: %d groups for input %v", groups, x.shape))
	}
	n, c := x.shape[0], x.shape[1]
	hw := x.Len() / max(n*c, 1)
	checkVec("GroupNorm", "weight", w, c, x)
	checkVec("GroupNorm", "bias", b, c, x)
	xd, wd, bd := mustF32("GroupNorm", x), optF32("GroupNorm", w), optF32("GroupNorm", b)
	out := newTensor(false, x.shape...)
	stats := newTensor(false, 2, n*groups)
	mean, rstd := stats.Data()[:n*groups], stats.Data()[n*groups:]
	groupNormForward(out.Data(), mean, rstd, xd, wd, bd, n, c, hw, groups, eps)
	stats.st.exact = true
	defer stats.Release()
	if needsGrad(x, w, b) {
		x.st.exact = true // as in LayerNorm: backward subtracts the mean
		xe, we := elemsOf(x), optElems(w)
		record(out, "GroupNorm", []*Tensor{x, w, b}, []*Tensor{x, w, stats}, func(dout []float32, dx gradFn) {
			xd, doneX := xe.f32()
			wd, doneW := we.f32()
			defer doneX()
			defer doneW()
			groupNormBackward(dx(0), dx(1), dx(2), dout, xd, wd, mean, rstd, n, c, hw, groups)
		})
	}
	return out
}

// RMSNorm divides the last axis of x by its root mean square and applies w when not
// nil. It saves x, w and the per-row 1/rms.
func RMSNorm(x, w *Tensor, eps float32) *Tensor {
	c := x.Dim(-1)
	checkVec("RMSNorm", "weight", w, c, x)
	rows := x.Len() / max(c, 1)
	xd, wd := mustF32("RMSNorm", x), optF32("RMSNorm", w)
	out := newTensor(false, x.shape...)
	rs := newTensor(false, rows)
	rstd := rs.Data()
	rmsNormForward(out.Data(), rstd, xd, wd, rows, c, eps)
	rs.st.exact = true
	defer rs.Release()
	if needsGrad(x, w) {
		xe, we := elemsOf(x), optElems(w)
		record(out, "RMSNorm", []*Tensor{x, w}, []*Tensor{x, w, rs}, func(dout []float32, dx gradFn) {
			xd, doneX := xe.f32()
			wd, doneW := we.f32()
			defer doneX()
			defer doneW()
			rmsNormBackward(dx(0), dx(1), dout, xd, wd, rstd, rows, c)
		})
	}
	return out
}

// Conv2d convolves x [N, C, H, W] with w [O, C/groups, KH, KW] and adds bias [O] when
// not nil, with the same stride and zero padding on both axes. w may be stored as
// BF16 or F16. It saves x only if w needs a gradient and w only if x needs one.
func Conv2d(x, w, bias *Tensor, stride, padding, groups int) *Tensor {
	if x.Rank() != 4 || w.Rank() != 4 || groups <= 0 || x.shape[1] != w.shape[1]*groups || w.shape[0]%groups != 0 || stride <= 0 || padding < 0 {
		panic(fmt.Sprintf("tensor.Conv2d: input %v, weight %v, stride %d, padding %d, groups %d", x.shape, w.shape, stride, padding, groups))
	}
	p := ConvParams{N: x.shape[0], C: x.shape[1], H: x.shape[2], W: x.shape[3], O: w.shape[0], KH: w.shape[2], KW: w.shape[3],
		StrideH: stride, StrideW: stride, PadH: padding, PadW: padding, Groups: groups}
	if p.OH() <= 0 || p.OW() <= 0 {
		panic(fmt.Sprintf("tensor.Conv2d: input %v too small for weight %v with padding %d", x.shape, w.shape, padding))
	}
	checkVec("Conv2d", "bias", bias, p.O, x)
	xd, bd := mustF32("Conv2d", x), optF32("Conv2d", bias)
	we := elemsOf(w)
	wd, done := we.f32()
	out := newTensor(false, p.N, p.O, p.OH(), p.OW())
	conv2dForward(out.Data(), xd, wd, bd, p)
	done()
	if !needsGrad(x, w, bias) {
		return out
	}
	var saved []*Tensor
	if wants(w) {
		saved = append(saved, x)
	}
	if wants(x) {
		saved = append(saved, w)
	}
	xe := elemsOf(x)
	record(out, "Conv2d", []*Tensor{x, w, bias}, saved, func(dout []float32, dx gradFn) {
		dxd, dwd := dx(0), dx(1)
		// w is kept (and read) only when x needs its gradient, x only when w needs one.
		wd, doneW := we.f32If(dxd != nil)
		xd, doneX := xe.f32If(dwd != nil)
		defer doneW()
		defer doneX()
		conv2dBackward(dxd, dwd, dx(2), dout, xd, wd, p)
	})
	return out
}

// UpsampleNearest2x doubles the last two axes of x [N, C, H, W] by repetition.
func UpsampleNearest2x(x *Tensor) *Tensor {
	if x.Rank() != 4 {
		panic(fmt.Sprintf("tensor.UpsampleNearest2x: input %v is not [N, C, H, W]", x.shape))
	}
	nc, h, w := x.shape[0]*x.shape[1], x.shape[2], x.shape[3]
	out := newTensor(false, x.shape[0], x.shape[1], 2*h, 2*w)
	upsampleNearest2xForward(out.Data(), mustF32("UpsampleNearest2x", x), nc, h, w)
	if needsGrad(x) {
		record(out, "UpsampleNearest2x", []*Tensor{x}, nil, func(dout []float32, dx gradFn) {
			upsampleNearest2xBackward(dx(0), dout, nc, h, w)
		})
	}
	return out
}

// attentionBackwardPacked is Attention's backward when saved activations were packed
// (SetSavedBF16): it widens q, k, v and the output one sequence at a time instead of
// whole, so the float32 copies cost one sequence's bytes, not the batch's.
func attentionBackwardPacked(es [5]elems, dx gradFn, dout, lse []float32, b, heads, tq, tk, d int, scale float32, causal bool) {
	dq, dk, dv := dx(0), dx(1), dx(2)
	lq, lk := tq*heads*d, tk*heads*d
	sizes := [4]int{lq, lk, lk, lq} // q, k, v, out per sequence
	var bufs [4]*Storage
	for i, n := range sizes {
		if es[i].st.dtype != F32 {
			bufs[i] = CPU.alloc(F32, n, false)
			defer bufs[i].release()
		}
	}
	md, done := es[4].f32()
	defer done()
	part := func(x []float32, i, n int) []float32 {
		if x == nil {
			return nil
		}
		return x[i*n : (i+1)*n]
	}
	for i := range b {
		var ds [4][]float32
		for j, n := range sizes {
			var buf []float32
			if bufs[j] != nil {
				buf = bufs[j].f32
			}
			ds[j] = es[j].block(i*n, (i+1)*n, buf)
		}
		attentionBackward(part(dq, i, lq), part(dk, i, lk), part(dv, i, lk), part(dout, i, lq), ds[0], ds[1], ds[2], ds[3],
			part(lse, i, heads*tq), part(md, i, tk), 1, heads, tq, tk, d, scale, causal)
	}
}

// Attention is fused scaled-dot-product attention, softmax(q·kᵀ/√D + mask)·v per head,
// on the layout a Linear produces: q [B, Tq, H·D], k and v [B, Tk, H·D], output
// [B, Tq, H·D]. mask is nil or an additive [B, Tk] key mask (0 keeps, -Inf drops);
// causal lets query i see keys j <= i (Tq must equal Tk). It never forms the Tq×Tk
// matrix: it saves q, k, v, the output and the per-row log-sum-exp, O(T) per head.
func Attention(q, k, v *Tensor, heads int, mask *Tensor, causal bool) *Tensor {
	if q.Rank() != 3 || k.Rank() != 3 || v.Rank() != 3 || heads <= 0 || q.shape[2]%heads != 0 ||
		k.shape[0] != q.shape[0] || v.shape[0] != q.shape[0] || k.shape[2] != q.shape[2] || v.shape[2] != q.shape[2] || k.shape[1] != v.shape[1] {
		panic(fmt.Sprintf("tensor.Attention: q %v, k %v, v %v with %d heads", q.shape, k.shape, v.shape, heads))
	}
	b, tq, tk, d := q.shape[0], q.shape[1], k.shape[1], q.shape[2]/heads
	if causal && tq != tk {
		panic(fmt.Sprintf("tensor.Attention: causal attention needs Tq == Tk, got q %v and k %v", q.shape, k.shape))
	}
	if mask != nil && (mask.Rank() != 2 || mask.shape[0] != b || mask.shape[1] != tk) {
		panic(fmt.Sprintf("tensor.Attention: mask %v for keys %v (want [%d %d])", mask.shape, k.shape, b, tk))
	}
	qd, kd, vd, md := mustF32("Attention", q), mustF32("Attention", k), mustF32("Attention", v), optF32("Attention", mask)
	scale := float32(1 / math.Sqrt(float64(d)))
	out := newTensor(false, q.shape...)
	lseT := newTensor(false, b, heads, tq)
	od, lse := out.Data(), lseT.Data()
	attentionForward(od, lse, qd, kd, vd, md, b, heads, tq, tk, d, scale, causal)
	lseT.st.exact = true
	defer lseT.Release()
	if needsGrad(q, k, v) {
		es := [...]elems{elemsOf(q), elemsOf(k), elemsOf(v), elemsOf(out), optElems(mask)}
		record(out, "Attention", []*Tensor{q, k, v}, []*Tensor{q, k, v, out, lseT, mask}, func(dout []float32, dx gradFn) {
			if b > 1 && (es[0].st.packed || es[1].st.packed || es[2].st.packed || es[3].st.packed) {
				attentionBackwardPacked(es, dx, dout, lse, b, heads, tq, tk, d, scale, causal)
				return
			}
			var ds [len(es)][]float32
			for i, e := range es {
				d, done := e.f32()
				defer done()
				ds[i] = d
			}
			qd, kd, vd, od, md := ds[0], ds[1], ds[2], ds[3], ds[4]
			attentionBackward(dx(0), dx(1), dx(2), dout, qd, kd, vd, od, lse, md, b, heads, tq, tk, d, scale, causal)
		})
	}
	return out
}
