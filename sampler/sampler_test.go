package sampler

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/difftune/difftune/tensor"
)

// sdBetas is the Stable Diffusion training schedule (the golden configs use it too).
var sdBetas = Config{BetaSchedule: ScaledLinear, BetaStart: 0.00085, BetaEnd: 0.012}

// gaussianDenoiser returns the ideal ε-model for data x₀ ~ N(0, s²) per element,
// for a sigma-parameterised sampler s (σ looked up from its timestep table):
// D(x; σ) = x·s²/(s²+σ²), ε = (x − D)/σ, with the model input scaled by 1/√(σ²+1).
// The probability-flow ODE dx/dσ = x·σ/(s²+σ²) then has the closed-form solution
// x(σ) = x(σ₀)·√((s²+σ²)/(s²+σ₀²)).
func gaussianDenoiser(t *testing.T, smp Sampler, s float64) Model {
	sig := map[float32]float64{}
	for i, ts := range smp.Timesteps() {
		sig[ts] = float64(smp.Sigmas()[i])
	}
	return func(x *tensor.Tensor, ts float32) (*tensor.Tensor, error) {
		sigma, ok := sig[ts]
		if !ok {
			t.Fatalf("model called at unknown timestep %v", ts)
		}
		k := math.Sqrt(sigma*sigma+1) * sigma / (s*s + sigma*sigma)
		return ew1(x, func(v float32) float32 { return float32(float64(v) * k) }), nil
	}
}

