// Elementwise kernels: grid-stride loops over n float32 elements. Backward kernels
// accumulate into dx (dx += ...), as the CPU kernels do.
#include "common.cuh"

KERNEL void add_f32(float* out, const float* a, const float* b, int n) {
	for (long i = gid(); i < n; i += gstride()) out[i] = a[i] + b[i];
}

KERNEL void mul_f32(float* out, const float* a, const float* b, int n) {
	for (long i = gid(); i < n; i += gstride()) out[i] = a[i] * b[i];
}

KERNEL void scale_f32(float* out, const float* x, float s, int n) {
	for (long i = gid(); i < n; i += gstride()) out[i] = s * x[i];
}

// silu_forward: out = x·σ(x) = x / (1 + e^-x).
KERNEL void silu_forward(float* out, const float* x, int n) {
	for (long i = gid(); i < n; i += gstride()) out[i] = x[i] / (1.f + fexp(-x[i]));
}

// silu_backward: dx += dout·σ(x)·(1 + x·(1 − σ(x))).
KERNEL void silu_backward(float* dx, const float* dout, const float* x, int n) {
	for (long i = gid(); i < n; i += gstride()) {
		float v = x[i], s = 1.f / (1.f + fexp(-v)); // e^-x = +Inf gives s = 0
		dx[i] += dout[i] * s * (1.f + v * (1.f - s));
	}
}

#define GELU_C 0.7978845608028654f // √(2/π)
#define GELU_A 0.044715f

// gelu_tanh_forward: out = ½x(1 + tanh u) = x·σ(2u), u = √(2/π)(x + 0.044715x³).
KERNEL void gelu_tanh_forward(float* out, const float* x, int n) {
	for (long i = gid(); i < n; i += gstride()) {
		float v = x[i], u = GELU_C * (v + GELU_A * v * v * v);
		out[i] = v / (1.f + fexp(-2.f * u));
	}
}

// gelu_tanh_backward: dx += dout·(σ(2u) + 2x·σ(2u)(1 − σ(2u))·du/dx).
KERNEL void gelu_tanh_backward(float* dx, const float* dout, const float* x, int n) {
	for (long i = gid(); i < n; i += gstride()) {
		float v = x[i], u = GELU_C * (v + GELU_A * v * v * v);
		float s = 1.f / (1.f + fexp(-2.f * u));
		float du = GELU_C * (1.f + 3.f * GELU_A * v * v);
		dx[i] += dout[i] * (s + 2.f * v * s * (1.f - s) * du);
	}
}

// adamw_update is one AdamW step, as train.adamWUpdate:
// m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; p = p·decay − stepSize·m / (√v·rc2 + ε).
KERNEL void adamw_update(float* p, const float* g, float* m, float* v, int n, float b1, float b2, float eps,
                         float decay, float step_size, float rc2) {
	for (long i = gid(); i < n; i += gstride()) {
		float gi = g[i];
		float mi = b1 * m[i] + (1.f - b1) * gi;
		float vi = b2 * v[i] + (1.f - b2) * gi * gi;
		m[i] = mi;
		v[i] = vi;
		p[i] = p[i] * decay - step_size * mi / (fsqrt(vi) * rc2 + eps);
	}
}
