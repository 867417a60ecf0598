package train

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"

	"github.com/difftune/difftune/data"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/sampler"
	"github.com/difftune/difftune/tensor"
)

// Config is the optimisation and noise side of a training run.
type Config struct {
	LR          float64 // peak learning rate
	LRSchedule  string  // see Schedules
	Warmup      int     // warm-up steps
	Cycles      int     // cosine_with_restarts cycles
	Steps       int     // total optimizer steps
	WeightDecay float64
	GradAccum   int     // micro-batches per optimizer step (1: none)
	MaxGradNorm float64 // clip the global gradient norm (0: off)
	EMA         float64 // decay of an EMA of the adapter weights (0: off)
	NoiseOffset float64 // per-channel noise offset (0: off)
	MinSNRGamma float64 // min-SNR-γ loss weighting (0: off)
	// Timesteps is "uniform", or "logit_normal" (flow models: σ = sigmoid(N(0,1)),
	// then shifted by Shift as SD3 trains).
	Timesteps string
	Shift     float64
	Seed      uint64
}

// Trainer runs optimizer steps of an adapter set on a pipeline's denoiser.
type Trainer struct {
	cfg   Config
	p     *pipeline.Pipeline
	set   Weights
	opt   *AdamW
	sched *sampler.NoiseSchedule
	ema   []*tensor.Tensor
	// Step counts optimizer steps done; micro counts micro-batches in this step.
	Step, micro int
	// rng draws timesteps and noise: a position-addressed stream, so its state is
	// one number (see sampler.RNG).
	rng *sampler.RNG
	// TextCache, when set, keeps each caption's text-encoder output on disk under
	// TextEncoder (the encoder's identity); the text encoder is frozen, so a caption
	// seen before is read back instead of encoded.
	TextCache   *data.Cache
	TextEncoder string
}

// NewTrainer prepares training of set: adapters already injected into p's denoiser,
// or a FullModel of p.
func NewTrainer(p *pipeline.Pipeline, set Weights, c Config) (*Trainer, error) {
	if c.GradAccum <= 0 {
		c.GradAccum = 1
	}
	if c.LRSchedule == "" {
		c.LRSchedule = "constant"
	}
	if c.Timesteps == "" {
		c.Timesteps = "uniform"
	}
	if err := CheckSchedule(c.LRSchedule); err != nil {
		return nil, err
	}
	if c.Timesteps != "uniform" && c.Timesteps != "logit_normal" {
		return nil, fmt.Errorf("--timesteps %q: want uniform or logit_normal", c.Timesteps)
	}
	sched, err := sampler.NewNoiseSchedule(p.Scheduler)
	if err != nil {
		return nil, err
	}
	t := &Trainer{cfg: c, p: p, set: set, sched: sched, rng: sampler.NewRNG(c.Seed).Stream(1)}
	t.opt = NewAdamW(set.Trainable(), c.LR, c.WeightDecay)
	if c.EMA > 0 {
		for _, w := range set.Trainable() {
			t.ema = append(t.ema, w.Clone())
		}
	}
	set.Train(true)
	return t, nil
}

// Release frees the optimizer state and EMA copies.
func (t *Trainer) Release() {
	t.opt.Release()
	tensor.Release(t.ema...)
}

// LR returns the learning rate of the current step.
func (t *Trainer) LR() float64 {
	c := t.cfg
	return LRAt(c.LR, c.LRSchedule, t.Step, c.Steps, c.Warmup, c.Cycles)
}

// Micro runs one micro-batch: images [B, 3, H, W] in [-1, 1] with their captions (a
// latent-space pipeline encodes them with its VAE first, unless they are latents). It adds the gradients of
// loss/GradAccum and, on the last micro-batch of a step, clips, updates and advances
// Step. It returns the unweighted mean loss.
func (t *Trainer) Micro(pixels *tensor.Tensor, captions []string) (float64, error) {
	images := pixels // pixel space, or latents already encoded (and cached) by the source
	if t.p.VAE != nil && pixels.Dim(1) != t.p.Channels {
		tensor.NoGrad(func() { images = t.p.EncodeImages(pixels) })
		defer images.Release()
	}
	b := images.Dim(0)
	if len(captions) != b {
		return 0, fmt.Errorf("train: %d captions for %d images", len(captions), b)
	}
	cond, err := t.encode(captions)
	if err != nil {
		return 0, err
	}
	defer cond.Release()
	t.set.SetStep(uint64(t.Step*t.cfg.GradAccum + t.micro))
	ts := t.timesteps(b)
	noise := t.rng.Randn(images.Shape()...)
	defer noise.Release()
	if t.cfg.NoiseOffset > 0 {
		t.offsetNoise(noise)
	}
	xt := t.sched.AddNoise(images, noise, ts)
	target := t.sched.Target(images, noise, ts)
	defer tensor.Release(xt, target)
	out, err := t.p.Denoiser.Predict(xt, ts, cond)
	if err != nil {
		return 0, err
	}
	pred := out
	if out.Dim(1) != images.Dim(1) { // learned sigma: the first C channels
		pred = tensor.Slice(out, 1, 0, images.Dim(1))
		defer pred.Release()
	}
	defer out.Release()
	loss, plain := t.loss(pred, target, ts)
	defer loss.Release()
	tensor.Backward(loss)
	t.micro++
	if t.micro == t.cfg.GradAccum {
		t.update()
	}
	return plain, nil
}