// odeError samples with name and steps from a fixed latent and returns the max
// relative error of the final latent against the closed-form ODE solution.
func odeError(t *testing.T, name string, steps int) float64 {
	const s = 0.8
	smp, err := New(name, sdBetas)
	if err != nil {
		t.Fatal(err)
	}
	if err := smp.SetTimesteps(steps); err != nil {
		t.Fatal(err)
	}
	xInit := NewRNG(5).Randn(1, 4, 4, 4)
	defer xInit.Release()
	sigmaMax := float64(smp.InitNoiseSigma())
	out, err := Sample(context.Background(), smp, gaussianDenoiser(t, smp, s), xInit, steps, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	var worst, scale float64
	for i, v := range out.Data() {
		exact := float64(xInit.Data()[i]) * sigmaMax * s / math.Sqrt(s*s+sigmaMax*sigmaMax)
		worst = math.Max(worst, math.Abs(float64(v)-exact))
		scale = math.Max(scale, math.Abs(exact))
	}
	return worst / scale
}

// TestHeunClosedForm checks Heun (which has no golden trace) on an ODE with a known
// solution, and its convergence order: doubling the steps must cut Heun's error by
// about 4 (second order) and Euler's by about 2 (first order).
func TestHeunClosedForm(t *testing.T) {
	var heun, eul []float64
	for _, n := range []int{10, 20, 40} {
		heun = append(heun, odeError(t, "heun", n))
		eul = append(eul, odeError(t, "euler", n))
	}
	t.Logf("max rel error at 10/20/40 steps: heun %.3g, euler %.3g", heun, eul)
	for i := 1; i < len(heun); i++ {
		// Asymptotic ratios are 4 and 2; the non-uniform σ grid and float32 rounding
		// (~1e-6) keep them from being exact, so we ask for clearly second order
		// (> 3) and clearly not second order for Euler (< 2.6).
		if r := heun[i-1] / heun[i]; r < 3 {
			t.Errorf("heun error ratio %d→%d steps = %.2f, want ≈ 4", 10<<(i-1), 10<<i, r)
		}
		if r := eul[i-1] / eul[i]; r < 1.5 || r > 2.6 {
			t.Errorf("euler error ratio %d→%d steps = %.2f, want ≈ 2", 10<<(i-1), 10<<i, r)
		}
	}
	// At 40 steps Heun should be far more accurate than Euler.
	if heun[2] > 1e-3 || heun[2] > eul[2]/10 {
		t.Errorf("heun at 40 steps: %.3g (euler %.3g)", heun[2], eul[2])
	}
}

// TestHeunTimesteps checks Heun's repeated timesteps: 2n−1 evaluations.
func TestHeunTimesteps(t *testing.T) {
	h, e := mustNew(t, "heun", sdBetas, 5), mustNew(t, "euler", sdBetas, 5)
	ht, et := h.Timesteps(), e.Timesteps()
	want := []float32{et[0], et[1], et[1], et[2], et[2], et[3], et[3], et[4], et[4]}
	if len(ht) != len(want) {
		t.Fatalf("heun timesteps %v, want %v", ht, want)
	}
	for i := range want {
		if ht[i] != want[i] {
			t.Fatalf("heun timesteps %v, want %v", ht, want)
		}
	}
	if h.Order() != 2 || len(h.Sigmas()) != len(ht)+1 || h.Sigmas()[len(ht)] != 0 {
		t.Errorf("order %d, sigmas %v", h.Order(), h.Sigmas())
	}
}

// TestDDIMEtaDeterminism: with eta > 0 DDIM draws noise from the RNG, so one seed
// must give the same latent bit for bit, another seed a different one, and eta = 0 a
// third.
func TestDDIMEtaDeterminism(t *testing.T) {
	run := func(eta float64, seed uint64) []float32 {
		cfg := sdBetas
		cfg.Eta = eta
		s, err := New("ddim", cfg)
		if err != nil {
			t.Fatal(err)
		}
		rng := NewRNG(seed)
		x := rng.Randn(1, 4, 8, 8)
		defer x.Release()
		out, err := Sample(context.Background(), s, fakeModel, x, 10, rng, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Release()
		return out.Float32s()
	}
	a, b, c, d := run(1, 3), run(1, 3), run(1, 4), run(0, 3)
	same := func(x, y []float32) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("ddim eta=1: the same seed gave different latents")
	}
	if same(a, c) {
		t.Error("ddim eta=1: seeds 3 and 4 gave the same latent")
	}
	if same(a, d) {
		t.Error("ddim eta=1 and eta=0 gave the same latent: no noise was added")
	}
	s, _ := New("ddim", Config{Eta: 1})
	z := tensor.Zeros(1)
	defer z.Release()
	if _, err := Sample(context.Background(), s, fakeModel, z, 5, nil, nil); err == nil || !strings.Contains(err.Error(), "noise source") {
		t.Errorf("eta > 0 without an RNG: err = %v", err)
	}
}

func TestUnknownSampler(t *testing.T) {
	_, err := New("dpm_adaptive", Config{})
	if err == nil {
		t.Fatal("no error for an unknown sampler")
	}
	for _, n := range Names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not list %s", err, n)
		}
	}
	if _, err := New("dpmpp_2m", Config{SolverOrder: 3}); err == nil || !strings.Contains(err.Error(), `"solver_order"`) {
		t.Errorf("solver_order 3: %v", err)
	}
	if _, err := New("euler", Config{AlgorithmType: "sde-dpmsolver++"}); err != nil {
		t.Errorf("a DPM-only field stopped euler: %v", err)
	}
	if _, err := New("euler", Config{PredictionType: Flow}); err == nil {
		t.Error("euler accepted a flow model")
	}
}

func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ json, want string }{
		{`{"beta_schedule": "cosine"}`, `"beta_schedule"`},
		{`{"num_train_timesteps": "many"}`, `"num_train_timesteps"`},
		{`{"timestep_spacing": "even"}`, `"timestep_spacing"`},
		{`{"use_beta_sigmas": true}`, `"use_beta_sigmas"`},
		{`[1, 2]`, `not a JSON object`},
	} {
		p := filepath.Join(dir, "scheduler_config.json")
		if err := os.WriteFile(p, []byte(tc.json), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want the file and %s", tc.json, err, tc.want)
		}
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
	c, err := ParseConfig([]byte(`{"lambda_min_clipped": -Infinity, "steps_offset": 1, "clip_sample": false, "_note": "NaN inside a string"}`))
	if err != nil || !math.IsInf(c.LambdaMinClipped, -1) || c.StepsOffset != 1 || c.ClipSample == nil || *c.ClipSample {
		t.Errorf("ParseConfig = %+v, %v", c, err)
	}
}

