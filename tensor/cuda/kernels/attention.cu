// Fused scaled-dot-product attention, flash style: keys and values stream through
// shared memory in tiles of KT rows and each query keeps a running maximum, sum and
// output (online softmax), so the Tq×Tk matrix never exists. Layout as the CPU op:
// q [B, Tq, H·D], k and v [B, Tk, H·D], out [B, Tq, H·D], lse [B, H, Tq]; mask is
// null or an additive [B, Tk] key mask; causal lets query i see keys j <= i.
//
// One warp per query row, QB = 8 rows per block (256 threads), grid (⌈Tq/8⌉, H, B);
// lane l holds elements l, l+32, ... of the row, so D <= 32·DL. Dynamic shared
// memory: 2·KT·D floats. Scores are fp32 on CUDA cores, not tensor cores.
#include "common.cuh"

#define QB 8
#define KT 32
#define DL 8 // D <= 256

// load_kv copies key/value rows [j0, j0+KT) of head h into shared memory.
DEVICE void load_kv(float* Ks, float* Vs, const float* k, const float* v, long kvBase, int HD, int Tk, int D, int j0) {
	for (int e = tid(); e < KT * D; e += ntid()) {
		int j = e / D, d = e % D;
		bool in = j0 + j < Tk;
		Ks[e] = in ? k[kvBase + (long)(j0 + j) * HD + d] : 0.f;
		Vs[e] = in ? v[kvBase + (long)(j0 + j) * HD + d] : 0.f;
	}
}

// score is q·k_j·scale + mask_j, summed across the warp (every lane gets it), or
// -Inf where causal hides key j from query i.
DEVICE float score(const float* qr, const float* Kj, int D, float scale, const float* mask, long maskBase, int i, int j,
                   int causal) {
	float s = 0.f;
#pragma unroll
	for (int u = 0; u < DL; u++) {
		int d = (tid() & 31) + 32 * u;
		if (d < D) s += qr[u] * Kj[d];
	}
	s = warp_sum(s) * scale;
	if (mask) s += mask[maskBase + j];
	if (causal && j > i) s = NEG_INF;
	return s;
}

KERNEL void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const float* mask,
                              int B, int H, int Tq, int Tk, int D, float scale, int causal) {
	DYNAMIC_SHARED(float, smem);
	float *Ks = smem, *Vs = smem + KT * D;
	int b = ctaid_z(), h = ctaid_y(), lane = tid() & 31;
	int i = ctaid_x() * QB + (tid() >> 5); // this warp's query
	int HD = H * D;
	bool active = i < Tq;
	long qBase = ((long)b * Tq + i) * HD + (long)h * D, kvBase = (long)b * Tk * HD + (long)h * D;
	float qr[DL], acc[DL];
#pragma unroll
	for (int u = 0; u < DL; u++) {
		int d = lane + 32 * u;
		qr[u] = active && d < D ? q[qBase + d] : 0.f;
		acc[u] = 0.f;
	}
	float m = NEG_INF, l = 0.f;
	int kend = causal ? (Tk < (ctaid_x() + 1) * QB ? Tk : (ctaid_x() + 1) * QB) : Tk; // uniform over the block
	for (int j0 = 0; j0 < kend; j0 += KT) {
		load_kv(Ks, Vs, k, v, kvBase, HD, Tk, D, j0);
		sync_threads();
		for (int jj = 0; active && jj < KT && j0 + jj < kend; jj++) { // warp-uniform
			float s = score(qr, Ks + jj * D, D, scale, mask, (long)b * Tk, i, j0 + jj, causal);
			float mNew = fmaxf_(m, s);
			if (mNew == NEG_INF) continue; // nothing visible yet: contributes nothing
			float corr = fexp(m - mNew), p = fexp(s - mNew);
			l = l * corr + p;
#pragma unroll
			for (int u = 0; u < DL; u++) {
				int d = lane + 32 * u;
				if (d < D) acc[u] = acc[u] * corr + p * Vs[jj * D + d];
			}
			m = mNew;
		}
		sync_threads();
	}
	if (!active) return;
	float inv = l > 0.f ? 1.f / l : 0.f; // a fully masked row gets output 0, lse −Inf
#pragma unroll
	for (int u = 0; u < DL; u++) {
		int d = lane + 32 * u;
		if (d < D) out[qBase + d] = acc[u] * inv;
	}
	if (lane == 0) lse[((long)b * H + h) * Tq + i] = l > 0.f ? m + flog(l) : NEG_INF;
}

// attention_backward recomputes p_ij = exp(s_ij − lse_i) from the saved log-sum-exp
// and accumulates, with Δ_i = dO_i·O_i and ds = p·(dO_i·v_j − Δ_i):
// dq_i += scale·Σ_j ds·k_j; dk_j += scale·ds·q_i; dv_j += p·dO_i (dk, dv by atomics).
KERNEL void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                               const float* v, const float* out, const float* lse, const float* mask, int B, int H, int Tq,
                               int Tk, int D, float scale, int causal) {
	DYNAMIC_SHARED(float, smem);
	float *Ks = smem, *Vs = smem + KT * D;
	int b = ctaid_z(), h = ctaid_y(), lane = tid() & 31;
	int i = ctaid_x() * QB + (tid() >> 5);
	int HD = H * D;
	bool active = i < Tq;
	long qBase = ((long)b * Tq + i) * HD + (long)h * D, kvBase = (long)b * Tk * HD + (long)h * D;
	float L = active ? lse[((long)b * H + h) * Tq + i] : NEG_INF;
	bool live = active && L != NEG_INF; // a fully masked row has zero gradients
	float qr[DL], gr[DL], dqr[DL], delta = 0.f;
#pragma unroll
	for (int u = 0; u < DL; u++) {
		int d = lane + 32 * u;
		bool in = live && d < D;
		qr[u] = in ? q[qBase + d] : 0.f;
		gr[u] = in ? dout[qBase + d] : 0.f;
		dqr[u] = 0.f;
		delta += in ? gr[u] * out[qBase + d] : 0.f;
	}
	delta = warp_sum(delta);
	int kend = causal ? (Tk < (ctaid_x() + 1) * QB ? Tk : (ctaid_x() + 1) * QB) : Tk;
	for (int j0 = 0; j0 < kend; j0 += KT) {
		load_kv(Ks, Vs, k, v, kvBase, HD, Tk, D, j0);
		sync_threads();
		for (int jj = 0; live && jj < KT && j0 + jj < kend; jj++) {
			int j = j0 + jj;
			float s = score(qr, Ks + jj * D, D, scale, mask, (long)b * Tk, i, j, causal);
			if (s == NEG_INF) continue;
			float p = fexp(s - L), dp = 0.f;
#pragma unroll
			for (int u = 0; u < DL; u++) {
				int d = lane + 32 * u;
				if (d < D) dp += gr[u] * Vs[jj * D + d];
			}
			float ds = p * (warp_sum(dp) - delta) * scale;
#pragma unroll
			for (int u = 0; u < DL; u++) {
				int d = lane + 32 * u;
				if (d < D) {
					dqr[u] += ds * Ks[jj * D + d];
					atomic_add(&dk[kvBase + (long)j * HD + d], ds * qr[u]);
					atomic_add(&dv[kvBase + (long)j * HD + d], p * gr[u]);
				}
			}
		}
		sync_threads();
	}
	if (!live) return;
#pragma unroll
	for (int u = 0; u < DL; u++) {
		int d = lane + 32 * u;
		if (d < D) dq[qBase + d] += dqr[u];
	}
}
