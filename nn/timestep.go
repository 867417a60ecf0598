package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/difftune/difftune/tensor"
)

// TimestepEmbeddingConfig parameterises the sinusoidal embedding as diffusers'
// get_timestep_embedding does. DiT uses FlipSinToCos true, DownscaleFreqShift 0;
// Stable Diffusion's UNet uses FlipSinToCos true, DownscaleFreqShift 0 as well
// (freq_shift in its config).
type TimestepEmbeddingConfig struct {
	Dim                int
	FlipSinToCos       bool    // [cos, sin] instead of [sin, cos]
	DownscaleFreqShift float64 // exponent divisor is half - shift
	Scale              float64 // multiplies the arguments; 0 means 1
	MaxPeriod          float64 // 0 means 10000
}

// SinusoidalEmbedding returns the [len(t), Dim] embedding of timesteps t:
// freqs_i = exp(-ln(MaxPeriod)·i/(half - shift)), args = Scale·t·freqs, then
// [sin(args), cos(args)] (or cos first), zero-padded to an odd Dim. The result is a
// leaf: timesteps carry no gradient.
func SinusoidalEmbedding(t []float32, c TimestepEmbeddingConfig) *tensor.Tensor {
	if c.Dim <= 0 {
		panic(fmt.Sprintf("nn.SinusoidalEmbedding: dim %d", c.Dim))
	}
	scale, maxPeriod := c.Scale, c.MaxPeriod
	if scale == 0 {
		scale = 1
	}
	if maxPeriod == 0 {
		maxPeriod = 10000
	}
	half := c.Dim / 2
	out := make([]float32, len(t)*c.Dim)
	for n, ts := range t {
		row := out[n*c.Dim : (n+1)*c.Dim]
		for i := range half {
			// float32 arithmetic as PyTorch computes it, so parity holds at large t.
			freq := float32(math.Exp(float64(float32(-math.Log(maxPeriod)) * float32(i) / float32(float64(half)-c.DownscaleFreqShift))))
			arg := float64(float32(scale) * (ts * freq))
			s, co := float32(math.Sin(arg)), float32(math.Cos(arg))
			if c.FlipSinToCos {
				row[i], row[half+i] = co, s
			} else {
				row[i], row[half+i] = s, co
			}
		}
	}
	return tensor.FromFloat32(out, len(t), c.Dim)
}

// TimestepMLP is diffusers' TimestepEmbedding: linear_1, SiLU, linear_2.
type TimestepMLP struct {
	Linear1, Linear2 *Linear
}

// NewTimestepMLP returns a TimestepMLP in -> dim -> dim.
func NewTimestepMLP(rng *rand.Rand, in, dim int) *TimestepMLP {
	return &TimestepMLP{Linear1: NewLinear(rng, in, dim, true), Linear2: NewLinear(rng, dim, dim, true)}
}

// Params returns linear_1 and linear_2.
func (m *TimestepMLP) Params(prefix string) []Param {
	return Children(prefix, Child{"linear_1", m.Linear1}, Child{"linear_2", m.Linear2})
}

// Forward maps an embedding [N, in] to [N, dim].
func (m *TimestepMLP) Forward(x *tensor.Tensor) *tensor.Tensor {
	h := m.Linear1.Forward(x)
	defer h.Release()
	a := tensor.SiLU(h)
	defer a.Release()
	return m.Linear2.Forward(a)
}
