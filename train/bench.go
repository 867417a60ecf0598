package train

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/dit"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// BenchConfig describes the training step `difftune bench step` times.
type BenchConfig struct {
	Model   string // a DiT preset name, e.g. "dit-s-2"
	Adapter string // an adapter kind, or "full" for full finetuning
	Form    adapters.Form
	Rank    int
	Targets string // adapter targets (default "attn": qkv and proj)
	Batch   int
	Latent  int // latent side; 0 means the preset's
	Steps   int // timed steps (median reported)
	Warmup  int
	Seed    uint64
	// Checkpoint runs every block under gradient checkpointing.
	Checkpoint bool
}

// BenchResult holds medians over the timed steps, in seconds, and peak memory.
type BenchResult struct {
	Model     string  `json:"model"`
	Adapter   string  `json:"adapter"`
	Form      string  `json:"form"`
	Rank      int     `json:"rank"`
	Batch     int     `json:"batch"`
	Latent    int     `json:"latent"`
	Threads   int     `json:"threads"`
	StepS     float64 `json:"step_s"`
	FwdS      float64 `json:"fwd_s"`
	BwdS      float64 `json:"bwd_s"`
	OptS      float64 `json:"opt_s"`
	PeakLive  int64   `json:"peak_live_bytes"`
	PeakRSS   int64   `json:"peak_rss_bytes"`
	PeakSaved int64   `json:"peak_saved_bytes"`
	Trainable int64   `json:"trainable_params"`
	Checkpt   bool    `json:"checkpointing"`
}

// BenchStep times DiT training steps as ../shared/ref/dit_step.py does: DDPM noising
// (linear betas 1e-4..0.02 over 1000 steps), forward in training mode (label dropout
// 0.1), MSE against ε on the first C output channels, backward, AdamW (lr 1e-4,
// weight decay 0.01), gradients released. Forward time includes noising and the loss.
func BenchStep(c BenchConfig) (BenchResult, error) {
	r, err := newBenchRun(c)
	if err != nil {
		return BenchResult{}, err
	}
	defer r.release()
	var fwd, bwd, optT, step []float64
	for i := range c.Warmup + c.Steps {
		if i == c.Warmup {
			tensor.CPU.ResetPeak()
		}
		f, b, o, err := r.step()
		if err != nil {
			return BenchResult{}, err
		}
		if i >= c.Warmup {
			fwd = append(fwd, f.Seconds())
			bwd = append(bwd, b.Seconds())
			optT = append(optT, o.Seconds())
			step = append(step, (f + b + o).Seconds())
		}
	}
	res := r.res
	st := tensor.CPU.Stats()
	res.StepS, res.FwdS, res.BwdS, res.OptS = median(step), median(fwd), median(bwd), median(optT)
	res.PeakLive, res.PeakSaved, res.PeakRSS = st.Peak, st.PeakSaved, peakRSS()
	return res, nil
}

// benchRun is the model, adapter, optimizer and data of BenchStep, one step at a time.
type benchRun struct {
	c      BenchConfig
	dc     dit.DiTConfig
	m      *dit.DiT
	set    *adapters.Set
	opt    *AdamW
	res    BenchResult // the configuration fields
	abar   []float64
	rng    *rand.Rand
	x0     *tensor.Tensor
	ts     []float32 // per-step scratch, reused
	coefA  []float32
	coefB  []float32
	labels []int
}

