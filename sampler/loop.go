package sampler

import (
	"context"
	"fmt"
	"math"

	"github.com/difftune/difftune/tensor"
)

// Model is a denoiser call independent of any architecture: the model output (ε, v or
// x₀ by the prediction type) for the scaled latent x at timestep t. It must return a
// new tensor of x's shape, which the loop releases; it must not release x.
type Model func(x *tensor.Tensor, t float32) (*tensor.Tensor, error)

// Sample runs the whole denoising trajectory of diffusers' text-to-image pipelines:
// s.SetTimesteps(steps), x = xInit·InitNoiseSigma, then for every timestep the model
// on ScaleModelInput(x) and Step. xInit is unit-variance noise (e.g. RNG.Randn); it is
// not released. noise feeds the ancestral draws and may be nil for deterministic
// samplers. progress, if not nil, is called after each model evaluation with (done,
// total). Sample stops with ctx's error when ctx is cancelled between evaluations, and
// returns the model's error wrapped with the step. The caller releases the result.
func Sample(ctx context.Context, s Sampler, model Model, xInit *tensor.Tensor, steps int, noise NoiseSource, progress func(i, n int)) (*tensor.Tensor, error) {
	if err := s.SetTimesteps(steps); err != nil {
		return nil, err
	}
	sigma := s.InitNoiseSigma()
	x := ew1(xInit, func(v float32) float32 { return v * sigma })
	return run(ctx, s, model, x, 0, noise, progress)
}

// Img2Img runs diffusers' image-to-image loop from the clean latent x0: of steps
// steps it skips the first steps − ⌊steps·strength⌋ (flow_euler, like diffusers' SD3
// pipeline: int(steps − steps·strength)), noises x0 to the first remaining timestep
// with AddNoise and noise drawn first from rng, and denoises from there. strength 1
// starts from pure noise at the first timestep; a strength that leaves no step is an
// error. rng gives the noise and then the ancestral draws. x0 is not released.
func Img2Img(ctx context.Context, s Sampler, model Model, x0 *tensor.Tensor, strength float64, steps int, rng NoiseSource, progress func(i, n int)) (*tensor.Tensor, error) {
	if strength <= 0 || strength > 1 || math.IsNaN(strength) {
		return nil, fmt.Errorf("img2img strength %v: want a value in (0, 1]", strength)
	}
	if rng == nil {
		return nil, fmt.Errorf("img2img needs a noise source to noise the input latent")
	}
	if err := s.SetTimesteps(steps); err != nil {
		return nil, err
	}
	var start int
	if s.Name() == "flow_euler" {
		start = int(math.Max(float64(steps)-float64(steps)*strength, 0))
	} else {
		start = steps - min(int(float64(steps)*strength), steps)
	}
	if start >= steps {
		return nil, fmt.Errorf("img2img strength %v with %d steps leaves no denoising step: raise the strength or the steps", strength, steps)
	}
	begin := start * s.Order()
	n := rng.Randn(x0.Shape()...)
	defer n.Release()
	x := s.AddNoise(x0, n, begin)
	return run(ctx, s, model, x, begin, rng, progress)
}

// run denoises x (which it owns) from evaluation begin to the end.
func run(ctx context.Context, s Sampler, model Model, x *tensor.Tensor, begin int, noise NoiseSource, progress func(i, n int)) (*tensor.Tensor, error) {
	if s.Stochastic() && noise == nil {
		x.Release()
		return nil, fmt.Errorf("sampler %s draws noise at every step: give it a noise source (an RNG)", s.Name())
	}
	ts := s.Timesteps()
	for i := begin; i < len(ts); i++ {
		if err := ctx.Err(); err != nil {
			x.Release()
			return nil, err
		}
		in := s.ScaleModelInput(x, i)
		out, err := model(in, ts[i])
		in.Release()
		if err != nil {
			x.Release()
			return nil, fmt.Errorf("sampler %s: step %d/%d (t=%v): %w", s.Name(), i+1, len(ts), ts[i], err)
		}
		if !sameShape(out, x) {
			shape := out.Shape()
			out.Release()
			x.Release()
			return nil, fmt.Errorf("sampler %s: model output shape %v, latent shape %v", s.Name(), shape, x.Shape())
		}
		prev, x0 := s.Step(out, i, x, noise)
		tensor.Release(out, x, x0)
		x = prev
		if progress != nil {
			progress(i-begin+1, len(ts)-begin)
		}
	}
	return x, nil
}

