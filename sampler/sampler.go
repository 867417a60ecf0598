package sampler

import (
	"fmt"
	"slices"
	"strings"

	"github.com/difftune/difftune/tensor"
)

// Sampler is one diffusers scheduler: a list of model evaluations (Timesteps) and the
// update that follows each. The loop that drives it is the diffusers pipelines' loop
// (Sample does it):
//
//	s.SetTimesteps(n)
//	x := xInit · s.InitNoiseSigma()
//	for i, t := range s.Timesteps() {
//		in := s.ScaleModelInput(x, i)
//		out := model(in, t)
//		x, x0 = s.Step(out, i, x, rng)
//	}
//
// Samplers keep state between steps (DPM++ 2M its previous output, Heun its first
// stage), so a Sampler drives one trajectory at a time; SetTimesteps resets it. Every
// tensor a method returns is new and the caller releases it; inputs are not released.
type Sampler interface {
	// Name is the name New knows the sampler by.
	Name() string
	// Config returns the config with the class defaults filled in.
	Config() Config
	// Schedule is the training noise schedule the sampler inverts.
	Schedule() *NoiseSchedule
	// SetTimesteps prepares steps inference steps and resets the sampler's state. It
	// fails if steps is not in [1, num_train_timesteps].
	SetTimesteps(steps int) error
	// Timesteps are the model's timestep arguments, one per model evaluation
	// (Order()·steps − (Order()−1) of them for Heun, steps for the others).
	Timesteps() []float32
	// Sigmas are the noise levels of the sigma-parameterised samplers
	// (len(Timesteps())+1 values ending at the final level), nil for DDIM and DDPM.
	Sigmas() []float32
	// InitNoiseSigma is the scale of the initial noise (diffusers' init_noise_sigma).
	InitNoiseSigma() float32
	// Order is the number of model evaluations per step (2 for Heun, else 1).
	Order() int
	// Stochastic reports whether Step draws noise (and so needs a NoiseSource).
	Stochastic() bool
	// ScaleModelInput returns the model input for latent x at evaluation i.
	ScaleModelInput(x *tensor.Tensor, i int) *tensor.Tensor
	// Step takes the model output at evaluation i and returns the next latent and
	// the predicted clean sample x̂₀ (nil where diffusers returns none: flow_euler,
	// DPM++ 2M, Heun's second stage). noise may be nil unless Stochastic. It panics
	// on shape misuse or an evaluation index out of order.
	Step(modelOut *tensor.Tensor, i int, x *tensor.Tensor, noise NoiseSource) (prev, predX0 *tensor.Tensor)
	// AddNoise noises a clean latent to the level of evaluation i, as diffusers'
	// add_noise (scale_noise for flow_euler) does for img2img; it also sets i as the
	// first step (diffusers' set_begin_index).
	AddNoise(x0, noise *tensor.Tensor, i int) *tensor.Tensor
}

// Names lists the samplers New builds.
var Names = []string{"ddim", "ddpm", "euler", "euler_a", "heun", "dpmpp_2m", "dpmpp_2m_karras", "flow_euler"}

// classNames maps diffusers scheduler classes to sampler names.
var classNames = map[string]string{
	"DDIMScheduler": "ddim", "DDPMScheduler": "ddpm", "EulerDiscreteScheduler": "euler",
	"EulerAncestralDiscreteScheduler": "euler_a", "HeunDiscreteScheduler": "heun",
	"DPMSolverMultistepScheduler": "dpmpp_2m", "FlowMatchEulerDiscreteScheduler": "flow_euler",
}

// NameForClass returns the sampler name for a diffusers scheduler class name
// (Config.ClassName): dpmpp_2m_karras when a DPMSolverMultistepScheduler config sets
// use_karras_sigmas. It fails for a class difftune does not implement.
func NameForClass(cfg Config) (string, error) {
	n, ok := classNames[cfg.ClassName]
	if !ok {
		known := make([]string, 0, len(classNames))
		for k := range classNames {
			known = append(known, k)
		}
		slices.Sort(known)
		return "", fmt.Errorf("scheduler class %q is not implemented (known: %s)", cfg.ClassName, strings.Join(known, ", "))
	}
	if n == "dpmpp_2m" && cfg.UseKarrasSigmas {
		n = "dpmpp_2m_karras"
	}
	return n, nil
}

