// Softmax over the last axis: one block (a multiple of 32 threads) per row.
#include "common.cuh"

KERNEL void softmax_forward(float* out, const float* x, int rows, int C) {
	SHARED float sh[33];
	int r = ctaid_x();
	if (r >= rows) return;
	const float* xr = x + (long)r * C;
	float* o = out + (long)r * C;
	float m = NEG_INF;
	for (int i = tid(); i < C; i += ntid()) m = fmaxf_(m, xr[i]);
	m = block_max(m, sh);
	float s = 0.f;
	for (int i = tid(); i < C; i += ntid()) s += fexp(xr[i] - m);
	float inv = 1.f / block_sum(s, sh);
	for (int i = tid(); i < C; i += ntid()) o[i] = fexp(xr[i] - m) * inv;
}

// softmax_backward: dx += y·(dout − Σ y·dout), from the saved output y.
KERNEL void softmax_backward(float* dx, const float* dout, const float* y, int rows, int C) {
	SHARED float sh[33];
	int r = ctaid_x();
	if (r >= rows) return;
	long base = (long)r * C;
	float s = 0.f;
	for (int i = tid(); i < C; i += ntid()) s += y[base + i] * dout[base + i];
	s = block_sum(s, sh);
	for (int i = tid(); i < C; i += ntid()) dx[base + i] += y[base + i] * (dout[base + i] - s);
}
