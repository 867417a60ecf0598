package sampler

import (
	"fmt"
	"math"

	"github.com/difftune/difftune/tensor"
)

// The sampler updates are elementwise formulas with per-step float32 scalars. They
// are written out per element, in the order PyTorch evaluates diffusers' expressions
// (each tensor op rounded to float32; explicit float32 conversions keep Go from fusing
// a multiply and an add), which is what makes the trajectories match to ~1e-6.

// ew1 returns f applied to every element of x.
func ew1(x *tensor.Tensor, f func(a float32) float32) *tensor.Tensor {
	out := tensor.Zeros(x.Shape()...)
	o, xd := out.Data(), x.Data()
	for i := range o {
		o[i] = f(xd[i])
	}
	return out
}

// ew2 returns f applied to the elements of x and y; it panics if their shapes differ.
func ew2(op string, x, y *tensor.Tensor, f func(a, b float32) float32) *tensor.Tensor {
	mustSame(op, x, y)
	out := tensor.Zeros(x.Shape()...)
	o, xd, yd := out.Data(), x.Data(), y.Data()
	for i := range o {
		o[i] = f(xd[i], yd[i])
	}
	return out
}

// ew3 returns f applied to the elements of x, y and z; it panics if shapes differ.
func ew3(op string, x, y, z *tensor.Tensor, f func(a, b, c float32) float32) *tensor.Tensor {
	mustSame(op, x, y)
	mustSame(op, x, z)
	out := tensor.Zeros(x.Shape()...)
	o, xd, yd, zd := out.Data(), x.Data(), y.Data(), z.Data()
	for i := range o {
		o[i] = f(xd[i], yd[i], zd[i])
	}
	return out
}

func mustSame(op string, x, y *tensor.Tensor) {
	if !sameShape(x, y) {
		panic(fmt.Sprintf("sampler.%s: shapes %v and %v differ", op, x.Shape(), y.Shape()))
	}
}

// predictX0 returns diffusers' Euler-family pred_original_sample for model output m
// at noise level sigma (x = x₀ + σ·ε parameterisation, model input scaled by
// 1/√(σ²+1)).
func predictX0(pred string, x, m *tensor.Tensor, sigma float32) *tensor.Tensor {
	switch pred {
	case Epsilon:
		return ew2("Step", x, m, func(x, m float32) float32 { return x - float32(sigma*m) })
	case VPrediction:
		s2p1 := float32(sigma*sigma) + 1
		c := -sigma / sqrt32(s2p1)
		return ew2("Step", x, m, func(x, m float32) float32 { return float32(m*c) + x/s2p1 })
	}
	return m.Clone()
}

func roundHalfEven(x float64) float64 { return math.RoundToEven(x) }
func expF(x float64) float64          { return math.Exp(x) }
func logF(x float64) float64          { return math.Log(x) }
