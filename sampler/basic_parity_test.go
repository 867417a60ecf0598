package sampler

import (
	"path/filepath"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/internal/parity"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// TestScheduleParity checks the training schedule tables and the trainer's AddNoise
// and Target (velocity) against basic.safetensors (diffusers v0.27.2 DDPMScheduler,
// unchanged in v0.31) and the tables recorded with the traces. Per the file's notes
// the linear schedule is DDPMScheduler's default and scaled_linear uses the SD betas,
// which we take from configs/ddim.json.
func TestScheduleParity(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "schedulers")
	basic := parity.Open(t, filepath.Join(dir, "basic.safetensors"))
	traces := parity.Open(t, filepath.Join(dir, "traces.safetensors"))
	sd, err := LoadConfig(filepath.Join(dir, "configs", "ddim.json"))
	if err != nil {
		t.Fatal(err)
	}
	x0, noise := readT(t, basic, "sample"), readT(t, basic, "noise")
	var tAdd []float32
	for _, v := range readNumbers(t, basic, "t_add") {
		tAdd = append(tAdd, float32(v))
	}
	for _, tc := range []struct {
		prefix string
		file   *safetensors.File
		cfg    Config
	}{
		{"ddpm_linear", basic, Config{}},
		{"ddpm_scaled_linear", basic, Config{BetaSchedule: sd.BetaSchedule, BetaStart: sd.BetaStart, BetaEnd: sd.BetaEnd}},
		{"tables.scaled_linear", traces, Config{BetaSchedule: sd.BetaSchedule, BetaStart: sd.BetaStart, BetaEnd: sd.BetaEnd}},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			s, err := NewNoiseSchedule(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			// The tables are computed exactly as torch does (float32 linspace, float64
			// cumprod accumulation); 1e-6 leaves room for one float32 ulp.
			expectSlice(t, "betas", s.Betas, readT(t, tc.file, tc.prefix+".betas"), 1e-6)
			expectSlice(t, "alphas_cumprod", s.AlphasCumprod, readT(t, tc.file, tc.prefix+".alphas_cumprod"), 1e-6)
			if tc.file != basic {
				return
			}
			noisy := s.AddNoise(x0, noise, tAdd)
			defer noisy.Release()
			expectSlice(t, "add_noise", noisy.Data(), readT(t, basic, tc.prefix+".add_noise"), tolParity)
			vs := *s
			vs.Prediction = VPrediction
			v := vs.Target(x0, noise, tAdd)
			defer v.Release()
			expectSlice(t, "velocity", v.Data(), readT(t, basic, tc.prefix+".velocity"), tolParity)
		})
	}
}

// TestSingleStepParity checks DDIM, DDPM and Euler timesteps and single steps on the
// fixed tensors of basic.safetensors (configs as its metadata notes say: the SD
// config of configs/ddim.json, 10 steps; DDPM and Euler with their class defaults
// for everything else).
func TestSingleStepParity(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "schedulers")
	f := parity.Open(t, filepath.Join(dir, "basic.safetensors"))
	sd, err := LoadConfig(filepath.Join(dir, "configs", "ddim.json"))
	if err != nil {
		t.Fatal(err)
	}
	sample, eps := readT(t, f, "sample"), readT(t, f, "eps")
	betas := Config{BetaSchedule: sd.BetaSchedule, BetaStart: sd.BetaStart, BetaEnd: sd.BetaEnd}
	steps := len(readNumbers(t, f, "ddim.timesteps"))

	t.Run("ddim", func(t *testing.T) {
		s := mustNew(t, "ddim", sd, steps)
		expectSlice(t, "timesteps", s.Timesteps(), numbersT(t, f, "ddim.timesteps"), 0)
		p0, x0 := s.Step(eps, 0, sample, nil)
		defer tensor.Release(p0, x0)
		expectSlice(t, "step0_prev", p0.Data(), readT(t, f, "ddim.step0_prev"), tolParity)
		p1, x1 := s.Step(eps, 1, sample, nil) // both steps start from the same fixed sample
		defer tensor.Release(p1, x1)
		expectSlice(t, "step1_prev", p1.Data(), readT(t, f, "ddim.step1_prev"), tolParity)
	})
	t.Run("ddpm", func(t *testing.T) {
		s := mustNew(t, "ddpm", betas, steps)
		expectSlice(t, "timesteps", s.Timesteps(), numbersT(t, f, "ddpm_sl_10.timesteps"), 0)
		last := len(s.Timesteps()) - 1
		prev, x0 := s.Step(eps, last, sample, nil) // t = 0 adds no noise
		defer tensor.Release(prev, x0)
		expectSlice(t, "step_last_prev", prev.Data(), readT(t, f, "ddpm_sl_10.step_last_prev"), tolParity)
		expectSlice(t, "step_last_pred_x0", x0.Data(), readT(t, f, "ddpm_sl_10.step_last_pred_x0"), tolParity)
	})
	t.Run("euler", func(t *testing.T) {
		s := mustNew(t, "euler", betas, steps)
		expectSlice(t, "timesteps", s.Timesteps(), numbersT(t, f, "euler.timesteps"), 1e-6)
		expectSlice(t, "sigmas", s.Sigmas(), readT(t, f, "euler.sigmas"), 1e-6)
		expectSlice(t, "init_noise_sigma", []float32{s.InitNoiseSigma()}, readT(t, f, "euler.init_noise_sigma"), 1e-6)
		in := s.ScaleModelInput(sample, 0)
		defer in.Release()
		expectSlice(t, "scale_model_input0", in.Data(), readT(t, f, "euler.scale_model_input0"), tolParity)
		p0, x0 := s.Step(eps, 0, sample, nil)
		defer tensor.Release(p0, x0)
		expectSlice(t, "step0_prev", p0.Data(), readT(t, f, "euler.step0_prev"), tolParity)
	})
}

func mustNew(t *testing.T, name string, cfg Config, steps int) Sampler {
	t.Helper()
	s, err := New(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTimesteps(steps); err != nil {
		t.Fatal(err)
	}
	return s
}

func numbersT(t *testing.T, f *safetensors.File, name string) *tensor.Tensor {
	v := readNumbers(t, f, name)
	x := tensor.FromFloat32(toF32(v), len(v))
	t.Cleanup(x.Release)
	return x
}

// expectSlice compares got with want relative to max|want| and logs the worst element.
func expectSlice(t *testing.T, what string, got []float32, want *tensor.Tensor, tol float64) {
	t.Helper()
	if len(got) != want.Len() {
		t.Fatalf("%s: %d values, want %d", what, len(got), want.Len())
	}
	d := golden.Compare(got, want.Data())
	if d.MaxRel > tol {
		t.Errorf("%s: %v (tolerance %g)", what, d, tol)
	} else {
		t.Logf("%s: %v", what, d)
	}
}
