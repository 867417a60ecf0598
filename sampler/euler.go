package sampler

import (
	"fmt"
	"math"

	"github.com/difftune/difftune/tensor"
)

// euler is diffusers' EulerDiscreteScheduler (Karras et al. 2022, Algorithm 2 with
// s_churn = 0) and, with ancestral, EulerAncestralDiscreteScheduler.
type euler struct {
	*base
	ancestral bool
}

func (s *euler) Stochastic() bool { return s.ancestral }

// SetTimesteps spaces float timesteps (not rounded), interpolates their sigmas from the
// training sigmas (optionally Karras sigmas), and appends the final sigma: 0, or for
// Euler with final_sigmas_type sigma_min the smallest training sigma.
func (s *euler) SetTimesteps(steps int) error {
	karras := s.cfg.UseKarrasSigmas && !s.ancestral
	ts, sig, err := s.eulerSigmas(steps, karras)
	if err != nil {
		return fmt.Errorf("sampler %s: %w", s.name, err)
	}
	last := float32(0)
	if !s.ancestral && s.cfg.FinalSigmasType == "sigma_min" {
		ac := s.sigmaAlphasCumprod()[0]
		last = sqrt32((1 - ac) / ac)
	}
	s.sigmas = append(toF32(sig), last)
	s.timesteps = toF32(ts)
	if !s.ancestral && s.cfg.TimestepType == "continuous" && s.cfg.PredictionType == VPrediction {
		for i := range s.timesteps {
			s.timesteps[i] = float32(0.25) * float32(math.Log(float64(s.sigmas[i])))
		}
	}
	s.steps, s.next = steps, 0
	s.initSigma = initSigmaFor(s.cfg.TimestepSpacing, s.sigmas)
	return nil
}

// ScaleModelInput divides x by √(σ²+1).
func (s *euler) ScaleModelInput(x *tensor.Tensor, i int) *tensor.Tensor {
	s.checkIndex(i)
	return scaleBySigma(x, s.sigmas[i])
}

func scaleBySigma(x *tensor.Tensor, sigma float32) *tensor.Tensor {
	d := sqrt32(float32(sigma*sigma) + 1)
	return ew1(x, func(v float32) float32 { return v / d })
}

func (s *euler) Step(m *tensor.Tensor, i int, x *tensor.Tensor, noise NoiseSource) (prev, predX0 *tensor.Tensor) {
	s.checkIndex(i)
	sigma, sigmaNext := s.sigmas[i], s.sigmas[i+1]
	x0 := predictX0(s.cfg.PredictionType, x, m, sigma)
	if !s.ancestral {
		dt := sigmaNext - sigma
		return ew2("Step", x, x0, func(x, x0 float32) float32 {
			return x + float32(((x-x0)/sigma)*dt)
		}), x0
	}
	if noise == nil {
		panic("sampler euler_a: Step needs a NoiseSource")
	}
	from2, to2 := float32(sigma*sigma), float32(sigmaNext*sigmaNext)
	up := sqrt32(float32(to2*(from2-to2)) / from2)
	down := sqrt32(to2 - float32(up*up))
	dt := down - sigma
	z := noise.Randn(m.Shape()...)
	defer z.Release()
	return ew3("Step", x, x0, z, func(x, x0, z float32) float32 {
		return (x + float32(((x-x0)/sigma)*dt)) + float32(z*up)
	}), x0
}

// AddNoise is x₀ + σ_i·ε (diffusers' Euler add_noise at the begin index i).
func (s *euler) AddNoise(x0, noise *tensor.Tensor, i int) *tensor.Tensor {
	s.checkIndex(i)
	s.next = i
	sigma := s.sigmas[i]
	return ew2("AddNoise", x0, noise, func(x, n float32) float32 { return x + float32(n*sigma) })
}

// heun is diffusers' HeunDiscreteScheduler (Karras et al. 2022, Algorithm 1 with
// s_churn = 0): every step but the last evaluates the model twice, first at σ_i
// (an Euler predictor to σ_{i+1}) and then at σ_{i+1} (the trapezoidal corrector); the
// last step, to σ = 0, is a plain Euler step. Timesteps and sigmas are those of Euler
// with the interior values repeated: [t0, t1, t1, t2, t2, ...].
type heun struct {
	*base
	prevDeriv, prevSample *tensor.Tensor
	dt                    float32
}

func (s *heun) Order() int { return 2 }

func (s *heun) SetTimesteps(steps int) error {
	ts, sig, err := s.eulerSigmas(steps, s.cfg.UseKarrasSigmas)
	if err != nil {
		return fmt.Errorf("sampler %s: %w", s.name, err)
	}
	s32, t32 := append(toF32(sig), 0), toF32(ts)
	s.sigmas = []float32{s32[0]}
	for _, v := range s32[1 : len(s32)-1] {
		s.sigmas = append(s.sigmas, v, v)
	}
	s.sigmas = append(s.sigmas, 0)
	s.timesteps = []float32{t32[0]}
	for _, v := range t32[1:] {
		s.timesteps = append(s.timesteps, v, v)
	}
	s.steps, s.next = steps, 0
	s.initSigma = initSigmaFor(s.cfg.TimestepSpacing, s.sigmas)
	s.reset()
	return nil
}

func (s *heun) reset() {
	tensor.Release(s.prevDeriv, s.prevSample)
	s.prevDeriv, s.prevSample = nil, nil
}

func (s *heun) ScaleModelInput(x *tensor.Tensor, i int) *tensor.Tensor {
	s.checkIndex(i)
	return scaleBySigma(x, s.sigmas[i])
}

// Step returns x̂₀ only in the first (predictor) stage.
func (s *heun) Step(m *tensor.Tensor, i int, x *tensor.Tensor, noise NoiseSource) (prev, predX0 *tensor.Tensor) {
	s.advance(i)
	if s.prevDeriv == nil { // first order
		sigma, sigmaNext := s.sigmas[i], s.sigmas[i+1]
		x0 := predictX0(s.cfg.PredictionType, x, m, sigma)
		d := ew2("Step", x, x0, func(x, x0 float32) float32 { return (x - x0) / sigma })
		s.dt = sigmaNext - sigma
		dt := s.dt
		prev = ew2("Step", x, d, func(x, d float32) float32 { return x + float32(d*dt) })
		if i == len(s.timesteps)-1 {
			d.Release()
		} else {
			s.prevDeriv, s.prevSample = d, x.Clone()
		}
		return prev, x0
	}
	sigmaNext := s.sigmas[i]
	x0 := predictX0(s.cfg.PredictionType, x, m, sigmaNext)
	defer x0.Release()
	mustSame("Step", x, s.prevSample)
	dt := s.dt
	prev = ew3("Step", x, x0, s.prevDeriv, func(x, x0, pd float32) float32 { return (pd + (x-x0)/sigmaNext) / 2 })
	o, ps := prev.Data(), s.prevSample.Data()
	for k, d := range o {
		o[k] = ps[k] + float32(d*dt)
	}
	s.reset()
	return prev, nil
}

func (s *heun) AddNoise(x0, noise *tensor.Tensor, i int) *tensor.Tensor {
	s.checkIndex(i)
	s.reset()
	s.next = i
	sigma := s.sigmas[i]
	return ew2("AddNoise", x0, noise, func(x, n float32) float32 { return x + float32(n*sigma) })
}
