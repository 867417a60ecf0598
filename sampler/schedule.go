package sampler

import (
	"fmt"
	"math"

	"github.com/difftune/difftune/tensor"
)

// Prediction types a denoiser may be trained for (diffusers' prediction_type).
const (
	Epsilon        = "epsilon"      // the model predicts the added noise ε
	VPrediction    = "v_prediction" // v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022)
	Flow           = "flow"         // rectified flow: x_σ = (1−σ)·x₀ + σ·ε, v = ε − x₀
	OriginalSample = "sample"       // the model predicts x₀ itself
)

// Beta schedules (diffusers' beta_schedule).
const (
	Linear          = "linear"
	ScaledLinear    = "scaled_linear"
	SquaredCosCapV2 = "squaredcos_cap_v2"
)

// Betas returns the training betas of cfg in float32 as diffusers computes them:
// linear = torch.linspace(beta_start, beta_end, T); scaled_linear =
// torch.linspace(√beta_start, √beta_end, T)²; squaredcos_cap_v2 = the Nichol & Dhariwal
// cosine schedule in float64 (max beta 0.999) rounded to float32; trained_betas as
// given. With rescale_betas_zero_snr the betas are rescaled to zero terminal SNR (Lin
// et al. 2023, "Common diffusion noise schedules and sample steps are flawed").
func Betas(cfg Config) ([]float32, error) {
	c := cfg.withDefaults("")
	n := c.NumTrainTimesteps
	var b []float32
	switch {
	case len(c.TrainedBetas) > 0:
		if len(c.TrainedBetas) != n {
			return nil, fmt.Errorf("trained_betas has %d values, num_train_timesteps is %d", len(c.TrainedBetas), n)
		}
		b = make([]float32, n)
		for i, v := range c.TrainedBetas {
			b[i] = float32(v)
		}
	case c.BetaSchedule == Linear:
		b = torchLinspace32(float32(c.BetaStart), float32(c.BetaEnd), n)
	case c.BetaSchedule == ScaledLinear:
		b = torchLinspace32(float32(math.Sqrt(c.BetaStart)), float32(math.Sqrt(c.BetaEnd)), n)
		for i := range b {
			b[i] *= b[i]
		}
	case c.BetaSchedule == SquaredCosCapV2:
		alphaBar := func(t float64) float64 {
			v := math.Cos((t + 0.008) / 1.008 * math.Pi / 2)
			return v * v
		}
		b = make([]float32, n)
		for i := range b {
			t1, t2 := float64(i)/float64(n), float64(i+1)/float64(n)
			b[i] = float32(math.Min(1-alphaBar(t2)/alphaBar(t1), 0.999))
		}
	default:
		return nil, fmt.Errorf("beta_schedule %q is not one of %s, %s, %s", c.BetaSchedule, Linear, ScaledLinear, SquaredCosCapV2)
	}
	if c.RescaleBetasZeroSNR {
		b = rescaleZeroTerminalSNR(b)
	}
	return b, nil
}