// TestTimestepSpacing checks the three spacings against values worked out by hand from
// diffusers' formulas (T = 1000, 10 steps).
func TestTimestepSpacing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spacing string
		offset  int
		want    []float32
	}{
		{"ddim", "leading", 1, []float32{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}},
		{"ddim", "trailing", 0, []float32{999, 899, 799, 699, 599, 499, 399, 299, 199, 99}},
		{"ddim", "linspace", 0, []float32{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}},
		{"dpmpp_2m", "linspace", 0, []float32{999, 899, 799, 699, 599, 500, 400, 300, 200, 100}},
		{"dpmpp_2m", "leading", 1, []float32{901, 811, 721, 631, 541, 451, 361, 271, 181, 91}},
		{"dpmpp_2m", "trailing", 0, []float32{999, 899, 799, 699, 599, 499, 399, 299, 199, 99}},
	} {
		cfg := sdBetas
		cfg.TimestepSpacing, cfg.StepsOffset = tc.spacing, tc.offset
		s := mustNew(t, tc.name, cfg, 10)
		for i, w := range tc.want {
			if s.Timesteps()[i] != w {
				t.Errorf("%s %s: timesteps %v, want %v", tc.name, tc.spacing, s.Timesteps(), tc.want)
				break
			}
		}
	}
}

// TestZeroTerminalSNR: rescaled betas end at ᾱ_T = 0 (SNR 0) and keep ᾱ_0; samplers
// that need a finite σ_max still run (ᾱ_T = 2⁻²⁴, σ_max ≈ 4096).
func TestZeroTerminalSNR(t *testing.T) {
	cfg := sdBetas
	cfg.RescaleBetasZeroSNR = true
	cfg.TimestepSpacing = "trailing"
	cfg.PredictionType = VPrediction
	ns, err := NewNoiseSchedule(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := NewNoiseSchedule(sdBetas)
	if ac := ns.AlphasCumprod; ac[len(ac)-1] > 1e-12 || math.Abs(float64(ac[0]-plain.AlphasCumprod[0])) > 1e-6 {
		t.Errorf("rescaled ᾱ_0 = %v (plain %v), ᾱ_T = %v", ac[0], plain.AlphasCumprod[0], ac[len(ac)-1])
	}
	if snr := ns.SNR(999); snr > 1e-12 {
		t.Errorf("SNR(999) = %v, want 0", snr)
	}
	for _, name := range []string{"ddim", "euler", "dpmpp_2m"} {
		s := mustNew(t, name, cfg, 10)
		x := NewRNG(1).Randn(1, 4, 4, 4)
		out, err := Sample(context.Background(), s, fakeModel, x, 10, nil, nil)
		x.Release()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range out.Data() {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Errorf("%s with zero terminal SNR produced %v", name, v)
				break
			}
		}
		out.Release()
		if name == "euler" && math.Abs(float64(s.Sigmas()[0])-4096) > 1 {
			t.Errorf("euler σ_max with zero terminal SNR = %v, want ≈ 4096", s.Sigmas()[0])
		}
	}
}

// TestBetaSchedules checks squaredcos_cap_v2 is a valid decreasing-ᾱ schedule capped
// at 0.999, and that the NoiseSchedule target and SNR agree with their definitions.
func TestBetaSchedules(t *testing.T) {
	b, err := Betas(Config{BetaSchedule: SquaredCosCapV2})
	if err != nil {
		t.Fatal(err)
	}
	// ᾱ(t) = cos²((t/T + 0.008)/1.008·π/2): β_0 = 1 − ᾱ(1/T)/ᾱ(0).
	ab := func(x float64) float64 { c := math.Cos((x + 0.008) / 1.008 * math.Pi / 2); return c * c }
	if want := float32(1 - ab(0.001)/ab(0)); b[0] != want || b[999] != 0.999 {
		t.Errorf("β_0 = %v (want %v), β_999 = %v (want 0.999)", b[0], want, b[999])
	}
	if _, err := Betas(Config{BetaSchedule: "cosine"}); err == nil {
		t.Error("unknown beta schedule accepted")
	}
	ns, _ := NewNoiseSchedule(Config{PredictionType: Flow})
	x0, n := tensor.FromFloat32([]float32{1, 2}, 2, 1), tensor.FromFloat32([]float32{-1, 0.5}, 2, 1)
	defer tensor.Release(x0, n)
	xt := ns.AddNoise(x0, n, []float32{250, 1000})
	tg := ns.Target(x0, n, []float32{250, 1000})
	defer tensor.Release(xt, tg)
	if got := xt.Data(); got[0] != 0.75*1+0.25*-1 || got[1] != 0.5 {
		t.Errorf("flow AddNoise = %v", got)
	}
	if got := tg.Data(); got[0] != -2 || got[1] != -1.5 {
		t.Errorf("flow Target = %v", got)
	}
	if snr := ns.SNR(500); snr != 1 {
		t.Errorf("flow SNR(σ=0.5) = %v, want 1", snr)
	}
	if w := ns.MinSNRWeight(100, 5); math.Abs(w-5/(81+1.0)) > 1e-7 /* σ = 0.1 in float32 */ {
		t.Errorf("flow min-SNR weight at σ=0.1 = %v, want 5/82", w)
	}
}

