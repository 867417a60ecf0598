//go:build !purego

#include "textflag.h"

// The AVX-512 row kernels of rows.go. n is a multiple of 16. Float64 work converts 8
// float32 lanes at a time (VCVTPS2PD) and rounds back once (VCVTPD2PS). The
// elementwise kernels do the Go loops' operations in their order, without FMA; the
// reductions keep 2 accumulators of 8 lanes each and fold them at the end.

// HSUMZ0 sets X0 to the sum of Z0's 8 float64 lanes (clobbers Z1).
#define HSUMZ0 \
	VEXTRACTF64X4 $1, Z0, Y1 \
	VADDPD Y1, Y0, Y0 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPD X1, X0, X0 \
	VPERMILPD $1, X0, X1 \
	VADDSD X1, X0, X0

// func sum64AVX512(x *float32, n int) float64
TEXT ·sum64AVX512(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $4, CX
	VXORPD Z0, Z0, Z0
	VXORPD Z1, Z1, Z1
	TESTQ CX, CX
	JZ sdone
sloop:
	VCVTPS2PD (SI), Z2
	VCVTPS2PD 32(SI), Z3
	VADDPD Z2, Z0, Z0
	VADDPD Z3, Z1, Z1
	ADDQ $64, SI
	DECQ CX
	JNZ sloop
sdone:
	VADDPD Z1, Z0, Z0
	HSUMZ0
	MOVSD X0, ret+16(FP)
	VZEROUPPER
	RET

// func centredSq64AVX512(x *float32, n int, mu float64) float64
// Σ (x−mu)², the squares accumulated with FMA.
TEXT ·centredSq64AVX512(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSD mu+16(FP), Z4
	SHRQ $4, CX
	VXORPD Z0, Z0, Z0
	VXORPD Z1, Z1, Z1
	TESTQ CX, CX
	JZ cdone
cloop:
	VCVTPS2PD (SI), Z2
	VCVTPS2PD 32(SI), Z3
	VSUBPD Z4, Z2, Z2
	VSUBPD Z4, Z3, Z3
	VFMADD231PD Z2, Z2, Z0
	VFMADD231PD Z3, Z3, Z1
	ADDQ $64, SI
	DECQ CX
	JNZ cloop
cdone:
	VADDPD Z1, Z0, Z0
	HSUMZ0
	MOVSD X0, ret+24(FP)
	VZEROUPPER
	RET

// func gradSums64AVX512(dout, x, w *float32, n, wStep int, mu float64) (s1, s2 float64)
// s1 = Σ d, s2 = Σ d·(x−mu) with d = g·w.
TEXT ·gradSums64AVX512(SB), NOSPLIT, $0-64
	MOVQ dout+0(FP), DX
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), R8
	MOVQ n+24(FP), CX
	MOVQ wStep+32(FP), R9
	VBROADCASTSD mu+40(FP), Z4
	SHRQ $4, CX
	VXORPD Z0, Z0, Z0
	VXORPD Z1, Z1, Z1
	VXORPD Z5, Z5, Z5
	VXORPD Z6, Z6, Z6
	TESTQ CX, CX
	JZ gdone
gloop:
	VCVTPS2PD (DX), Z2
	VCVTPS2PD (R8), Z3
	VMULPD Z3, Z2, Z2          // d
	VCVTPS2PD (SI), Z3
	VSUBPD Z4, Z3, Z3
	VADDPD Z2, Z0, Z0
	VFMADD231PD Z3, Z2, Z5
	ADDQ R9, R8
	VCVTPS2PD 32(DX), Z2
	VCVTPS2PD (R8), Z3
	VMULPD Z3, Z2, Z2
	VCVTPS2PD 32(SI), Z3
	VSUBPD Z4, Z3, Z3
	VADDPD Z2, Z1, Z1
	VFMADD231PD Z3, Z2, Z6
	ADDQ R9, R8
	ADDQ $64, DX
	ADDQ $64, SI
	DECQ CX
	JNZ gloop
gdone:
	VADDPD Z6, Z5, Z7
	VADDPD Z1, Z0, Z0
	HSUMZ0
	MOVSD X0, s1+48(FP)
	VMOVAPD Z7, Z0
	HSUMZ0
	MOVSD X0, s2+56(FP)
	VZEROUPPER
	RET

// func normRowAVX512(out, x, w, b *float32, n, wStep, bStep int, mu, r float64)
// out = float32(((x−mu)·r)·w + b).
TEXT ·normRowAVX512(SB), NOSPLIT, $0-72
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), R8
	MOVQ b+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ wStep+40(FP), R10
	MOVQ bStep+48(FP), R11
	VBROADCASTSD mu+56(FP), Z4
	VBROADCASTSD r+64(FP), Z5
	SHRQ $3, CX
	JZ ndone
nloop:
	VCVTPS2PD (SI), Z0
	VSUBPD Z4, Z0, Z0
	VMULPD Z5, Z0, Z0
	VCVTPS2PD (R8), Z1
	VMULPD Z1, Z0, Z0
	VCVTPS2PD (R9), Z2
	VADDPD Z2, Z0, Z0
	VCVTPD2PS Z0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ R10, R8
	ADDQ R11, R9
	DECQ CX
	JNZ nloop
ndone:
	VZEROUPPER
	RET

// func normDxRowAVX512(dx, dout, x, w *float32, n, wStep int, mu, r, a, bb float64)
// dx += float32(r·((g·w − a) − ((x−mu)·r)·bb)).
TEXT ·normDxRowAVX512(SB), NOSPLIT, $0-80
	MOVQ dx+0(FP), DI
	MOVQ dout+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ w+24(FP), R8
	MOVQ n+32(FP), CX
	MOVQ wStep+40(FP), R10
	VBROADCASTSD mu+48(FP), Z4
	VBROADCASTSD r+56(FP), Z5
	VBROADCASTSD a+64(FP), Z6
	VBROADCASTSD bb+72(FP), Z7
	SHRQ $3, CX
	JZ xdone
xloop:
	VCVTPS2PD (DX), Z0
	VCVTPS2PD (R8), Z1
	VMULPD Z1, Z0, Z0
	VSUBPD Z6, Z0, Z0          // d − a
	VCVTPS2PD (SI), Z2
	VSUBPD Z4, Z2, Z2
	VMULPD Z5, Z2, Z2
	VMULPD Z7, Z2, Z2          // ((x−mu)·r)·bb
	VSUBPD Z2, Z0, Z0
	VMULPD Z5, Z0, Z0
	VCVTPD2PS Z0, Y0
	VADDPS (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DX
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ R10, R8
	DECQ CX
	JNZ xloop
xdone:
	VZEROUPPER
	RET

// func normPartRowAVX512(pw, pb *float64, dout, x *float32, n, pbStep int, mu, r float64)
// pw += (g·(x−mu))·r; pb += g (pb stays put when pbStep is 0).
TEXT ·normPartRowAVX512(SB), NOSPLIT, $0-64
	MOVQ pw+0(FP), DI
	MOVQ pb+8(FP), R8
	MOVQ dout+16(FP), DX
	MOVQ x+24(FP), SI
	MOVQ n+32(FP), CX
	MOVQ pbStep+40(FP), R10
	VBROADCASTSD mu+48(FP), Z4
	VBROADCASTSD r+56(FP), Z5
	SHRQ $3, CX
	JZ pdone
ploop:
	VCVTPS2PD (DX), Z0
	VCVTPS2PD (SI), Z1
	VSUBPD Z4, Z1, Z1
	VMULPD Z1, Z0, Z1
	VMULPD Z5, Z1, Z1
	VADDPD (DI), Z1, Z1
	VMOVUPD Z1, (DI)
	VADDPD (R8), Z0, Z0
	VMOVUPD Z0, (R8)
	ADDQ $32, DX
	ADDQ $32, SI
	ADDQ $64, DI
	ADDQ R10, R8
	DECQ CX
	JNZ ploop
pdone:
	VZEROUPPER
	RET

// func axpyAVX512(d, x *float32, n int, a float32)
// d += a·x.
TEXT ·axpyAVX512(SB), NOSPLIT, $0-28
	MOVQ d+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS a+24(FP), Z1
	SHRQ $4, CX
	JZ adone
aloop:
	VMULPS (SI), Z1, Z0
	VADDPS (DI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ aloop
adone:
	VZEROUPPER
	RET

// func adamWAVX512(p, grad, m, v *float32, n int, b1, b2, eps, decay, stepSize, rc2 float32)
// m = b1·m + (1−b1)·g; v = b2·v + ((1−b2)·g)·g; p = p·decay − (stepSize·m)/(√v·rc2 + eps).
TEXT ·adamWAVX512(SB), NOSPLIT, $0-64
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), DX
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	VBROADCASTSS b1+40(FP), Z10
	VBROADCASTSS b2+44(FP), Z11
	VBROADCASTSS eps+48(FP), Z12
	VBROADCASTSS decay+52(FP), Z13
	VBROADCASTSS stepSize+56(FP), Z14
	VBROADCASTSS rc2+60(FP), Z15
	MOVL $0x3f800000, AX // 1
	VPBROADCASTD AX, Z7
	VSUBPS Z10, Z7, Z8   // 1 − b1
	VSUBPS Z11, Z7, Z9   // 1 − b2
	SHRQ $4, CX
	JZ wdone
wloop:
	VMOVUPS (DX), Z0     // g
	VMULPS (R8), Z10, Z1
	VMULPS Z8, Z0, Z2
	VADDPS Z2, Z1, Z1    // m
	VMULPS (R9), Z11, Z3
	VMULPS Z9, Z0, Z4
	VMULPS Z0, Z4, Z4
	VADDPS Z4, Z3, Z3    // v
	VMOVUPS Z1, (R8)
	VMOVUPS Z3, (R9)
	VSQRTPS Z3, Z5
	VMULPS Z15, Z5, Z5
	VADDPS Z12, Z5, Z5   // √v·rc2 + eps
	VMULPS Z14, Z1, Z6
	VDIVPS Z5, Z6, Z6    // (stepSize·m)/(…)
	VMULPS (DI), Z13, Z2
	VSUBPS Z6, Z2, Z2
	VMOVUPS Z2, (DI)
	ADDQ $64, DI
	ADDQ $64, DX
	ADDQ $64, R8
	ADDQ $64, R9
	DECQ CX
	JNZ wloop
wdone:
	VZEROUPPER
	RET

// BINLOOP is the loop of binaryRowAVX512 for one operation: o = x OP y, 16 lanes at a
// time; x and y advance by R10 and R11 bytes (64, or 0 for a broadcast operand).
#define BINLOOP(OP, loop) \
loop: \
	VMOVUPS (SI), Z0 \
	OP (DX), Z0, Z0 \
	VMOVUPS Z0, (DI) \
	ADDQ $64, DI \
	ADDQ R10, SI \
	ADDQ R11, DX \
	DECQ CX \
	JNZ loop \
	VZEROUPPER \
	RET

// func binaryRowAVX512(op int, o, x, y *float32, n, xStep, yStep int)
// o = x op y for op 0 (add), 1 (sub), 2 (mul), 3 (div).
TEXT ·binaryRowAVX512(SB), NOSPLIT, $0-56
	MOVQ op+0(FP), AX
	MOVQ o+8(FP), DI
	MOVQ x+16(FP), SI
	MOVQ y+24(FP), DX
	MOVQ n+32(FP), CX
	MOVQ xStep+40(FP), R10
	MOVQ yStep+48(FP), R11
	SHRQ $4, CX
	JZ bdone
	CMPQ AX, $1
	JEQ bsub
	CMPQ AX, $2
	JEQ bmul
	CMPQ AX, $3
	JEQ bdiv
	BINLOOP(VADDPS, badd)
bsub:
	BINLOOP(VSUBPS, bsubloop)
bmul:
	BINLOOP(VMULPS, bmulloop)
bdiv:
	BINLOOP(VDIVPS, bdivloop)
bdone:
	RET

// func mulAddAVX512(o, x, y, z *float32, n int, c float32)
// o = x·(y + c) + z, each operation rounded to float32 (c = −0 adds nothing, exactly).
TEXT ·mulAddAVX512(SB), NOSPLIT, $0-44
	MOVQ o+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ z+24(FP), R8
	MOVQ n+32(FP), CX
	VBROADCASTSS c+40(FP), Z3
	SHRQ $4, CX
	JZ madone
maloop:
	VADDPS (DX), Z3, Z0
	VMULPS (SI), Z0, Z0
	VADDPS (R8), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, DI
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R8
	DECQ CX
	JNZ maloop
madone:
	VZEROUPPER
	RET

// func mulAccAVX512(d, x, y *float32, n int, c float32)
// d += x·(y + c), each operation rounded to float32.
TEXT ·mulAccAVX512(SB), NOSPLIT, $0-36
	MOVQ d+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS c+32(FP), Z3
	SHRQ $4, CX
	JZ mcdone
mcloop:
	VADDPS (DX), Z3, Z0
	VMULPS (SI), Z0, Z0
	VADDPS (DI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, DI
	ADDQ $64, SI
	ADDQ $64, DX
	DECQ CX
	JNZ mcloop
mcdone:
	VZEROUPPER
	RET

// func accMul64AVX512(a *float64, x, y *float32, n int, mul bool)
// a += float64(x·y) (the product rounded to float32) when mul, else a += float64(x).
TEXT ·accMul64AVX512(SB), NOSPLIT, $0-33
	MOVQ a+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ n+24(FP), CX
	MOVBLZX mul+32(FP), AX
	SHRQ $3, CX
	JZ acdone
	TESTL AX, AX
	JZ acloop
amloop:
	VMOVUPS (SI), Y0
	VMULPS (DX), Y0, Y0
	VCVTPS2PD Y0, Z0
	VADDPD (DI), Z0, Z0
	VMOVUPD Z0, (DI)
	ADDQ $64, DI
	ADDQ $32, SI
	ADDQ $32, DX
	DECQ CX
	JNZ amloop
	VZEROUPPER
	RET
acloop:
	VCVTPS2PD (SI), Z0
	VADDPD (DI), Z0, Z0
	VMOVUPD Z0, (DI)
	ADDQ $64, DI
	ADDQ $32, SI
	DECQ CX
	JNZ acloop
acdone:
	VZEROUPPER
	RET