// Guidance is classifier-free guidance (Ho & Salimans 2022): the guided prediction is
// uncond + Scale·(cond − uncond). Scale 1 is the conditional prediction alone (one
// model call). Rescale φ > 0 applies the guidance rescale of Lin et al. 2023
// (diffusers' guidance_rescale): out = φ·g·(std(cond)/std(g)) + (1−φ)·g with per-sample
// unbiased standard deviations.
type Guidance struct {
	Scale   float32
	Rescale float32
}

// Combine returns the guided prediction from the unconditional and conditional
// outputs (same shape, [N, ...]); it panics if the shapes differ.
func (g Guidance) Combine(uncond, cond *tensor.Tensor) *tensor.Tensor {
	sc := g.Scale
	out := ew2("Guidance", uncond, cond, func(u, c float32) float32 { return u + float32(sc*(c-u)) })
	if g.Rescale > 0 {
		rescaleGuidance(out, cond, g.Rescale)
	}
	return out
}

// rescaleGuidance applies the guidance rescale in place on out, per sample.
func rescaleGuidance(out, cond *tensor.Tensor, phi float32) {
	n := out.Dim(0)
	o, c := out.Data(), cond.Data()
	per := len(o) / n
	std := func(v []float32) float64 {
		var mean, ss float64
		for _, x := range v {
			mean += float64(x)
		}
		mean /= float64(len(v))
		for _, x := range v {
			ss += (float64(x) - mean) * (float64(x) - mean)
		}
		return math.Sqrt(ss / float64(max(len(v)-1, 1)))
	}
	for b := range n {
		ob, cb := o[b*per:(b+1)*per], c[b*per:(b+1)*per]
		r := float32(std(cb) / std(ob))
		for i, v := range ob {
			ob[i] = float32(phi*float32(v*r)) + float32((1-phi)*v)
		}
	}
}

// Separate returns a Model that calls cond and uncond (each on x) and combines them.
func (g Guidance) Separate(cond, uncond Model) Model {
	return func(x *tensor.Tensor, t float32) (*tensor.Tensor, error) {
		c, err := cond(x, t)
		if err != nil || g.Scale == 1 {
			return c, err
		}
		defer c.Release()
		u, err := uncond(x, t)
		if err != nil {
			return nil, err
		}
		defer u.Release()
		return g.Combine(u, c), nil
	}
}

// Batched returns a Model that runs both once on the doubled batch [x; x] (the
// unconditional half first, as diffusers' torch.cat([negative, positive])), then
// splits its [2N, ...] output and combines the halves. both must put the
// unconditional conditioning on the first N samples.
func (g Guidance) Batched(both Model) Model {
	return func(x *tensor.Tensor, t float32) (*tensor.Tensor, error) {
		xx := tensor.Concat(0, x, x)
		defer xx.Release()
		out, err := both(xx, t)
		if err != nil {
			return nil, err
		}
		defer out.Release()
		if out.Dim(0) != 2*x.Dim(0) {
			return nil, fmt.Errorf("guidance: model returned batch %d for a doubled batch of %d", out.Dim(0), 2*x.Dim(0))
		}
		halves := tensor.Chunk(out, 2, 0)
		defer tensor.Release(halves...)
		return g.Combine(halves[0], halves[1]), nil
	}
}
