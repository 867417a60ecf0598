// GEMM on tensor cores: C[M,N] = alpha·A[M,K]·B[N,K]ᵀ + beta·C, row-major, float32
// accumulation and output (a Linear layer's X·Wᵀ). One block of 256 threads (8
// warps, 2 along M by 4 along N) computes a 128x128 tile; each warp a 64x32 tile as
// 4x4 mma fragments. K is staged through two shared-memory buffers: the next tile
// is read from global memory into registers while the current one is multiplied.
// Shared rows are padded so the fragment reads are free of bank conflicts.
#include "common.cuh"

#define BM 128
#define BN 128
#define WM 64
#define WN 32

// gemm_f32_ref is the plain reference: one thread per output element, fp32 FMA.
KERNEL void gemm_f32_ref(float* C, const float* A, const float* B, int M, int N, int K, float alpha, float beta) {
	for (long e = gid(); e < (long)M * N; e += gstride()) {
		int i = (int)(e / N), j = (int)(e % N);
		float s = 0.f;
		for (int p = 0; p < K; p++) s += A[(long)i * K + p] * B[(long)j * K + p];
		C[e] = alpha * s + (beta != 0.f ? beta * C[e] : 0.f);
	}
}

// store_tile writes the warp's 64x32 accumulator tile, bounds-checked. Fragment
// element r of tile (mi, ni) is row g + 8·(r/2), column 2t + r%2.
DEVICE void store_tile(float* C, float acc[4][4][4], int M, int N, int row0, int col0, float alpha, float beta) {
	int lane = tid() & 31, g = lane >> 2, t = lane & 3;
	#pragma unroll
	for (int mi = 0; mi < 4; mi++)
		#pragma unroll
		for (int ni = 0; ni < 4; ni++)
			#pragma unroll
			for (int r = 0; r < 4; r++) {
				int i = row0 + mi * 16 + g + 8 * (r >> 1), j = col0 + ni * 8 + 2 * t + (r & 1);
				if (i < M && j < N) {
					long e = (long)i * N + j;
					C[e] = alpha * acc[mi][ni][r] + (beta != 0.f ? beta * C[e] : 0.f);
				}
			}
}

#define BK16 32   // bf16 elements of K per stage
#define LDS16 40  // padded row: 80 bytes, fragment words hit 32 distinct banks

// load_bf16 reads the block's rows [row0, row0+128) x [k0, k0+32) of X [rows, K] into
// regs: thread t takes row t/2, 16 elements from column 16·(t%2). Out of range is 0.
DEVICE void load_bf16(u32 regs[8], const u16* X, int rows, int K, int row0, int k0) {
	int r = row0 + (tid() >> 1), c = k0 + 16 * (tid() & 1);
	const u16* p = X + (long)r * K + c;
	if (r < rows && c + 16 <= K && (K & 7) == 0) {
		const u32* q = (const u32*)p; // 16-byte aligned: K and c are multiples of 8
		#pragma unroll
		for (int i = 0; i < 8; i++) regs[i] = q[i];
		return;
	}
	#pragma unroll
	for (int i = 0; i < 8; i++) {
		u32 lo = (r < rows && c + 2 * i < K) ? p[2 * i] : 0;
		u32 hi = (r < rows && c + 2 * i + 1 < K) ? p[2 * i + 1] : 0;
		regs[i] = lo | hi << 16;
	}
}

DEVICE void store_bf16(u16* S, const u32 regs[8]) {
	u32* q = (u32*)(S + (tid() >> 1) * LDS16 + 16 * (tid() & 1));
	#pragma unroll
	for (int i = 0; i < 8; i++) q[i] = regs[i];
}

KERNEL void gemm_bf16_tc(float* C, const u16* A, const u16* B, int M, int N, int K, float alpha, float beta) {
	SHARED __attribute__((aligned(16))) u16 As[2][BM * LDS16];
	SHARED __attribute__((aligned(16))) u16 Bs[2][BN * LDS16];
	int warp = tid() >> 5, lane = tid() & 31, g = lane >> 2, t = lane & 3;
	int wm = (warp >> 2) * WM, wn = (warp & 3) * WN; // the warp's tile in the block's
	int bm = ctaid_y() * BM, bn = ctaid_x() * BN;
	float acc[4][4][4];
	#pragma unroll
	for (int mi = 0; mi < 4; mi++)
		#pragma unroll
		for (int ni = 0; ni < 4; ni++)
			#pragma unroll
			for (int r = 0; r < 4; r++) acc[mi][ni][r] = 0.f;
	u32 ra[8], rb[8];
	load_bf16(ra, A, M, K, bm, 0);
	load_bf16(rb, B, N, K, bn, 0);
	store_bf16(As[0], ra);
	store_bf16(Bs[0], rb);
	sync_threads();
	int tiles = (K + BK16 - 1) / BK16;
	for (int kt = 0; kt < tiles; kt++) {
		int cur = kt & 1;
		if (kt + 1 < tiles) {
			load_bf16(ra, A, M, K, bm, (kt + 1) * BK16);
			load_bf16(rb, B, N, K, bn, (kt + 1) * BK16);
		}
		#pragma unroll
		for (int ks = 0; ks < BK16; ks += 16) {
			u32 fa[4][4], fb[4][2];
			#pragma unroll
			for (int mi = 0; mi < 4; mi++) {
				// A fragment: a0 (g, 2t), a1 (g+8, 2t), a2 (g, 2t+8), a3 (g+8, 2t+8), 2 bf16 each.
				const u16* s = As[cur] + (wm + mi * 16 + g) * LDS16 + ks + 2 * t;
				fa[mi][0] = *(const u32*)s;
				fa[mi][1] = *(const u32*)(s + 8 * LDS16);
				fa[mi][2] = *(const u32*)(s + 8);
				fa[mi][3] = *(const u32*)(s + 8 * LDS16 + 8);
			}
			#pragma unroll
			for (int ni = 0; ni < 4; ni++) {
				// B fragment (column n = g of the 8): b0 k = 2t, 2t+1; b1 k = 2t+8, 2t+9.
				const u16* s = Bs[cur] + (wn + ni * 8 + g) * LDS16 + ks + 2 * t;
				fb[ni][0] = *(const u32*)s;
				fb[ni][1] = *(const u32*)(s + 8);
			}
			#pragma unroll
			for (int mi = 0; mi < 4; mi++)
				#pragma unroll
				for (int ni = 0; ni < 4; ni++) mma_bf16(acc[mi][ni], fa[mi], fb[ni]);
		}
		if (kt + 1 < tiles) {
			store_bf16(As[cur ^ 1], ra);
			store_bf16(Bs[cur ^ 1], rb);
		}
		sync_threads();
	}
	store_tile(C, acc, M, N, bm + wm, bn + wn, alpha, beta);
}

