// common.cuh: the few device facilities difftune's kernels use, declared without
// the CUDA headers (clang -nocudainc) through clang's NVVM builtins and PTX inline
// assembly. Every kernel file includes it; nothing else in a kernel touches
// hardware directly, so the same kernels can be compiled for a CPU emulation.
#pragma once

typedef unsigned int u32;
typedef unsigned short u16;

#define KERNEL extern "C" __attribute__((global))
#define DEVICE static __attribute__((device, always_inline)) inline
#define SHARED __attribute__((shared))
#define DYNAMIC_SHARED(type, name) extern __attribute__((shared)) type name[]

#define NEG_INF (-__builtin_inff())
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

DEVICE int tid() { return __nvvm_read_ptx_sreg_tid_x(); }
DEVICE int ntid() { return __nvvm_read_ptx_sreg_ntid_x(); }
DEVICE int ctaid_x() { return __nvvm_read_ptx_sreg_ctaid_x(); }
DEVICE int ctaid_y() { return __nvvm_read_ptx_sreg_ctaid_y(); }
DEVICE int ctaid_z() { return __nvvm_read_ptx_sreg_ctaid_z(); }
DEVICE int nctaid_x() { return __nvvm_read_ptx_sreg_nctaid_x(); }
DEVICE void sync_threads() { __syncthreads(); }

// gid and gstride drive grid-stride loops over n elements.
DEVICE long gid() { return (long)ctaid_x() * ntid() + tid(); }
DEVICE long gstride() { return (long)nctaid_x() * ntid(); }

// exp2f and log2f from the special-function unit: relative error about 2^-22.
DEVICE float fexp(float x) { return __nvvm_ex2_approx_f(x * LOG2E); }
DEVICE float flog(float x) { return __nvvm_lg2_approx_f(x) * LN2; }
DEVICE float fsqrt(float x) { return __nvvm_sqrt_rn_f(x); }
DEVICE float fmaxf_(float a, float b) { return __nvvm_fmax_f(a, b); }

// shfl_xor exchanges v with lane ^ mask across the whole (converged) warp.
DEVICE float shfl_xor(float v, int mask) { return __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, mask, 0x1f); }

DEVICE void atomic_add(float* p, float v) { __nvvm_atom_add_gen_f(p, v); }

// bf16 is the upper half of a float32.
DEVICE float bf16_to_f32(u16 h) { return __builtin_bit_cast(float, (u32)h << 16); }

// tf32 rounds a float32 to tf32 (round to nearest, ties away), as cuBLAS does.
DEVICE u32 tf32(float x) {
	u32 r;
	asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
	return r;
}

// mma_bf16 is D = A·B + D for one warp: A 16x16 bf16 (4 regs), B 16x8 bf16 (2 regs),
// D 16x8 f32 (4 regs), in the fragment layouts of PTX's mma.m16n8k16.
DEVICE void mma_bf16(float* d, const u32* a, const u32* b) {
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
	             : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// mma_tf32 is D = A·B + D for one warp: A 16x8 tf32 (4 regs), B 8x8 tf32 (2 regs),
// D 16x8 f32 (4 regs), in the fragment layouts of PTX's mma.m16n8k8.
DEVICE void mma_tf32(float* d, const u32* a, const u32* b) {
	asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
	             : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

DEVICE float warp_sum(float v) {
	for (int m = 16; m > 0; m >>= 1) v += shfl_xor(v, m);
	return v;
}

DEVICE float warp_max(float v) {
	for (int m = 16; m > 0; m >>= 1) v = fmaxf_(v, shfl_xor(v, m));
	return v;
}

// block_sum returns the sum of v over the block to every thread. sh holds 33
// floats; the block size is a multiple of 32. It ends with a barrier, so sh may be
// reused at once.
DEVICE float block_sum(float v, float* sh) {
	int lane = tid() & 31, w = tid() >> 5, nw = ntid() >> 5;
	v = warp_sum(v);
	if (lane == 0) sh[w] = v;
	sync_threads();
	if (w == 0) {
		v = warp_sum(lane < nw ? sh[lane] : 0.f);
		if (lane == 0) sh[32] = v;
	}
	sync_threads();
	v = sh[32];
	sync_threads();
	return v;
}

// block_max is block_sum for the maximum.
DEVICE float block_max(float v, float* sh) {
	int lane = tid() & 31, w = tid() >> 5, nw = ntid() >> 5;
	v = warp_max(v);
	if (lane == 0) sh[w] = v;
	sync_threads();
	if (w == 0) {
		v = warp_max(lane < nw ? sh[lane] : NEG_INF);
		if (lane == 0) sh[32] = v;
	}
	sync_threads();
	v = sh[32];
	sync_threads();
	return v;
}