func newBenchRun(c BenchConfig) (*benchRun, error) {
	cfg, ok := dit.Presets[c.Model]
	if !ok {
		return nil, fmt.Errorf("--model %q: bench step runs the DiT presets (%s)", c.Model, strings.Join(ditNames(), ", "))
	}
	dc, ok := cfg.(dit.DiTConfig)
	if !ok {
		return nil, fmt.Errorf("--model %q is not a class-conditional DiT", c.Model)
	}
	if c.Latent > 0 {
		dc.InputSize = c.Latent
	}
	if c.Batch <= 0 || c.Steps <= 0 || c.Warmup < 0 {
		return nil, fmt.Errorf("--batch %d, --steps %d, --warmup %d: batch and steps must be positive", c.Batch, c.Steps, c.Warmup)
	}
	m, err := dit.NewDiT(dc, rand.New(rand.NewPCG(c.Seed, 1)))
	if err != nil {
		return nil, err
	}
	r := &benchRun{c: c, dc: dc, m: m}
	m.Checkpoint = c.Checkpoint
	var params []*tensor.Tensor
	if c.Adapter == "full" {
		nn.SetTrainable(m, true)
		for _, p := range m.Params("") {
			params = append(params, p.T())
		}
	} else {
		targets := c.Targets
		if targets == "" {
			targets = adapters.TargetAttn
		}
		tg, err := adapters.ParseTargets(targets)
		if err != nil {
			r.release()
			return nil, err
		}
		set, err := adapters.Inject(m, adapters.Config{Kind: adapters.Kind(c.Adapter), Rank: c.Rank, Form: c.Form, Seed: c.Seed}, tg)
		if err != nil {
			r.release()
			return nil, err
		}
		r.set = set
		set.Train(true)
		params = set.Trainable()
	}
	r.opt = NewAdamW(params, 1e-4, 0.01)
	r.res = BenchResult{Model: c.Model, Adapter: c.Adapter, Form: string(c.Form), Rank: c.Rank, Batch: c.Batch,
		Latent: dc.InputSize, Threads: tensor.Threads(), Checkpt: c.Checkpoint}
	for _, p := range params {
		r.res.Trainable += int64(p.Len())
	}
	if c.Adapter == "full" {
		r.res.Form, r.res.Rank = "", 0
	}
	r.abar = linearAlphasCumprod(1e-4, 0.02, 1000)
	r.rng = rand.New(rand.NewPCG(c.Seed, 2))
	r.x0 = randn(r.rng, c.Batch, dc.InChannels, dc.InputSize, dc.InputSize)
	r.ts = make([]float32, c.Batch)
	r.coefA, r.coefB = make([]float32, c.Batch), make([]float32, c.Batch)
	r.labels = make([]int, c.Batch)
	return r, nil
}

// step runs one training step and returns the time of its forward (noising and loss
// included), backward and optimizer parts.
func (r *benchRun) step() (fwd, bwd, opt time.Duration, err error) {
	c, dc := r.c, r.dc
	t0 := time.Now()
	for b := range r.ts {
		k := r.rng.IntN(1000)
		r.ts[b] = float32(k)
		r.coefA[b], r.coefB[b] = float32(math.Sqrt(r.abar[k])), float32(math.Sqrt(1-r.abar[k]))
	}
	eps := randn(r.rng, c.Batch, dc.InChannels, dc.InputSize, dc.InputSize)
	xt := noised(r.x0, eps, r.coefA, r.coefB)
	for b := range r.labels {
		r.labels[b] = r.rng.IntN(dc.NumClasses)
	}
	labels := r.m.YEmbedder.Drop(r.labels, r.rng)
	out, err := r.m.Forward(xt, r.ts, labels)
	if err != nil {
		tensor.Release(eps, xt)
		return 0, 0, 0, err
	}
	pred := tensor.Slice(out, 1, 0, dc.InChannels) // the ε half of the learned-sigma output
	loss := tensor.MSELoss(pred, eps)
	t1 := time.Now()
	tensor.Backward(loss)
	t2 := time.Now()
	r.opt.Step()
	t3 := time.Now()
	tensor.Release(eps, xt, out, pred, loss)
	return t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), nil
}

func (r *benchRun) release() {
	if r.opt != nil {
		r.opt.Release()
	}
	if r.set != nil {
		r.set.Remove()
	}
	if r.x0 != nil {
		r.x0.Release()
	}
	r.m.Release()
}

func ditNames() []string {
	var out []string
	for name, c := range dit.Presets {
		if _, ok := c.(dit.DiTConfig); ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// linearAlphasCumprod returns ᾱ_t for DDPM's linear betas.
func linearAlphasCumprod(b0, b1 float64, n int) []float64 {
	out := make([]float64, n)
	p := 1.0
	for i := range out {
		beta := b0 + (b1-b0)*float64(i)/float64(n-1)
		p *= 1 - beta
		out[i] = p
	}
	return out
}

// noised returns √ᾱ_t·x0 + √(1−ᾱ_t)·ε per sample, as a leaf.
func noised(x0, eps *tensor.Tensor, a, b []float32) *tensor.Tensor {
	out := tensor.Zeros(x0.Shape()...)
	per := x0.Len() / len(a)
	xd, ed, od := x0.Data(), eps.Data(), out.Data()
	for i := range od {
		n := i / per
		od[i] = a[n]*xd[i] + b[n]*ed[i]
	}
	return out
}

func randn(rng *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.Zeros(shape...)
	for i := range t.Data() {
		t.Data()[i] = float32(rng.NormFloat64())
	}
	return t
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// peakRSS returns the process's peak resident set (VmHWM), or 0 where unavailable.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
