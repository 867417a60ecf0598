package tensor

import (
	"fmt"
	"slices"
)

// MatMul returns op(a)·op(b), where op transposes the last two axes when the flag is
// set. a is [..., M, K] ([..., K, M] when transA); b is [..., K, N] ([..., N, K] when
// transB) with the same batch axes as a, or 2-D and shared by every batch (a Linear
// layer's weight: MatMul(x, w, false, true)). b may be stored as BF16 or F16; it is
// widened while being packed. The result is [..., M, N].
//
// Backward saves a only if b needs a gradient and b only if a needs one.
func MatMul(a, b *Tensor, transA, transB bool) *Tensor {
	if a.Rank() < 2 || b.Rank() < 2 || (b.Rank() > 2 && b.Rank() != a.Rank()) {
		panic(fmt.Sprintf("tensor.MatMul: shapes %v and %v", a.shape, b.shape))
	}
	ra, rb := a.Rank(), b.Rank()
	m, k := a.shape[ra-2], a.shape[ra-1]
	if transA {
		m, k = k, m
	}
	kb, n := b.shape[rb-2], b.shape[rb-1]
	if transB {
		kb, n = n, kb
	}
	batch := numel(a.shape[:ra-2])
	shared := rb == 2
	if kb != k || (!shared && !slices.Equal(a.shape[:ra-2], b.shape[:rb-2])) {
		panic(fmt.Sprintf("tensor.MatMul: shapes %v (transposed %v) and %v (transposed %v)", a.shape, transA, b.shape, transB))
	}
	if a.DType() != F32 {
		panic(fmt.Sprintf("tensor.MatMul: a is %v; only b may be 16-bit", a.DType()))
	}
	shape := append(slices.Clone(a.shape[:ra-2]), m, n)
	if m == 0 || n == 0 || k == 0 || batch == 0 {
		// Empty products: a zero result, and gradients that are zero too.
		out := newTensor(true, shape...)
		if needsGrad(a, b) {
			record(out, "MatMul", []*Tensor{a, b}, nil, func([]float32, gradFn) {})
		}
		return out
	}
	out := newTensor(false, shape...)
	ad, o, be := a.Data(), out.Data(), elemsOf(b)
	lda, ldb := a.shape[ra-1], b.shape[rb-1]
	sb := 0
	if !shared {
		sb = k * n
	}
	switch {
	case shared && !transA:
		// The batch folds into M: one large GEMM.
		gemmAnyB(false, transB, batch*m, n, k, ad, lda, be, ldb, 0, o, n)
	case b.DType() == F32:
		GemmBatched(transA, transB, batch, m, n, k, 1, ad, lda, m*k, b.Data(), ldb, sb, 0, o, n, m*n)
	default:
		bd, done := be.f32()
		GemmBatched(transA, transB, batch, m, n, k, 1, ad, lda, m*k, bd, ldb, sb, 0, o, n, m*n)
		done()
	}
	if !needsGrad(a, b) {
		return out
	}
	var saved []*Tensor
	if wants(b) {
		saved = append(saved, a)
	}
	if wants(a) {
		saved = append(saved, b)
	}
	ae, keepA := elemsOf(a), wants(b)
	record(out, "MatMul", []*Tensor{a, b}, saved, func(dout []float32, dx gradFn) {
		if da := dx(0); da != nil {
			switch {
			case !transA && shared:
				// dA[B·M, K] += dC[B·M, N] · op(b)ᵀ
				gemmAnyB(false, !transB, batch*m, k, n, dout, n, be, ldb, 1, da, lda)
			case !transA:
				bd, done := be.f32()
				GemmBatched(false, !transB, batch, m, k, n, 1, dout, n, m*n, bd, ldb, sb, 1, da, lda, m*k)
				done()
			default:
				// a is stored [K, M]: dA = op(b) · dCᵀ, [K, N]·[N, M].
				bd, done := be.f32()
				GemmBatched(transB, true, batch, k, m, n, 1, bd, ldb, sb, dout, n, m*n, 1, da, lda, m*k)
				done()
			}
		}
		if db := dx(1); db != nil && keepA {
			if shared && !transA && transB { // dB = dCᵀ·A, with a packed A read as the B operand
				gemmAnyB(true, false, n, k, batch*m, dout, n, ae, lda, 1, db, ldb)
				return
			}
			ad, doneA := ae.f32() // a saved activation may be packed (SetSavedBF16)
			defer doneA()
			switch {
			case shared && !transA && !transB:
				Gemm(true, false, k, n, batch*m, 1, ad, lda, dout, n, 1, db, ldb) // dB = Aᵀ·dC
			case shared:
				for i := range batch {
					matmulGradB(transA, transB, m, n, k, ad[i*m*k:], lda, dout[i*m*n:], db, ldb)
				}
			default:
				for i := range batch {
					matmulGradB(transA, transB, m, n, k, ad[i*m*k:], lda, dout[i*m*n:], db[i*k*n:], ldb)
				}
			}
		}
	})
	return out
}

