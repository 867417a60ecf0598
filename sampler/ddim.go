package sampler

import (
	"fmt"

	"github.com/difftune/difftune/tensor"
)

// ddim is diffusers' DDIMScheduler (Song et al. 2021) with eta = Config.Eta.
type ddim struct {
	*base
	finalAlpha float32
}

func (s *ddim) Stochastic() bool { return s.cfg.Eta > 0 }

// SetTimesteps spaces integer timesteps (leading + steps_offset, trailing, or
// linspace rounded half to even).
func (s *ddim) SetTimesteps(steps int) error {
	ts, err := discreteTimesteps(s.cfg, steps)
	if err != nil {
		return fmt.Errorf("sampler %s: %w", s.name, err)
	}
	s.steps, s.timesteps, s.initSigma, s.next = steps, ts, 1, 0
	s.finalAlpha = s.sched.AlphasCumprod[0]
	if *s.cfg.SetAlphaToOne {
		s.finalAlpha = 1
	}
	return nil
}

// discreteTimesteps are the integer timesteps of DDIM and DDPM.
func discreteTimesteps(c Config, steps int) ([]float32, error) {
	ts, err := spacedTimesteps(c.TimestepSpacing, c.NumTrainTimesteps, steps, c.StepsOffset)
	if err != nil {
		return nil, err
	}
	out := make([]float32, steps)
	for i, t := range ts {
		out[i] = float32(roundHalfEven(t))
		if out[i] < 0 || int(out[i]) >= c.NumTrainTimesteps {
			return nil, fmt.Errorf("timestep %v outside [0, %d) (steps_offset %d too large?)", out[i], c.NumTrainTimesteps, c.StepsOffset)
		}
	}
	return out, nil
}

// alphas returns ᾱ_t and ᾱ_prev of evaluation i: the previous timestep is
// t − T//steps (diffusers uses this for every spacing), final alpha below 0.
func (s *ddim) alphas(i int, final float32) (t int, at, atPrev float32) {
	t = int(s.timesteps[i])
	prev := t - s.cfg.NumTrainTimesteps/s.steps
	at, atPrev = s.sched.AlphasCumprod[t], final
	if prev >= 0 {
		atPrev = s.sched.AlphasCumprod[prev]
	}
	return t, at, atPrev
}

// eps0 returns (x̂₀, ε̂) for the prediction type, clipping x̂₀ if configured.
func eps0(c Config, x, m *tensor.Tensor, at float32) (x0, eps *tensor.Tensor) {
	bt := 1 - at
	sa, sb := sqrt32(at), sqrt32(bt)
	switch c.PredictionType {
	case Epsilon:
		x0 = ew2("Step", x, m, func(x, m float32) float32 { return (x - float32(sb*m)) / sa })
		eps = m.Clone()
	case VPrediction:
		x0 = ew2("Step", x, m, func(x, m float32) float32 { return float32(sa*x) - float32(sb*m) })
		eps = ew2("Step", x, m, func(x, m float32) float32 { return float32(sa*m) + float32(sb*x) })
	default: // sample
		x0 = m.Clone()
		eps = ew2("Step", x, m, func(x, x0 float32) float32 { return (x - float32(sa*x0)) / sb })
	}
	if *c.ClipSample {
		r := float32(c.ClipSampleRange)
		d := x0.Data()
		for i, v := range d {
			d[i] = min(max(v, -r), r)
		}
	}
	return x0, eps
}

func (s *ddim) Step(m *tensor.Tensor, i int, x *tensor.Tensor, noise NoiseSource) (prev, predX0 *tensor.Tensor) {
	s.checkIndex(i)
	_, at, atPrev := s.alphas(i, s.finalAlpha)
	x0, eps := eps0(s.cfg, x, m, at)
	defer eps.Release()
	bt, btPrev := 1-at, 1-atPrev
	variance := float32(btPrev/bt) * (1 - at/atPrev)
	std := float32(s.cfg.Eta) * sqrt32(variance)
	sqrtPrev, dir := sqrt32(atPrev), sqrt32((1-atPrev)-float32(std*std))
	prev = ew2("Step", x0, eps, func(x0, e float32) float32 { return float32(sqrtPrev*x0) + float32(dir*e) })
	if s.cfg.Eta > 0 {
		if noise == nil {
			panic("sampler ddim: eta > 0 needs a NoiseSource")
		}
		z := noise.Randn(m.Shape()...)
		defer z.Release()
		p, zd := prev.Data(), z.Data()
		for k := range p {
			p[k] += float32(std * zd[k])
		}
	}
	return prev, x0
}

// AddNoise is diffusers' DDIM add_noise at timestep Timesteps()[i].
func (s *ddim) AddNoise(x0, noise *tensor.Tensor, i int) *tensor.Tensor {
	s.checkIndex(i)
	return s.sched.AddNoise(x0, noise, []float32{s.timesteps[i]})
}

// ddpm is diffusers' DDPMScheduler (Ho et al. 2020), ancestral sampling with the
// fixed_small posterior variance.
type ddpm struct{ ddim }

func (s *ddpm) Stochastic() bool { return true }

func (s *ddpm) SetTimesteps(steps int) error {
	if err := s.ddim.SetTimesteps(steps); err != nil {
		return err
	}
	s.finalAlpha = 1 // DDPMScheduler's self.one
	return nil
}

func (s *ddpm) Step(m *tensor.Tensor, i int, x *tensor.Tensor, noise NoiseSource) (prev, predX0 *tensor.Tensor) {
	s.checkIndex(i)
	t, at, atPrev := s.alphas(i, 1)
	bt, btPrev := 1-at, 1-atPrev
	curAlpha := at / atPrev
	curBeta := 1 - curAlpha
	x0, eps := eps0(s.cfg, x, m, at)
	eps.Release()
	cx0 := float32(sqrt32(atPrev)*curBeta) / bt
	cx := float32(sqrt32(curAlpha)*btPrev) / bt
	prev = ew2("Step", x0, x, func(x0, x float32) float32 { return float32(cx0*x0) + float32(cx*x) })
	if t > 0 {
		if noise == nil {
			panic("sampler ddpm: Step needs a NoiseSource")
		}
		variance := max(float32(btPrev/bt)*curBeta, 1e-20)
		std := sqrt32(variance)
		if s.cfg.VarianceType == "fixed_small_log" {
			std = float32(expF(0.5 * logF(float64(variance))))
		}
		z := noise.Randn(m.Shape()...)
		defer z.Release()
		p, zd := prev.Data(), z.Data()
		for k := range p {
			p[k] += float32(std * zd[k])
		}
	}
	return prev, x0
}
