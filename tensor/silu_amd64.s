//go:build !purego

#include "textflag.h"
#include "exp_amd64.h"

// The SiLU kernels of activation.go, 16 lanes at a time, for n a multiple of 16: the
// Go kernels' operations in their order (no FMA outside the exponential), with
// expShiftAVX512's exponential, so the results equal the Go kernels' wherever those use
// the assembly exp (TestSiLUAVX512).

// func siluAVX512(out, x *float32, n int)
// out = x·(1/(1 + exp(−x))).
TEXT ·siluAVX512(SB), NOSPLIT, $0-24
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	EXPCONSTS
	MOVL $0x80000000, AX
	VPBROADCASTD AX, Z14
	SHRQ $4, CX
	JZ fdone
floop:
	VMOVUPS (SI), Z0
	VPXORD Z14, Z0, Z1         // −x
	EXPZ1
	VADDPS Z21, Z4, Z6
	VDIVPS Z6, Z21, Z6         // s = 1/(1+e)
	VMULPS Z6, Z0, Z6
	VMOVUPS Z6, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ floop
fdone:
	VZEROUPPER
	RET

// func siluBackwardAVX512(dx, dout, x *float32, n int)
// dx += (dout·s)·(1 + x·(1 − s)), s = 1/(1 + exp(−x)).
TEXT ·siluBackwardAVX512(SB), NOSPLIT, $0-32
	MOVQ dx+0(FP), DI
	MOVQ dout+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ n+24(FP), CX
	EXPCONSTS
	MOVL $0x80000000, AX
	VPBROADCASTD AX, Z14
	SHRQ $4, CX
	JZ bdone
bloop:
	VMOVUPS (SI), Z0
	VPXORD Z14, Z0, Z1
	EXPZ1
	VADDPS Z21, Z4, Z6
	VDIVPS Z6, Z21, Z6         // s
	VSUBPS Z6, Z21, Z7         // 1 − s
	VMULPS Z7, Z0, Z7
	VADDPS Z21, Z7, Z7         // 1 + x·(1 − s)
	VMULPS (DX), Z6, Z8        // dout·s
	VMULPS Z7, Z8, Z8
	VADDPS (DI), Z8, Z8
	VMOVUPS Z8, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ bloop
bdone:
	VZEROUPPER
	RET
