//go:build !purego

#include "textflag.h"

// The tanh GELU kernels of activation.go, 16 lanes at a time, for n a multiple of 16.
// Every step is the Go kernel's, in its order and with its roundings (no FMA outside
// the exponential), and the exponential is expShiftAVX512's, so the results equal the
// Go kernels' wherever those use the assembly exp (TestGELUTanhAVX512).

// EXPZ1 sets Z4 = exp(Z1) as expShiftAVX512 computes it (constants in Z18–Z30;
// clobbers Z2, Z3, K1–K3).
#define EXPZ1 \
	VMULPS Z30, Z1, Z2 \
	VRNDSCALEPS $0, Z2, Z2 \
	VMOVAPS Z1, Z3 \
	VFNMADD231PS Z29, Z2, Z3 \
	VFNMADD231PS Z28, Z2, Z3 \
	VMULPS Z3, Z3, Z5 \
	VMOVAPS Z27, Z4 \
	VFMADD213PS Z26, Z3, Z4 \
	VFMADD213PS Z25, Z3, Z4 \
	VFMADD213PS Z24, Z3, Z4 \
	VFMADD213PS Z23, Z3, Z4 \
	VFMADD213PS Z22, Z3, Z4 \
	VFMADD213PS Z3, Z5, Z4 \
	VADDPS Z21, Z4, Z4 \
	VSCALEFPS Z2, Z4, Z4 \
	VCMPPS $0x12, Z20, Z1, K1 \
	VCMPPS $0x1e, Z19, Z1, K2 \
	VCMPPS $3, Z1, Z1, K3 \
	VMOVAPS Z17, K1, Z4 \
	VMOVAPS Z18, K2, Z4 \
	VMOVAPS Z1, K3, Z4

// EXPCONSTS loads expShiftAVX512's constants into Z17–Z30, 0.044715 into Z16 and
// −2·√(2/π) into Z15.
#define EXPCONSTS \
	MOVL $0x3fb8aa3b, AX \
	VPBROADCASTD AX, Z30 \
	MOVL $0x3f318000, AX \
	VPBROADCASTD AX, Z29 \
	MOVL $0xb95e8083, AX \
	VPBROADCASTD AX, Z28 \
	MOVL $0x39506967, AX \
	VPBROADCASTD AX, Z27 \
	MOVL $0x3ab743ce, AX \
	VPBROADCASTD AX, Z26 \
	MOVL $0x3c088908, AX \
	VPBROADCASTD AX, Z25 \
	MOVL $0x3d2aa9c1, AX \
	VPBROADCASTD AX, Z24 \
	MOVL $0x3e2aaaaa, AX \
	VPBROADCASTD AX, Z23 \
	MOVL $0x3f000000, AX \
	VPBROADCASTD AX, Z22 \
	MOVL $0x3f800000, AX \
	VPBROADCASTD AX, Z21 \
	MOVL $0xc2aeac4f, AX \
	VPBROADCASTD AX, Z20 \
	MOVL $0x42b17217, AX \
	VPBROADCASTD AX, Z19 \
	MOVL $0x7f800000, AX \
	VPBROADCASTD AX, Z18 \
	VPXORD Z17, Z17, Z17 \
	MOVL $0x3d372713, AX \
	VPBROADCASTD AX, Z16 \
	MOVL $0xbfcc422a, AX \
	VPBROADCASTD AX, Z15

// ARGZ0 sets Z1 = −2·√(2/π)·(v + ((0.044715·v)·v)·v) for v in Z0.
#define ARGZ0 \
	VMULPS Z16, Z0, Z1 \
	VMULPS Z0, Z1, Z1 \
	VMULPS Z0, Z1, Z1 \
	VADDPS Z1, Z0, Z1 \
	VMULPS Z15, Z1, Z1

// func geluTanhAVX512(out, x *float32, n int)
// out[i] = x[i] / (1 + exp(−2u)), u = √(2/π)(x + 0.044715x³).
TEXT ·geluTanhAVX512(SB), NOSPLIT, $0-24
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	EXPCONSTS
	SHRQ $4, CX
	JZ fdone
floop:
	VMOVUPS (SI), Z0
	ARGZ0
	EXPZ1
	VADDPS Z21, Z4, Z4
	VDIVPS Z4, Z0, Z6
	VMOVUPS Z6, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ floop
fdone:
	VZEROUPPER
	RET

// func geluTanhBackwardAVX512(dx, dout, x *float32, n int)
// dx[i] += dout[i]·(s + 2v·du·e·s²) with v = x clamped to [−10, 10] (NaN kept),
// e = exp(−2u(v)), s = 1/(1+e), du = √(2/π)(1 + 3·0.044715·v²).
TEXT ·geluTanhBackwardAVX512(SB), NOSPLIT, $0-32
	MOVQ dx+0(FP), DI
	MOVQ dout+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ n+24(FP), CX
	EXPCONSTS
	MOVL $0x41200000, AX // 10
	VPBROADCASTD AX, Z14
	MOVL $0xc1200000, AX // −10
	VPBROADCASTD AX, Z13
	MOVL $0x3f4c422a, AX // √(2/π)
	VPBROADCASTD AX, Z12
	MOVL $0x3e095d4f, AX // 3·0.044715
	VPBROADCASTD AX, Z11
	MOVL $0x40000000, AX // 2
	VPBROADCASTD AX, Z10
	SHRQ $4, CX
	JZ bdone
bloop:
	VMOVUPS (SI), Z7
	VCMPPS $0x11, Z13, Z7, K4 // x < −10 (ordered)
	VCMPPS $0x1e, Z14, Z7, K5 // x > 10 (ordered)
	VMOVAPS Z7, Z0
	VMOVAPS Z13, K4, Z0
	VMOVAPS Z14, K5, Z0       // v = clamp(x), NaN kept
	ARGZ0
	EXPZ1                     // Z4 = e
	VADDPS Z21, Z4, Z6
	VDIVPS Z6, Z21, Z6        // s = 1/(1+e)
	VMULPS Z6, Z4, Z4
	VMULPS Z6, Z4, Z4         // es = (e·s)·s
	VMULPS Z11, Z0, Z8
	VMULPS Z0, Z8, Z8
	VADDPS Z21, Z8, Z8
	VMULPS Z8, Z12, Z8        // du = √(2/π)·(1 + (3a·v)·v)
	VMULPS Z10, Z0, Z9        // 2v
	VMULPS Z8, Z9, Z9
	VMULPS Z4, Z9, Z9         // ((2v)·du)·es
	VADDPS Z9, Z6, Z9         // s + …
	VMULPS (DX), Z9, Z9       // dout·(…)
	VADDPS (DI), Z9, Z9
	VMOVUPS Z9, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ bloop
bdone:
	VZEROUPPER
	RET