// timesteps draws one timestep per sample.
func (t *Trainer) timesteps(b int) []float32 {
	u := t.rng.Randn(b)
	defer u.Release()
	n := float64(t.sched.NumTrainTimesteps)
	ts := make([]float32, b)
	for i := range ts {
		z := float64(u.Data()[i])
		if t.cfg.Timesteps == "logit_normal" {
			s := 1 / (1 + math.Exp(-z))
			if sh := t.cfg.Shift; sh > 0 && sh != 1 {
				s = sh * s / (1 + (sh-1)*s)
			}
			ts[i] = float32(s * n)
			continue
		}
		// Uniform over the integer timesteps: the normal's CDF makes a uniform.
		p := 0.5 * math.Erfc(-z/math.Sqrt2)
		ts[i] = float32(math.Min(math.Floor(p*n), n-1))
	}
	return ts
}

// offsetNoise adds NoiseOffset·N(0, 1) per (sample, channel) to the noise.
func (t *Trainer) offsetNoise(noise *tensor.Tensor) {
	b, c := noise.Dim(0), noise.Dim(1)
	off := t.rng.Randn(b * c)
	defer off.Release()
	hw := noise.Len() / (b * c)
	d := noise.Data()
	for i, o := range off.Data() {
		for j := range hw {
			d[i*hw+j] += float32(t.cfg.NoiseOffset) * o
		}
	}
}

// loss returns the (min-SNR weighted) mean squared error, scaled by 1/GradAccum for
// backward, and the plain mean for logging.
func (t *Trainer) loss(pred, target *tensor.Tensor, ts []float32) (*tensor.Tensor, float64) {
	b := pred.Dim(0)
	diff := tensor.Sub(pred, target)
	sq := tensor.Mul(diff, diff)
	per := tensor.Reshape(sq, b, -1)
	perMean := tensor.Mean(per, false, 1) // [B]
	w := make([]float32, b)
	for i := range w {
		w[i] = 1 / float32(b*t.cfg.GradAccum)
		if g := t.cfg.MinSNRGamma; g > 0 {
			w[i] *= float32(t.sched.MinSNRWeight(ts[i], g))
		}
	}
	wt := tensor.FromFloat32(w, b)
	weighted := tensor.Mul(perMean, wt)
	loss := tensor.Sum(weighted, false)
	var plain float64
	for _, v := range perMean.Data() {
		plain += float64(v) / float64(b)
	}
	tensor.Release(diff, sq, per, perMean, wt, weighted)
	return loss, plain
}

// update clips the gradient norm, steps the optimizer at this step's learning rate,
// updates the EMA, and advances Step.
func (t *Trainer) update() {
	params := t.set.Trainable()
	if t.cfg.MaxGradNorm > 0 {
		var sq float64
		for _, p := range params {
			if g := p.Grad(); g != nil {
				for _, v := range g.Data() {
					sq += float64(v) * float64(v)
				}
			}
		}
		if norm := math.Sqrt(sq); norm > t.cfg.MaxGradNorm {
			s := float32(t.cfg.MaxGradNorm / (norm + 1e-6))
			for _, p := range params {
				if g := p.Grad(); g != nil {
					for i := range g.Data() {
						g.Data()[i] *= s
					}
				}
			}
		}
	}
	t.opt.LR = t.LR()
	t.opt.Step()
	// The decay warms up as diffusers' EMAModel does, min(EMA, (1+n)/(10+n)) after n
	// updates, so that early averages are not dominated by the initial weights.
	n := float64(t.Step)
	d := float32(min(t.cfg.EMA, (1+n)/(10+n)))
	for i, e := range t.ema {
		w := params[i].Data()
		for j := range e.Data() {
			e.Data()[j] = d*e.Data()[j] + (1-d)*w[j]
		}
	}
	t.micro = 0
	t.Step++
}

// encode returns the conditioning of captions, through TextCache when it is set:
// one entry per caption, keyed by the caption's SHA-256 and the encoder's identity.
func (t *Trainer) encode(captions []string) (pipeline.Cond, error) {
	if _, full := t.set.(*FullModel); full {
		return t.p.EncodeGrad(captions) // the text encoder trains too
	}
	if t.TextCache == nil {
		return t.p.Encode(captions)
	}
	hidden := make([]*tensor.Tensor, len(captions))
	pooled := make([]*tensor.Tensor, len(captions))
	defer func() { tensor.Release(hidden...); tensor.Release(pooled...) }()
	for i, c := range captions {
		sum := sha256.Sum256([]byte(c))
		key := data.CacheKey{Hash: hex.EncodeToString(sum[:]), Encoder: "text|" + t.TextEncoder}
		got, ok, err := t.TextCache.Get(key)
		if err != nil {
			return pipeline.Cond{}, err
		}
		if ok && got["hidden"] != nil && got["pooled"] != nil {
			hidden[i], pooled[i] = got["hidden"], got["pooled"]
			continue
		}
		tensor.Release(got["hidden"], got["pooled"])
		one, err := t.p.Encode([]string{c})
		if err != nil {
			return pipeline.Cond{}, err
		}
		if err := t.TextCache.Put(key, map[string]*tensor.Tensor{"hidden": one.Hidden, "pooled": one.Pooled}); err != nil {
			one.Release()
			return pipeline.Cond{}, err
		}
		hidden[i], pooled[i] = one.Hidden, one.Pooled
	}
	return pipeline.Cond{Hidden: tensor.Concat(0, hidden...), Pooled: tensor.Concat(0, pooled...), Mask: t.p.TextMask(captions)}, nil
}
