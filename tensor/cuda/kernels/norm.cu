// Normalisations, forward next to backward (llm.c order). One block (a multiple of
// 32 threads) per row or per (sample, group). Forward caches mean and 1/std;
// backward accumulates into dx, dw and db, any of which may be null, as may w and b.
#include "common.cuh"

// layernorm_forward normalises each row of x [rows, C]: out = (x − μ)·rstd·w + b.
KERNEL void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w, const float* b,
                              int rows, int C, float eps) {
	SHARED float sh[33];
	int r = ctaid_x();
	if (r >= rows) return;
	const float* xr = x + (long)r * C;
	float s = 0.f;
	for (int i = tid(); i < C; i += ntid()) s += xr[i];
	float mu = block_sum(s, sh) / C;
	float q = 0.f;
	for (int i = tid(); i < C; i += ntid()) q += (xr[i] - mu) * (xr[i] - mu);
	float rs = 1.f / fsqrt(block_sum(q, sh) / C + eps);
	float* o = out + (long)r * C;
	for (int i = tid(); i < C; i += ntid()) {
		float y = (xr[i] - mu) * rs;
		o[i] = (w ? y * w[i] : y) + (b ? b[i] : 0.f);
	}
	if (tid() == 0) {
		mean[r] = mu;
		rstd[r] = rs;
	}
}

// layernorm_backward: with x̂ = (x − μ)·rstd and dx̂ = dout·w,
// dx += rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)); dw += Σ dout·x̂; db += Σ dout.
KERNEL void layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x, const float* w,
                               const float* mean, const float* rstd, int rows, int C) {
	SHARED float sh[33];
	int r = ctaid_x();
	if (r >= rows) return;
	long base = (long)r * C;
	float mu = mean[r], rs = rstd[r];
	float a = 0.f, bb = 0.f;
	for (int i = tid(); i < C; i += ntid()) {
		float xh = (x[base + i] - mu) * rs, g = dout[base + i];
		float dxh = w ? g * w[i] : g;
		a += dxh;
		bb += dxh * xh;
		if (dw) atomic_add(&dw[i], g * xh);
		if (db) atomic_add(&db[i], g);
	}
	if (!dx) return; // uniform over the block: no barrier is skipped by some threads only
	a = block_sum(a, sh) / C;
	bb = block_sum(bb, sh) / C;
	for (int i = tid(); i < C; i += ntid()) {
		float xh = (x[base + i] - mu) * rs, g = dout[base + i];
		float dxh = w ? g * w[i] : g;
		dx[base + i] += rs * (dxh - a - xh * bb);
	}
}

// groupnorm_forward normalises x [N, C, HW] over each group of C/G channels and all
// positions (block (n, g) = ctaid_x), then applies per-channel w and b.
KERNEL void groupnorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w, const float* b,
                              int N, int C, int HW, int G, float eps) {
	SHARED float sh[33];
	int ng = ctaid_x();
	if (ng >= N * G) return;
	int Cg = C / G, c0 = (ng % G) * Cg;
	long n = (long)Cg * HW, base = (long)ng * n; // a group's channels are contiguous in NCHW
	float s = 0.f;
	for (long i = tid(); i < n; i += ntid()) s += x[base + i];
	float mu = block_sum(s, sh) / n;
	float q = 0.f;
	for (long i = tid(); i < n; i += ntid()) q += (x[base + i] - mu) * (x[base + i] - mu);
	float rs = 1.f / fsqrt(block_sum(q, sh) / n + eps);
	for (long i = tid(); i < n; i += ntid()) {
		int c = c0 + (int)(i / HW);
		float y = (x[base + i] - mu) * rs;
		out[base + i] = (w ? y * w[c] : y) + (b ? b[c] : 0.f);
	}
	if (tid() == 0) {
		mean[ng] = mu;
		rstd[ng] = rs;
	}
}

// groupnorm_backward is layernorm_backward over a group; dw and db sum per channel
// in the block, then one atomic add per channel and block.
KERNEL void groupnorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x, const float* w,
                               const float* mean, const float* rstd, int N, int C, int HW, int G) {
	SHARED float sh[33];
	int ng = ctaid_x();
	if (ng >= N * G) return;
	int Cg = C / G, c0 = (ng % G) * Cg;
	long n = (long)Cg * HW, base = (long)ng * n;
	float mu = mean[ng], rs = rstd[ng];
	float a = 0.f, bb = 0.f;
	for (int ci = 0; ci < Cg; ci++) {
		float wc = w ? w[c0 + ci] : 1.f, sw = 0.f, sb = 0.f;
		long cb = base + (long)ci * HW;
		for (int i = tid(); i < HW; i += ntid()) {
			float xh = (x[cb + i] - mu) * rs, g = dout[cb + i];
			sw += g * xh;
			sb += g;
		}
		a += wc * sb;  // Σ dx̂ over the channel
		bb += wc * sw; // Σ dx̂·x̂ over the channel
		if (dw || db) {
			sw = block_sum(sw, sh);
			sb = block_sum(sb, sh);
			if (tid() == 0 && dw) atomic_add(&dw[c0 + ci], sw);
			if (tid() == 0 && db) atomic_add(&db[c0 + ci], sb);
		}
	}
	if (!dx) return;
	a = block_sum(a, sh) / n;
	bb = block_sum(bb, sh) / n;
	for (long i = tid(); i < n; i += ntid()) {
		int c = c0 + (int)(i / HW);
		float xh = (x[base + i] - mu) * rs, g = dout[base + i];
		float dxh = w ? g * w[c] : g;
		dx[base + i] += rs * (dxh - a - xh * bb);
	}
}

// rmsnorm_forward: out = x·rstd·w with rstd = 1/√(mean(x²) + eps).
KERNEL void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int rows, int C, float eps) {
	SHARED float sh[33];
	int r = ctaid_x();
	if (r >= rows) return;
	long base = (long)r * C;
	float q = 0.f;
	for (int i = tid(); i < C; i += ntid()) q += x[base + i] * x[base + i];
	float rs = 1.f / fsqrt(block_sum(q, sh) / C + eps);
	for (int i = tid(); i < C; i += ntid()) out[base + i] = w ? x[base + i] * rs * w[i] : x[base + i] * rs;
	if (tid() == 0) rstd[r] = rs;
}

// rmsnorm_backward: with x̂ = x·rstd and dx̂ = dout·w,
// dx += rstd·(dx̂ − x̂·mean(dx̂·x̂)); dw += Σ dout·x̂.
KERNEL void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                             int rows, int C) {
	SHARED float sh[33];
	int r = ctaid_x();
	if (r >= rows) return;
	long base = (long)r * C;
	float rs = rstd[r], bb = 0.f;
	for (int i = tid(); i < C; i += ntid()) {
		float xh = x[base + i] * rs, g = dout[base + i];
		bb += (w ? g * w[i] : g) * xh;
		if (dw) atomic_add(&dw[i], g * xh);
	}
	if (!dx) return;
	bb = block_sum(bb, sh) / C;
	for (int i = tid(); i < C; i += ntid()) {
		float xh = x[base + i] * rs, g = dout[base + i];
		dx[base + i] += rs * ((w ? g * w[i] : g) - xh * bb);
	}
}