#define BK32 16  // float32 elements of K per stage
#define LDS32 20 // padded row: fragment words hit 32 distinct banks

// load_f32 reads rows [row0, row0+128) x [k0, k0+16) of X [rows, K]: thread t takes
// row t/2, 8 elements from column 8·(t%2), rounded to tf32.
DEVICE void load_f32(u32 regs[8], const float* X, int rows, int K, int row0, int k0) {
	int r = row0 + (tid() >> 1), c = k0 + 8 * (tid() & 1);
	const float* p = X + (long)r * K + c;
	#pragma unroll
	for (int i = 0; i < 8; i++) regs[i] = (r < rows && c + i < K) ? tf32(p[i]) : 0u;
}

DEVICE void store_f32(u32* S, const u32 regs[8]) {
	u32* q = S + (tid() >> 1) * LDS32 + 8 * (tid() & 1);
	#pragma unroll
	for (int i = 0; i < 8; i++) q[i] = regs[i];
}

KERNEL void gemm_tf32_tc(float* C, const float* A, const float* B, int M, int N, int K, float alpha, float beta) {
	SHARED __attribute__((aligned(16))) u32 As[2][BM * LDS32];
	SHARED __attribute__((aligned(16))) u32 Bs[2][BN * LDS32];
	int warp = tid() >> 5, lane = tid() & 31, g = lane >> 2, t = lane & 3;
	int wm = (warp >> 2) * WM, wn = (warp & 3) * WN;
	int bm = ctaid_y() * BM, bn = ctaid_x() * BN;
	float acc[4][4][4];
	#pragma unroll
	for (int mi = 0; mi < 4; mi++)
		#pragma unroll
		for (int ni = 0; ni < 4; ni++)
			#pragma unroll
			for (int r = 0; r < 4; r++) acc[mi][ni][r] = 0.f;
	u32 ra[8], rb[8];
	load_f32(ra, A, M, K, bm, 0);
	load_f32(rb, B, N, K, bn, 0);
	store_f32(As[0], ra);
	store_f32(Bs[0], rb);
	sync_threads();
	int tiles = (K + BK32 - 1) / BK32;
	for (int kt = 0; kt < tiles; kt++) {
		int cur = kt & 1;
		if (kt + 1 < tiles) {
			load_f32(ra, A, M, K, bm, (kt + 1) * BK32);
			load_f32(rb, B, N, K, bn, (kt + 1) * BK32);
		}
		#pragma unroll
		for (int ks = 0; ks < BK32; ks += 8) {
			u32 fa[4][4], fb[4][2];
			#pragma unroll
			for (int mi = 0; mi < 4; mi++) {
				// A fragment: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4).
				const u32* s = As[cur] + (wm + mi * 16 + g) * LDS32 + ks + t;
				fa[mi][0] = s[0];
				fa[mi][1] = s[8 * LDS32];
				fa[mi][2] = s[4];
				fa[mi][3] = s[8 * LDS32 + 4];
			}
			#pragma unroll
			for (int ni = 0; ni < 4; ni++) {
				// B fragment (column n = g): b0 k = t, b1 k = t+4.
				const u32* s = Bs[cur] + (wn + ni * 8 + g) * LDS32 + ks + t;
				fb[ni][0] = s[0];
				fb[ni][1] = s[4];
			}
			#pragma unroll
			for (int mi = 0; mi < 4; mi++)
				#pragma unroll
				for (int ni = 0; ni < 4; ni++) mma_tf32(acc[mi][ni], fa[mi], fb[ni]);
		}
		if (kt + 1 < tiles) {
			store_f32(As[cur ^ 1], ra);
			store_f32(Bs[cur ^ 1], rb);
		}
		sync_threads();
	}
	store_tile(C, acc, M, N, bm + wm, bn + wn, alpha, beta);
}