// matmulGradB accumulates the gradient of op(b) for one matrix of a batch.
func matmulGradB(transA, transB bool, m, n, k int, a []float32, lda int, dout, db []float32, ldb int) {
	if transB {
		// b stored [N, K]: dB = dCᵀ · op(a), [N, M]·[M, K].
		Gemm(true, transA, n, k, m, 1, dout, n, a, lda, 1, db, ldb)
		return
	}
	// b stored [K, N]: dB = op(a)ᵀ · dC, [K, M]·[M, N].
	Gemm(!transA, false, k, n, m, 1, a, lda, dout, n, 1, db, ldb)
}

// gemmAnyB is Gemm with a B operand of any storage dtype.
func gemmAnyB(transA, transB bool, m, n, k int, a []float32, lda int, b elems, ldb int, beta float32, c []float32, ldc int) {
	if b.st.dtype == F32 {
		Gemm(transA, transB, m, n, k, 1, a, lda, b.st.f32[b.off:b.off+b.n], ldb, beta, c, ldc)
		return
	}
	GemmB16(transA, transB, m, n, k, 1, a, lda, b.st.u16[b.off:b.off+b.n], b.st.dtype == BF16, ldb, beta, c, ldc)
}

// Linear returns x·wᵀ + bias for x [..., in] (at least 2-D), w [out, in] (F32, BF16 or F16) and bias
// [out] or nil. It is MatMul(x, w, false, true) followed by Add(·, bias) as one op:
// the bias is added in place after the GEMM and its gradient is the column sums of
// dY, so the results are those of the two ops without the second output or the
// gradient copy between them. It panics, naming the shapes, when they do not fit.
//
// Backward saves x only if w needs a gradient and w only if x needs one.
func Linear(x, w, bias *Tensor) *Tensor {
	if x.Rank() < 2 || w.Rank() != 2 || x.Dim(-1) != w.Dim(1) || (bias != nil && (bias.Rank() != 1 || bias.Dim(0) != w.Dim(0))) {
		var bs []int
		if bias != nil {
			bs = bias.shape
		}
		panic(fmt.Sprintf("tensor.Linear: input %v, weight %v, bias %v", x.shape, w.shape, bs))
	}
	out, in := w.shape[0], w.shape[1]
	rows := x.Len() / max(in, 1)
	if rows == 0 || out == 0 || in == 0 {
		// Empty products: the two ops themselves.
		y := MatMul(x, w, false, true)
		if bias == nil {
			return y
		}
		defer y.Release()
		return Add(y, bias)
	}
	xd := mustF32("Linear", x)
	var bd []float32
	if bias != nil {
		bd = mustF32("Linear", bias)
	}
	shape := append(slices.Clone(x.shape[:x.Rank()-1]), out)
	y := newTensor(false, shape...)
	yd, we := y.Data(), elemsOf(w)
	gemmAnyB(false, true, rows, out, in, xd, in, we, in, 0, yd, out)
	if bd != nil {
		addBiasRows(yd, bd, out)
	}
	if !needsGrad(x, w, bias) {
		return y
	}
	var saved []*Tensor
	if wants(w) {
		saved = append(saved, x)
	}
	if wants(x) {
		saved = append(saved, w)
	}
	xe, keepX := elemsOf(x), wants(w)
	record(y, "Linear", []*Tensor{x, w, bias}, saved, func(dout []float32, dx gradFn) {
		if d := dx(0); d != nil { // dX[rows, in] += dY · W
			gemmAnyB(false, false, rows, in, out, dout, out, we, in, 1, d, in)
		}
		if dw := dx(1); dw != nil && keepX { // dW[out, in] += dYᵀ · X, X packed or not
			gemmAnyB(true, false, out, in, rows, dout, out, xe, in, 1, dw, in)
		}
		if db := dx(2); db != nil {
			biasGrad(db, dout, out)
		}
	})
	return y
}

// addBiasRows adds bias [n] to every row of y [rows, n] (y[r, j] + bias[j], as Add
// rounds it), in parallel over rows.
func addBiasRows(y, bias []float32, n int) {
	parallelRows(len(y)/n, n, func(r, lo, hi int) {
		row := y[r*n+lo : r*n+hi]
		addRow(row, row, bias[lo:hi], 1, 1)
	})
}

// biasGrad accumulates the column sums of dy [rows, n] into db [n], summed in float64
// as Add's backward reduces a broadcast bias.
func biasGrad(db, dy []float32, n int) {
	gradReduce(db, dy, nil, []int{len(dy) / n, n}, []int{n}, nil, 1)
}