// torchLinspace32 is torch.linspace in float32 on the CPU: step = (end−start)/(n−1),
// the first half counted up from start, the second half down from end.
func torchLinspace32(start, end float32, n int) []float32 {
	out := make([]float32, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float32(n-1)
	half := n / 2
	for i := range out {
		if i < half {
			out[i] = start + float32(step*float32(i))
		} else {
			out[i] = end - float32(step*float32(n-i-1))
		}
	}
	return out
}

// cumprod is torch.cumprod of float32 on the CPU, which accumulates in float64.
func cumprod(a []float32) []float32 {
	out := make([]float32, len(a))
	acc := 1.0
	for i, v := range a {
		acc *= float64(v)
		out[i] = float32(acc)
	}
	return out
}

// rescaleZeroTerminalSNR is diffusers' rescale_zero_terminal_snr, in float32.
func rescaleZeroTerminalSNR(betas []float32) []float32 {
	n := len(betas)
	alphas := make([]float32, n)
	for i, b := range betas {
		alphas[i] = 1 - b
	}
	s := cumprod(alphas)
	for i := range s {
		s[i] = sqrt32(s[i])
	}
	s0, sT := s[0], s[n-1]
	for i := range s {
		s[i] -= sT
		s[i] *= s0 / (s0 - sT)
	}
	out := make([]float32, n)
	for i := range s {
		bar := s[i] * s[i]
		if i == 0 {
			out[i] = 1 - bar
		} else {
			out[i] = 1 - bar/(s[i-1]*s[i-1])
		}
	}
	return out
}

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// NoiseSchedule is the forward (noising) process a denoiser was trained with: what the
// trainer needs to make noisy inputs and regression targets, and what a sampler
// needs to undo them. Build one with NewNoiseSchedule.
//
// For the discrete schedules (prediction epsilon, v_prediction, sample) a timestep is
// an integer index t in [0, T) into AlphasCumprod, and x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε.
// For Flow a timestep is continuous, t in [0, T], σ = t/T, and x_t = (1−σ)·x₀ + σ·ε
// (SD3 / rectified flow; T = num_train_timesteps, as diffusers' timesteps = σ·1000).
type NoiseSchedule struct {
	Prediction        string    // Epsilon, VPrediction, Flow or OriginalSample
	NumTrainTimesteps int       // T
	Betas             []float32 // nil for Flow
	AlphasCumprod     []float32 // ᾱ_t = Π(1−β); nil for Flow
}

// NewNoiseSchedule builds the schedule of cfg (its betas, alphas_cumprod and
// prediction_type). It fails for an invalid beta schedule or prediction type.
func NewNoiseSchedule(cfg Config) (*NoiseSchedule, error) {
	c := cfg.withDefaults("")
	s := &NoiseSchedule{Prediction: c.PredictionType, NumTrainTimesteps: c.NumTrainTimesteps}
	switch c.PredictionType {
	case Flow:
		return s, nil
	case Epsilon, VPrediction, OriginalSample:
	default:
		return nil, fmt.Errorf("prediction_type %q is not one of %s, %s, %s, %s", c.PredictionType, Epsilon, VPrediction, Flow, OriginalSample)
	}
	b, err := Betas(c)
	if err != nil {
		return nil, err
	}
	s.Betas = b
	s.AlphasCumprod = alphasCumprod(b)
	return s, nil
}

func alphasCumprod(betas []float32) []float32 {
	a := make([]float32, len(betas))
	for i, b := range betas {
		a[i] = 1 - b
	}
	return cumprod(a)
}

// coefficients returns, per timestep, (a, b) with x_t = a·x₀ + b·ε.
func (s *NoiseSchedule) coefficients(t []float32) (a, b []float32) {
	a, b = make([]float32, len(t)), make([]float32, len(t))
	for i, ti := range t {
		if s.Prediction == Flow {
			if ti < 0 || ti > float32(s.NumTrainTimesteps) {
				panic(fmt.Sprintf("sampler.NoiseSchedule: flow timestep %v outside [0, %d]", ti, s.NumTrainTimesteps))
			}
			sigma := ti / float32(s.NumTrainTimesteps)
			a[i], b[i] = 1-sigma, sigma
			continue
		}
		k := int(ti)
		if float32(k) != ti || k < 0 || k >= len(s.AlphasCumprod) {
			panic(fmt.Sprintf("sampler.NoiseSchedule: timestep %v is not an integer in [0, %d)", ti, len(s.AlphasCumprod)))
		}
		ac := s.AlphasCumprod[k]
		a[i], b[i] = sqrt32(ac), sqrt32(1-ac)
	}
	return a, b
}

// perSample applies f(a_n, x, b_n, y) elementwise to x and y of shape [N, ...] with one
// coefficient pair per sample n; t has N entries (or 1, broadcast). It panics on
// mismatched shapes.
func perSample(op string, x, y *tensor.Tensor, a, b []float32, f func(a, x, b, y float32) float32) *tensor.Tensor {
	if !sameShape(x, y) {
		panic(fmt.Sprintf("sampler.%s: shapes %v and %v differ", op, x.Shape(), y.Shape()))
	}
	n := x.Dim(0)
	if len(a) != n && len(a) != 1 {
		panic(fmt.Sprintf("sampler.%s: %d timesteps for batch %d (shape %v)", op, len(a), n, x.Shape()))
	}
	out := tensor.Zeros(x.Shape()...)
	o, xd, yd := out.Data(), x.Data(), y.Data()
	per := len(o) / max(n, 1)
	for i := range o {
		k := 0
		if len(a) > 1 {
			k = i / per
		}
		o[i] = f(a[k], xd[i], b[k], yd[i])
	}
	return out
}

// AddNoise returns the noisy input x_t for clean x0 [N, ...] and noise ε of the same
// shape at per-sample timesteps t (N values, or one for the whole batch), as
// diffusers' add_noise (discrete: √ᾱ·x₀ + √(1−ᾱ)·ε in float32) or, for Flow,
// scale_noise ((1−σ)·x₀ + σ·ε). It panics on shape or timestep misuse (see
// NoiseSchedule for valid timesteps).
func (s *NoiseSchedule) AddNoise(x0, noise *tensor.Tensor, t []float32) *tensor.Tensor {
	a, b := s.coefficients(t)
	if s.Prediction == Flow {
		return perSample("AddNoise", x0, noise, a, b, func(a, x, b, y float32) float32 { return float32(b*y) + float32(a*x) })
	}
	return perSample("AddNoise", x0, noise, a, b, func(a, x, b, y float32) float32 { return float32(a*x) + float32(b*y) })
}

// Target returns what the model should predict at timesteps t for clean x0 and noise ε:
// ε for Epsilon, the velocity √ᾱ·ε − √(1−ᾱ)·x₀ for VPrediction (diffusers
// get_velocity), ε − x₀ for Flow, x₀ for OriginalSample. It panics like AddNoise.
func (s *NoiseSchedule) Target(x0, noise *tensor.Tensor, t []float32) *tensor.Tensor {
	switch s.Prediction {
	case Epsilon:
		return noise.Clone()
	case OriginalSample:
		return x0.Clone()
	case Flow:
		return perSample("Target", x0, noise, nil2(t), nil2(t), func(_, x, _, y float32) float32 { return y - x })
	}
	a, b := s.coefficients(t)
	return perSample("Target", x0, noise, a, b, func(a, x, b, y float32) float32 { return float32(a*y) - float32(b*x) })
}

func nil2(t []float32) []float32 { return make([]float32, len(t)) }

// SNR returns the signal-to-noise ratio at timestep t: ᾱ/(1−ᾱ) for the discrete
// schedules, ((1−σ)/σ)² for Flow; for min-SNR loss weighting (Hang et al. 2023):
// weight = min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR+1) for v. It panics like AddNoise.
func (s *NoiseSchedule) SNR(t float32) float64 {
	a, b := s.coefficients([]float32{t})
	r := float64(a[0]) / float64(b[0])
	return r * r
}

// MinSNRWeight returns the min-SNR-γ loss weight at timestep t for this schedule's
// prediction type: min(SNR, γ)/SNR for epsilon, min(SNR, γ)/(SNR+1) for v and flow
// velocity targets, min(SNR, γ) for sample (x₀) targets.
func (s *NoiseSchedule) MinSNRWeight(t float32, gamma float64) float64 {
	snr := s.SNR(t)
	m := math.Min(snr, gamma)
	switch s.Prediction {
	case Epsilon:
		return m / snr
	case OriginalSample:
		return m
	}
	return m / (snr + 1)
}

func sameShape(a, b *tensor.Tensor) bool {
	as, bs := a.Shape(), b.Shape()
	if len(as) != len(bs) {
		return false
	}
	for i := range as {
		if as[i] != bs[i] {
			return false
		}
	}
	return true
}
