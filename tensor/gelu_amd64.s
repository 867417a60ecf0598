//go:build !purego

#include "textflag.h"

// The tanh GELU kernels of activation.go, 16 lanes at a time, for n a multiple of 16.
// Every step is the Go kernel's, in its order and with its roundings (no FMA outside
// the exponential), and the exponential is expShiftAVX512's, so the results equal the
// Go kernels' wherever those use the assembly exp (TestGELUTanhAVX512).

#include "exp_amd64.h"

// GELUCONSTS loads EXPCONSTS, 0.044715 into Z16 and −2·√(2/π) into Z15.
#define GELUCONSTS \
	EXPCONSTS \
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
	GELUCONSTS
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
	GELUCONSTS
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