// TestFlowShift checks flow_euler's two shift modes against the closed forms: shifted
// once, σ_i = shift(linspace(1, 1/T, n)_i); by default (diffusers v0.31.0) the
// linspace runs between the shifted ends and is shifted again.
func TestFlowShift(t *testing.T) {
	const shift, n = 3.0, 5
	sh := func(s float64) float64 { return shift * s / (1 + (shift-1)*s) }
	for _, once := range []bool{false, true} {
		s := mustNew(t, "flow_euler", Config{Shift: shift, FlowShiftOnce: once}, n)
		lo, hi := 0.001, 1.0
		if !once {
			lo, hi = sh(lo), sh(hi)
		}
		for i := range n {
			want := sh(hi + float64(i)*(lo-hi)/(n-1))
			if got := float64(s.Sigmas()[i]); math.Abs(got-want) > 1e-6 {
				t.Errorf("once=%v: σ_%d = %v, want %v", once, i, got, want)
			}
		}
	}
	c := Config{Shift: 1, UseDynamicShifting: true}
	c.Mu = c.FlowShiftMu(4096)
	if math.Abs(c.Mu-1.15) > 1e-12 {
		t.Errorf("μ at max_image_seq_len = %v, want max_shift 1.15", c.Mu)
	}
	s := mustNew(t, "flow_euler", c, 4)
	if got, want := float64(s.Sigmas()[1]), math.Exp(1.15)/(math.Exp(1.15)+(1/(2.0/3+1.0/3000)-1)); math.Abs(got-want) > 1e-6 {
		t.Errorf("dynamic σ_1 = %v, want %v", got, want)
	}
}

// TestImg2Img checks the img2img loop: for strength s it starts at step
// steps − ⌊steps·s⌋, noises the input with the first draw of the RNG to that level,
// and equals running the sampler by hand from there.
func TestImg2Img(t *testing.T) {
	for _, name := range []string{"ddim", "euler_a", "heun", "dpmpp_2m", "flow_euler"} {
		cfg := sdBetas
		if name == "flow_euler" {
			cfg = Config{Shift: 3}
		}
		s := mustNew(t, name, cfg, 10)
		x0 := NewRNG(9).Randn(1, 2, 4, 4)
		got, err := Img2Img(context.Background(), s, fakeModel, x0, 0.6, 10, NewRNG(11), nil)
		if err != nil {
			t.Fatal(err)
		}
		// By hand: 10 − ⌊6⌋ = 4 steps skipped.
		rng := NewRNG(11)
		noise := rng.Randn(x0.Shape()...)
		s2 := mustNew(t, name, cfg, 10)
		begin := 4 * s2.Order()
		x := s2.AddNoise(x0, noise, begin)
		evals := 0
		for i := begin; i < len(s2.Timesteps()); i++ {
			in := s2.ScaleModelInput(x, i)
			out, _ := fakeModel(in, s2.Timesteps()[i])
			prev, p := s2.Step(out, i, x, rng)
			tensor.Release(in, out, x, p)
			x = prev
			evals++
		}
		if d := maxDiff(got.Data(), x.Data()); d != 0 {
			t.Errorf("%s: Img2Img differs from the hand loop by %g", name, d)
		}
		if want := 6*s2.Order() - (s2.Order() - 1); evals != want {
			t.Errorf("%s: %d evaluations, want %d", name, evals, want)
		}
		tensor.Release(x0, got, noise, x)
	}
	s := mustNew(t, "euler", sdBetas, 10)
	x0 := tensor.Zeros(1, 1)
	defer x0.Release()
	if _, err := Img2Img(context.Background(), s, fakeModel, x0, 0.05, 10, NewRNG(1), nil); err == nil {
		t.Error("strength 0.05 with 10 steps (no step left) gave no error")
	}
}

func maxDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// TestGuidance checks CFG: the combination formula, and that the batched form (one
// call on [x; x], unconditional half first) equals two separate calls.
func TestGuidance(t *testing.T) {
	g := Guidance{Scale: 7.5}
	cond := func(x *tensor.Tensor, _ float32) (*tensor.Tensor, error) {
		return ew1(x, func(v float32) float32 { return 2*v + 1 }), nil
	}
	uncond := func(x *tensor.Tensor, _ float32) (*tensor.Tensor, error) {
		return ew1(x, func(v float32) float32 { return v - 1 }), nil
	}
	both := func(x *tensor.Tensor, ts float32) (*tensor.Tensor, error) {
		h := tensor.Chunk(x, 2, 0)
		defer tensor.Release(h...)
		u, _ := uncond(h[0], ts)
		c, _ := cond(h[1], ts)
		defer tensor.Release(u, c)
		return tensor.Concat(0, u, c), nil
	}
	x := tensor.FromFloat32([]float32{0.5, -2, 3, 0.25}, 2, 2)
	defer x.Release()
	a, _ := g.Separate(cond, uncond)(x, 10)
	b, _ := g.Batched(both)(x, 10)
	defer tensor.Release(a, b)
	for i, v := range x.Data() {
		want := (v - 1) + 7.5*((2*v+1)-(v-1))
		if a.Data()[i] != want || b.Data()[i] != want {
			t.Errorf("guided[%d]: separate %v, batched %v, want %v", i, a.Data()[i], b.Data()[i], want)
		}
	}
	// Guidance rescale φ = 1 gives the guided output the conditional output's std.
	r := Guidance{Scale: 7.5, Rescale: 1}
	c, _ := cond(x, 0)
	u, _ := uncond(x, 0)
	out := r.Combine(u, c)
	defer tensor.Release(c, u, out)
	std := func(v []float32) float64 {
		m := (float64(v[0]) + float64(v[1])) / 2
		return math.Hypot(float64(v[0])-m, float64(v[1])-m) // unbiased, n = 2
	}
	for b := range 2 {
		if got, want := std(out.Data()[2*b:2*b+2]), std(c.Data()[2*b:2*b+2]); math.Abs(got-want) > 1e-5 {
			t.Errorf("rescaled std of sample %d = %v, want %v", b, got, want)
		}
	}
}

// TestSampleCancel: a cancelled context stops the loop with its error and leaks
// nothing; a model error names the step.
func TestSampleCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := mustNew(t, "euler", sdBetas, 10)
	x := tensor.Zeros(1, 4)
	defer x.Release()
	calls := 0
	model := func(in *tensor.Tensor, ts float32) (*tensor.Tensor, error) {
		calls++
		if calls == 3 {
			cancel()
		}
		return fakeModel(in, ts)
	}
	if _, err := Sample(ctx, s, model, x, 10, nil, nil); !errors.Is(err, context.Canceled) || calls != 3 {
		t.Errorf("err = %v after %d calls, want context.Canceled after 3", err, calls)
	}
	boom := errors.New("boom")
	_, err := Sample(context.Background(), s, func(*tensor.Tensor, float32) (*tensor.Tensor, error) { return nil, boom }, x, 10, nil, nil)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "step 1/10") {
		t.Errorf("model error: %v", err)
	}
	var seen []int
	out, err := Sample(context.Background(), s, fakeModel, x, 4, nil, func(i, n int) { seen = append(seen, i*10+n) })
	if err != nil {
		t.Fatal(err)
	}
	out.Release()
	if len(seen) != 4 || seen[0] != 14 || seen[3] != 44 {
		t.Errorf("progress calls %v", seen)
	}
}
