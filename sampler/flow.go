package sampler

import (
	"fmt"
	"math"

	"github.com/difftune/difftune/tensor"
)

// flowEuler is diffusers' FlowMatchEulerDiscreteScheduler (rectified flow, SD3/Flux):
// the model predicts the velocity v = ε − x₀ and x moves by (σ_{i+1} − σ_i)·v.
// Timesteps are σ·T; the initial noise is not scaled (init_noise_sigma 1) and the
// model input is x itself.
//
// Sigmas, exactly as diffusers v0.31.0 (T = num_train_timesteps, shift s, all
// training-table arithmetic in float32, set_timesteps in float64):
//
//	train σ_k = shift(k/T) for k = T..1, with shift(σ) = s·σ/(1 + (s−1)·σ)
//	σ_max, σ_min = train σ_T, train σ_1 (shifted once)
//	σ_i = shift(linspace(σ_max·T, σ_min·T, n)_i / T)      (shifted again)
//
// or, with use_dynamic_shifting, σ_i = e^μ/(e^μ + (1/σ − 1)) of the same linspace
// (μ = Config.Mu). FlowShiftOnce spaces linspace(1, 1/T, n) instead, shifting once.
type flowEuler struct{ *base }

func (s *flowEuler) SetTimesteps(steps int) error {
	c := s.cfg
	T := c.NumTrainTimesteps
	if steps < 1 || steps > T {
		return fmt.Errorf("sampler %s: %d inference steps, want 1 to num_train_timesteps (%d)", s.name, steps, T)
	}
	// __init__: the float32 training sigmas, shifted unless dynamic.
	shift32 := func(sig float32) float32 {
		sh := float32(c.Shift)
		return float32(sh*sig) / (1 + float32((sh-1)*sig))
	}
	sMax, sMin := float32(1), float32(1)/float32(T)
	if !c.UseDynamicShifting && !c.FlowShiftOnce {
		sMax, sMin = shift32(sMax), shift32(sMin)
	}
	ts := npLinspace(float64(sMax)*float64(T), float64(sMin)*float64(T), steps)
	s.sigmas = make([]float32, steps+1)
	s.timesteps = make([]float32, steps)
	for i, t := range ts {
		sig := t / float64(T)
		if c.UseDynamicShifting {
			e := math.Exp(c.Mu)
			sig = e / (e + math.Pow(1/sig-1, 1))
		} else {
			sig = c.Shift * sig / (1 + (c.Shift-1)*sig)
		}
		s.sigmas[i] = float32(sig)
		s.timesteps[i] = s.sigmas[i] * float32(T)
	}
	s.steps, s.initSigma, s.next = steps, 1, 0
	return nil
}

func (s *flowEuler) Step(m *tensor.Tensor, i int, x *tensor.Tensor, noise NoiseSource) (prev, predX0 *tensor.Tensor) {
	s.checkIndex(i)
	dt := s.sigmas[i+1] - s.sigmas[i]
	return ew2("Step", x, m, func(x, v float32) float32 { return x + float32(dt*v) }), nil
}

// AddNoise is diffusers' scale_noise: σ_i·ε + (1−σ_i)·x₀.
func (s *flowEuler) AddNoise(x0, noise *tensor.Tensor, i int) *tensor.Tensor {
	s.checkIndex(i)
	sigma := s.sigmas[i]
	return ew2("AddNoise", x0, noise, func(x, n float32) float32 { return float32(sigma*n) + float32((1-sigma)*x) })
}