// New returns the sampler called name configured by cfg (a diffusers scheduler
// config; unset fields take the defaults of that sampler's diffusers class):
//
//	ddim             DDIMScheduler (eta from Config.Eta, default 0)
//	ddpm             DDPMScheduler (ancestral)
//	euler            EulerDiscreteScheduler
//	euler_a          EulerAncestralDiscreteScheduler
//	heun             HeunDiscreteScheduler
//	dpmpp_2m         DPMSolverMultistepScheduler, dpmsolver++, order 2
//	dpmpp_2m_karras  the same with use_karras_sigmas forced on
//	flow_euler       FlowMatchEulerDiscreteScheduler
//
// flow_euler reproduces diffusers v0.31.0, which applies the shift twice: __init__
// shifts the 1000 training sigmas, set_timesteps spaces the timesteps linearly between
// the shifted σ_max and σ_min and then shifts them again (so shift = 3 behaves like a
// stronger shift). Set Config.FlowShiftOnce to shift the linear unshifted spacing once.
//
// New fails for an unknown name (listing the valid ones) or an invalid config.
func New(name string, cfg Config) (Sampler, error) {
	if !slices.Contains(Names, name) {
		return nil, fmt.Errorf("unknown sampler %q (valid: %s)", name, strings.Join(Names, ", "))
	}
	if name == "dpmpp_2m_karras" {
		cfg.UseKarrasSigmas = true
	}
	c := cfg.withDefaults(name)
	if err := c.validate(name); err != nil {
		return nil, fmt.Errorf("sampler %s: %w", name, err)
	}
	if (c.PredictionType == Flow) != (name == "flow_euler") {
		return nil, fmt.Errorf("sampler %s: prediction_type %q: flow models need flow_euler, and flow_euler needs prediction_type flow", name, c.PredictionType)
	}
	b := &base{name: name, cfg: c}
	if name != "flow_euler" {
		sched, err := NewNoiseSchedule(c)
		if err != nil {
			return nil, fmt.Errorf("sampler %s: %w", name, err)
		}
		b.sched = sched
	} else {
		b.sched = &NoiseSchedule{Prediction: Flow, NumTrainTimesteps: c.NumTrainTimesteps}
	}
	switch name {
	case "ddim":
		return &ddim{base: b}, nil
	case "ddpm":
		return &ddpm{ddim{base: b}}, nil
	case "euler":
		return &euler{base: b}, nil
	case "euler_a":
		return &euler{base: b, ancestral: true}, nil
	case "heun":
		return &heun{base: b}, nil
	case "dpmpp_2m", "dpmpp_2m_karras":
		return &dpmSolver{base: b}, nil
	}
	return &flowEuler{base: b}, nil
}

// base holds what every sampler shares.
type base struct {
	name      string
	cfg       Config
	sched     *NoiseSchedule
	steps     int
	timesteps []float32
	sigmas    []float32
	initSigma float32
	next      int // the evaluation index Step expects next
}

func (b *base) Name() string             { return b.name }
func (b *base) Config() Config           { return b.cfg }
func (b *base) Schedule() *NoiseSchedule { return b.sched }
func (b *base) Timesteps() []float32     { return b.timesteps }
func (b *base) Sigmas() []float32        { return b.sigmas }
func (b *base) InitNoiseSigma() float32  { return b.initSigma }
func (b *base) Order() int               { return 1 }
func (b *base) Stochastic() bool         { return false }

// ScaleModelInput is the identity (a copy) for the samplers that do not scale.
func (b *base) ScaleModelInput(x *tensor.Tensor, i int) *tensor.Tensor {
	b.checkIndex(i)
	return x.Clone()
}

// checkIndex panics if i is not a valid evaluation index.
func (b *base) checkIndex(i int) {
	if b.timesteps == nil {
		panic(fmt.Sprintf("sampler %s: SetTimesteps was not called", b.name))
	}
	if i < 0 || i >= len(b.timesteps) {
		panic(fmt.Sprintf("sampler %s: evaluation %d out of range [0, %d)", b.name, i, len(b.timesteps)))
	}
}

// advance panics unless i is the evaluation a stateful sampler expects next.
func (b *base) advance(i int) {
	b.checkIndex(i)
	if i != b.next {
		panic(fmt.Sprintf("sampler %s: Step(%d) out of order, expected step %d (call SetTimesteps or AddNoise to restart)", b.name, i, b.next))
	}
	b.next++
}

// sigmaAlphasCumprod returns ᾱ for the sigma-parameterised samplers: with zero
// terminal SNR the last value is 2⁻²⁴ instead of 0 so that σ stays finite.
func (b *base) sigmaAlphasCumprod() []float32 {
	ac := slices.Clone(b.sched.AlphasCumprod)
	if b.cfg.RescaleBetasZeroSNR {
		ac[len(ac)-1] = 1.0 / (1 << 24)
	}
	return ac
}

// eulerSigmas sets the timesteps and sigmas of the Euler family (Euler, Euler
// ancestral, Heun before repetition): spaced timesteps, sigmas interpolated from
// the training sigmas, optionally Karras sigmas with timesteps mapped back, then the
// final sigma appended. It returns the float64 timesteps and sigmas before rounding.
func (b *base) eulerSigmas(steps int, karras bool) (ts []float64, sig []float64, err error) {
	c := b.cfg
	ts, err = spacedTimesteps(c.TimestepSpacing, c.NumTrainTimesteps, steps, c.StepsOffset)
	if err != nil {
		return nil, nil, err
	}
	for i := range ts { // diffusers stores the timesteps as float32 before interpolating
		ts[i] = float64(float32(ts[i]))
	}
	full := fullSigmas(b.sigmaAlphasCumprod())
	sig = make([]float64, steps)
	for i, t := range ts {
		sig[i] = npInterp(t, full)
	}
	if karras {
		lo, hi := sig[len(sig)-1], sig[0]
		if c.SigmaMin != nil {
			lo = *c.SigmaMin
		}
		if c.SigmaMax != nil {
			hi = *c.SigmaMax
		}
		sig = karrasSigmas(lo, hi, steps)
		ls := logSigmas(full)
		for i, s := range sig {
			ts[i] = sigmaToT(s, ls)
		}
	}
	return ts, sig, nil
}

// initSigmaFor is init_noise_sigma of the Euler family: max σ for linspace and
// trailing spacing, √(max σ² + 1) for leading.
func initSigmaFor(spacing string, sigmas []float32) float32 {
	m := slices.Max(sigmas)
	if spacing == "linspace" || spacing == "trailing" {
		return m
	}
	return sqrt32(float32(m*m) + 1)
}

// toF32 rounds float64 values to float32.
func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
