package tensor

import "unsafe"

// The opt-in bfloat16 GEMM. Where the CPU has AVX512_BF16, A and B are rounded to
// bfloat16 (round to nearest even) while they are packed, two consecutive elements
// of K sharing one 32-bit word, and the micro-kernel multiplies pairs with VDPBF16PS
// (products of bfloat16 are exact in float32; each instruction adds two of them to the
// float32 accumulator, denormals flushed to zero). Elsewhere the packed float32 panels
// are rounded to bfloat16 values and the float32 kernel runs: the same rounding of
// the operands, one FMA per product. Either way the result differs from Gemm's by the
// operands' rounding (relative 2^-9 each), which over a dot product of length K is of
// order 2^-9·√K relative to the products' magnitude; see TestGemmBF16Error and the
// README for measured figures.

// GemmBF16 is Gemm with op(A) and op(B) rounded to bfloat16 and products accumulated
// in float32: about twice the speed where the CPU has AVX512_BF16, at the cost of
// bfloat16 precision in the operands. It is never used unless called; arguments,
// panics and determinism are Gemm's.
func GemmBF16(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	g := gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, lowp: true}
	g.check("GemmBF16", len(b))
	g.run(Threads())
}

// GemmBF16Kernel reports how GemmBF16 runs: "avx512bf16" (VDPBF16PS) or "emulated"
// (operands rounded to bfloat16, then the float32 kernel).
func GemmBF16Kernel() string {
	if k := bf16Kernel(); k != nil {
		return k.name
	}
	return "emulated"
}

// bf16Emulate makes GemmBF16 take the emulated path even where the pair kernel runs
// (tests compare the two).
var bf16Emulate bool

// kernel returns the micro-kernel for this call.
func (g *gemmArgs) kernel() *microKernel {
	if g.lowp && !bf16Emulate {
		if k := bf16Kernel(); k != nil {
			return k
		}
	}
	return activeKernel
}

// lowpPanel turns a packed float32 panel src (kc rows of w, with room for one more row)
// into what kern reads: bfloat16 pairs in dst for a pair kernel, else src's values
// rounded to bfloat16, in dst.
func lowpPanel(kern *microKernel, dst, src []float32, kc, w int) {
	if !kern.pairs {
		for i, v := range src[:kc*w] {
			dst[i] = BF16ToF32(F32ToBF16(v))
		}
		return
	}
	clear(src[kc*w : (kc+1)*w]) // an odd K block pairs its last row with zeros
	bf16Pairs(dst, src, w, (kc+1)/2)
}

// bf16PairsGo is the plain reference for bf16Pairs: word q·w+j of dst holds
// bfloat16(src[2q·w+j]) in its low half and bfloat16(src[(2q+1)·w+j]) in its high half.
func bf16PairsGo(dst, src []float32, w, pairs int) {
	if pairs == 0 || w == 0 {
		return
	}
	d := unsafe.Slice((*uint32)(unsafe.Pointer(&dst[0])), pairs*w)
	src = src[:2*pairs*w]
	for q := range pairs {
		lo, hi := src[2*q*w:2*q*w+w], src[(2*q+1)*w:(2*q+1)*w+w]
		for j := range w {
			d[q*w+j] = uint32(F32ToBF16(lo[j])) | uint32(F32ToBF16(hi[j]))<<16
		}
	}
}
