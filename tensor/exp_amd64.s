//go:build !purego

#include "textflag.h"

// func expShiftAVX512(s *float32, n int, m float32) float32
// For n a multiple of 16: s[i] = exp(s[i] − m), returning the float32 sum of the
// results. The same Cephes expf as kernelExpShiftGo (see there), 16 lanes at a time:
// fn = round(x·log2 e), Cody–Waite r = x − fn·c1 − fn·c2 (fused), the degree-7
// polynomial, then VSCALEFPS for ·2^fn. Lanes with x <= −87.33654 give 0, x >
// 88.72283 give +Inf, NaN stays NaN. Only Z16–Z31 and the opmasks are EVEX-only, so
// AVX-512F suffices.
TEXT ·expShiftAVX512(SB), NOSPLIT, $0-28
	MOVQ s+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS m+16(FP), Z31
	MOVL $0x3fb8aa3b, AX // log2 e
	VPBROADCASTD AX, Z30
	MOVL $0x3f318000, AX // c1
	VPBROADCASTD AX, Z29
	MOVL $0xb95e8083, AX // c2
	VPBROADCASTD AX, Z28
	MOVL $0x39506967, AX // polynomial, highest degree first
	VPBROADCASTD AX, Z27
	MOVL $0x3ab743ce, AX
	VPBROADCASTD AX, Z26
	MOVL $0x3c088908, AX
	VPBROADCASTD AX, Z25
	MOVL $0x3d2aa9c1, AX
	VPBROADCASTD AX, Z24
	MOVL $0x3e2aaaaa, AX
	VPBROADCASTD AX, Z23
	MOVL $0x3f000000, AX
	VPBROADCASTD AX, Z22
	MOVL $0x3f800000, AX // 1
	VPBROADCASTD AX, Z21
	MOVL $0xc2aeac4f, AX // −87.33654
	VPBROADCASTD AX, Z20
	MOVL $0x42b17217, AX // 88.72283
	VPBROADCASTD AX, Z19
	MOVL $0x7f800000, AX // +Inf
	VPBROADCASTD AX, Z18
	VPXORD Z17, Z17, Z17 // 0
	VPXORD Z15, Z15, Z15 // sum
	SHRQ $4, CX
	JZ done
loop:
	VMOVUPS (SI), Z0
	VSUBPS Z31, Z0, Z0         // x = v − m
	VMULPS Z30, Z0, Z1
	VRNDSCALEPS $0, Z1, Z1     // fn = round(x·log2 e), ties to even
	VMOVAPS Z0, Z2
	VFNMADD231PS Z29, Z1, Z2   // r = x − fn·c1
	VFNMADD231PS Z28, Z1, Z2   // r −= fn·c2
	VMULPS Z2, Z2, Z3          // z = r²
	VMOVAPS Z27, Z4
	VFMADD213PS Z26, Z2, Z4
	VFMADD213PS Z25, Z2, Z4
	VFMADD213PS Z24, Z2, Z4
	VFMADD213PS Z23, Z2, Z4
	VFMADD213PS Z22, Z2, Z4
	VFMADD213PS Z2, Z3, Z4     // p·z + r
	VADDPS Z21, Z4, Z4         // + 1
	VSCALEFPS Z1, Z4, Z4       // ·2^fn
	VCMPPS $0x12, Z20, Z0, K1  // x <= lo (ordered)
	VCMPPS $0x1e, Z19, Z0, K2  // x > hi (ordered)
	VCMPPS $3, Z0, Z0, K3      // x is NaN
	VMOVAPS Z17, K1, Z4
	VMOVAPS Z18, K2, Z4
	VMOVAPS Z0, K3, Z4
	VMOVUPS Z4, (SI)
	VADDPS Z4, Z15, Z15
	ADDQ $64, SI
	DECQ CX
	JNZ loop
done:
	VEXTRACTF64X4 $1, Z15, Y0
	VADDPS Y0, Y15, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVHLPS X0, X0, X1
	VADDPS X1, X0, X0
	VMOVSHDUP X0, X1
	VADDSS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET
