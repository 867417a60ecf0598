//go:build !purego

#include "textflag.h"

// BF16ROUND sets t to x's float32 lanes rounded to bfloat16 (to nearest even) in their
// high halves, with NaNs kept NaN (quiet bit set); Z10 = 1, Z11 = 0x7fff, Z13 = the
// quiet bit. It clobbers K2.
#define BF16ROUND(x, t) \
	VPSRLD $16, x, t \
	VPANDD Z10, t, t \
	VPADDD Z11, t, t \
	VPADDD x, t, t \
	VCMPPS $3, x, x, K2 \
	VPORD Z13, x, K2, t

// func bf16PairsAVX512(dst, src *float32, w, pairs int)
// dst word q·w+j = bf16(src[2q·w+j]) | bf16(src[(2q+1)·w+j])<<16, 16 lanes at a time,
// the last ones of each row masked.
TEXT ·bf16PairsAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ w+16(FP), BX
	MOVQ pairs+24(FP), CX
	MOVL $1, AX
	VPBROADCASTD AX, Z10
	MOVL $0x7fff, AX
	VPBROADCASTD AX, Z11
	MOVL $0xffff0000, AX
	VPBROADCASTD AX, Z12
	MOVL $0x00400000, AX
	VPBROADCASTD AX, Z13
	MOVL $0xffff, R13
	SHLQ $2, BX                     // bytes per row
	TESTQ CX, CX
	JZ done
qloop:
	LEAQ (SI)(BX*1), R11            // row 2q+1
	XORQ R10, R10                   // byte offset in the rows
jloop:
	MOVQ BX, R12
	SUBQ R10, R12
	SHRQ $2, R12                    // elements left
	BZHIL R12, R13, AX              // min(16, left) lanes
	KMOVW AX, K1
	VMOVDQU32.Z (SI)(R10*1), K1, Z0
	VMOVDQU32.Z (R11)(R10*1), K1, Z1
	BF16ROUND(Z0, Z2)
	BF16ROUND(Z1, Z3)
	VPSRLD $16, Z2, Z2
	VPANDD Z12, Z3, Z3
	VPORD Z3, Z2, Z2
	VMOVDQU32 Z2, K1, (DI)(R10*1)
	ADDQ $64, R10
	CMPQ R10, BX
	JLT jloop
	ADDQ BX, DI
	LEAQ (SI)(BX*2), SI
	DECQ CX
	JNZ qloop
done:
	VZEROUPPER
	RET
