// Package sampler holds difftune's noise schedules and samplers: the forward process
// the trainer noises latents with, and the diffusers v0.31.0 schedulers that undo it,
// with classifier-free guidance, img2img and a documented, portable RNG.
//
// # For the trainer: NoiseSchedule
//
//	cfg, err := sampler.LoadConfig("model/scheduler/scheduler_config.json")
//	ns, err := sampler.NewNoiseSchedule(cfg)          // betas, ᾱ, prediction type
//	noise := rng.Randn(x0.Shape()...)
//	xt := ns.AddNoise(x0, noise, t)                   // t: one timestep per sample
//	target := ns.Target(x0, noise, t)                 // ε, v = √ᾱ·ε − √(1−ᾱ)·x₀, or ε − x₀
//	w := ns.MinSNRWeight(t[i], 5)                     // or ns.SNR(t[i])
//
// Discrete schedules (epsilon, v_prediction, sample) take integer timesteps in
// [0, T); flow schedules take t in [0, T] with σ = t/T. Betas come from linear,
// scaled_linear or squaredcos_cap_v2 (or trained_betas), optionally rescaled to zero
// terminal SNR; every table is computed in float32 exactly as PyTorch does.
//
// # Sampling
//
//	s, err := sampler.New("dpmpp_2m_karras", cfg)     // or ddim, ddpm, euler, euler_a, heun, flow_euler
//	rng := sampler.NewRNG(seed)
//	x := rng.Randn(1, 4, 64, 64)
//	model := sampler.Guidance{Scale: 7.5}.Batched(unetOnDoubledBatch)
//	latent, err := sampler.Sample(ctx, s, model, x, 30, rng, progress)
//	latent, err := sampler.Img2Img(ctx, s, model, encoded, 0.6, 30, rng, progress)
//
// Each Sampler reproduces its diffusers v0.31.0 class (DDIMScheduler, DDPMScheduler,
// EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler,
// DPMSolverMultistepScheduler with dpmsolver++, FlowMatchEulerDiscreteScheduler):
// timestep spacing (leading + steps_offset, trailing, linspace), sigma tables,
// init_noise_sigma, scale_model_input, the step, and the traps the golden traces
// record — DPM++ 2M's first and last steps are first order, and flow_euler shifts its
// sigmas twice (see New). The updates are written per element in PyTorch's float32
// operation order, so the golden trajectories match to ~5e-7 of max|value|.
//
// Not implemented: Euler's s_churn/s_noise (stochastic Euler), dynamic thresholding,
// DPM-Solver (non ++), SDE and third-order variants, exponential/beta/λ-uniform sigma
// spacings, Euler's log_linear interpolation; configs asking for them are rejected
// with an error naming the field.
//
// # Randomness
//
// RNG is a counter-based generator (Philox4x32-10 and Box–Muller with fixed-sequence
// float64 ln/sin/cos, documented exactly on the type) so that a seed gives the same
// latent on every run and machine. Initial latents, img2img noise and ancestral noise
// come from it, in that order. It does not reproduce PyTorch's mt19937 streams.
package sampler
