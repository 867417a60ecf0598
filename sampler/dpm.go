package sampler

import (
	"fmt"
	"math"

	"github.com/difftune/difftune/tensor"
)

// dpmSolver is diffusers' DPMSolverMultistepScheduler with algorithm_type dpmsolver++
// (Lu et al. 2022, "DPM-Solver++"), solver order 1 or 2, midpoint or heun solver type,
// optionally with Karras sigmas. The model output is converted to x̂₀ and the update is
// exponential in λ = ln(α/σ). Step 0 is first order (no history yet); so is the last
// step when final_sigmas_type is zero (the default; σ = 0 makes h infinite), when
// euler_at_final is set, or with lower_order_final and fewer than 15 steps — exactly
// as diffusers v0.31.0.
type dpmSolver struct {
	*base
	prevX0     *tensor.Tensor // x̂₀ of the previous step
	lowerOrder int            // diffusers' lower_order_nums
}

func (s *dpmSolver) SetTimesteps(steps int) error {
	c := s.cfg
	T := c.NumTrainTimesteps
	if steps < 1 || steps > T {
		return fmt.Errorf("sampler %s: %d inference steps, want 1 to num_train_timesteps (%d)", s.name, steps, T)
	}
	ac := s.sigmaAlphasCumprod()
	last := T // lambda_min_clipped: the training timesteps with λ below it are skipped
	if !math.IsInf(c.LambdaMinClipped, -1) {
		for t := T - 1; t >= 0; t-- {
			lam := float32(math.Log(float64(sqrt32(ac[t])))) - float32(math.Log(float64(sqrt32(1-ac[t]))))
			if float64(lam) >= c.LambdaMinClipped {
				break
			}
			last--
		}
	}
	ts := make([]float64, steps)
	switch c.TimestepSpacing {
	case "linspace":
		l := npLinspace(0, float64(last-1), steps+1)
		for i := range ts {
			ts[i] = math.RoundToEven(l[steps-i])
		}
	case "leading":
		ratio := last / (steps + 1)
		for i := range ts {
			ts[i] = float64((steps-i)*ratio + c.StepsOffset)
		}
	case "trailing":
		ratio := float64(T) / float64(steps)
		for i := range ts {
			ts[i] = math.RoundToEven(float64(last)-float64(float64(i)*ratio)) - 1
		}
	}
	full := fullSigmas(ac)
	var sig []float64
	if c.UseKarrasSigmas {
		sig = karrasSigmas(float64(full[0]), float64(full[T-1]), steps)
		ls := logSigmas(full)
		for i, v := range sig {
			ts[i] = math.RoundToEven(sigmaToT(v, ls))
		}
	} else {
		sig = make([]float64, steps)
		for i, t := range ts {
			sig[i] = npInterp(t, full)
		}
	}
	final := float32(0)
	if c.FinalSigmasType == "sigma_min" {
		final = sqrt32((1 - ac[0]) / ac[0])
	}
	s.sigmas = append(toF32(sig), final)
	s.timesteps = toF32(ts)
	s.steps, s.initSigma, s.next = steps, 1, 0
	s.reset()
	return nil
}

func (s *dpmSolver) reset() {
	if s.prevX0 != nil {
		s.prevX0.Release()
		s.prevX0 = nil
	}
	s.lowerOrder = 0
}

// alphaSigma is _sigma_to_alpha_sigma_t: α = 1/√(σ²+1), σ_t = σ·α, and λ = ln α − ln σ_t.
func alphaSigma(sigma float32) (alpha, sigmaT, lambda float32) {
	alpha = 1 / sqrt32(float32(sigma*sigma)+1)
	sigmaT = sigma * alpha
	lambda = float32(math.Log(float64(alpha))) - float32(math.Log(float64(sigmaT)))
	return alpha, sigmaT, lambda
}

// Step returns nil for x̂₀, as diffusers' DPMSolverMultistepScheduler does (the x̂₀ it
// uses internally is the converted model output).
func (s *dpmSolver) Step(m *tensor.Tensor, i int, x *tensor.Tensor, noise NoiseSource) (prev, predX0 *tensor.Tensor) {
	s.advance(i)
	c, n := s.cfg, len(s.timesteps)
	lowerFinal := i == n-1 && (c.EulerAtFinal || (*c.LowerOrderFinal && n < 15) || c.FinalSigmasType == "zero")
	lowerSecond := i == n-2 && *c.LowerOrderFinal && n < 15

	alpha0, sigma0, lambda0 := alphaSigma(s.sigmas[i])
	var x0 *tensor.Tensor
	switch c.PredictionType {
	case Epsilon:
		x0 = ew2("Step", x, m, func(x, m float32) float32 { return (x - float32(sigma0*m)) / alpha0 })
	case VPrediction:
		x0 = ew2("Step", x, m, func(x, m float32) float32 { return float32(alpha0*x) - float32(sigma0*m) })
	default:
		x0 = m.Clone()
	}
	alphaT, sigmaT, lambdaT := alphaSigma(s.sigmas[i+1])
	h := lambdaT - lambda0
	ratio := sigmaT / sigma0
	cD0 := alphaT * (float32(math.Exp(float64(-h))) - 1)
	if c.SolverOrder == 1 || s.lowerOrder < 1 || lowerFinal {
		prev = ew2("Step", x, x0, func(x, d0 float32) float32 { return float32(ratio*x) - float32(cD0*d0) })
	} else {
		_ = lowerSecond // order 2 is the highest implemented, so lower_order_second changes nothing
		_, _, lambda1 := alphaSigma(s.sigmas[i-1])
		r0 := (lambda0 - lambda1) / h
		inv := 1 / r0
		var cD1 float32
		if c.SolverType == "midpoint" {
			cD1 = 0.5 * cD0
		} else {
			cD1 = -(alphaT * ((float32(math.Exp(float64(-h)))-1)/h + 1))
		}
		prev = ew3("Step", x, x0, s.prevX0, func(x, m0, m1 float32) float32 {
			d1 := float32(inv * (m0 - m1))
			return (float32(ratio*x) - float32(cD0*m0)) - float32(cD1*d1)
		})
	}
	if s.lowerOrder < c.SolverOrder {
		s.lowerOrder++
	}
	if s.prevX0 != nil {
		s.prevX0.Release()
	}
	s.prevX0 = x0
	if i == n-1 { // the trajectory is done: hold no tensor after it
		s.reset()
	}
	return prev, nil
}

// AddNoise is α_i·x₀ + σ_i·ε at the sigma of evaluation i (diffusers' DPM-Solver
// add_noise at the begin index).
func (s *dpmSolver) AddNoise(x0, noise *tensor.Tensor, i int) *tensor.Tensor {
	s.checkIndex(i)
	s.reset()
	s.next = i
	alpha, sigmaT, _ := alphaSigma(s.sigmas[i])
	return ew2("AddNoise", x0, noise, func(x, n float32) float32 { return float32(alpha*x) + float32(sigmaT*n) })
}
