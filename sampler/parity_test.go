package sampler

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/parity"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// tolParity is the golden README's bound for float32 outputs: 1e-5 of max|value|.
// The float64 replay in the MANIFEST shows the float32 trajectories themselves sit
// within 3e-6 of exact arithmetic, so an implementation that follows PyTorch's float32
// operation order lands well inside it; a wrong formula misses by orders of magnitude.
const tolParity = 1e-5

func readT(t *testing.T, f *safetensors.File, name string) *tensor.Tensor {
	t.Helper()
	x, err := nn.ReadTensor(f, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Release)
	return x
}

// readNumbers reads an integer or floating tensor as float64s (timesteps are I64 for
// DDIM/DPM and F32 for the others).
func readNumbers(t *testing.T, f *safetensors.File, name string) []float64 {
	t.Helper()
	info, ok := f.Info(name)
	if !ok {
		t.Fatalf("%s: no tensor %q", f.Path(), name)
	}
	if info.DType == safetensors.I64 || info.DType == safetensors.I32 {
		v, _, err := nn.ReadInts(f, name)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	x := readT(t, f, name)
	out := make([]float64, x.Len())
	for i, v := range x.Data() {
		out[i] = float64(v)
	}
	return out
}

// worst keeps the largest relative difference seen for one key across steps.
type worst struct {
	rel   float64
	where string
}

func (w *worst) add(d golden.Diff, where string) {
	if d.MaxRel > w.rel || w.where == "" {
		w.rel, w.where = d.MaxRel, fmt.Sprintf("%s: %v", where, d)
	}
}

// fakeModel is the MANIFEST's fake model: x·0.1 + 0.01·t/1000, with the scalar
// computed in float64 and both operations rounded to float32 as PyTorch does.
func fakeModel(x *tensor.Tensor, t float32) (*tensor.Tensor, error) {
	c := float32(0.01 * float64(t) / 1000)
	return ew1(x, func(v float32) float32 { return float32(v*float32(0.1)) + c }), nil
}

// replay is a NoiseSource that hands out recorded noise draws in order.
type replay struct {
	draws *tensor.Tensor // [K, ...]
	next  int
}

func (r *replay) Randn(shape ...int) *tensor.Tensor {
	s := tensor.Slice(r.draws, 0, r.next, r.next+1)
	defer s.Release()
	r.next++
	v := tensor.Reshape(s, shape...)
	defer v.Release()
	return v.Clone()
}

func sliceAt(x *tensor.Tensor, i int) []float32 {
	per := x.Len() / x.Dim(0)
	return x.Data()[i*per : (i+1)*per]
}

// TestSchedulerTraceParity replays every trace in schedulers/traces.safetensors: the
// config is read from configs/<trace>.json, the sampler chosen by its _class_name,
// the MANIFEST's fake model drives it, and every timestep, sigma, init_noise_sigma,
// model input, latent and x̂₀ must match; the ancestral sampler replays the recorded
// draws. Each step continues from our own previous latent, so errors accumulate as
// they would in use.
func TestSchedulerTraceParity(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "schedulers")
	f := parity.Open(t, filepath.Join(dir, "traces.safetensors"))
	xInit := readT(t, f, "x_init")
	configs, err := filepath.Glob(filepath.Join(dir, "configs", "*.json"))
	if err != nil || len(configs) == 0 {
		t.Fatalf("no scheduler configs in %s (%v)", dir, err)
	}
	for _, path := range configs {
		trace := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(trace, func(t *testing.T) {
			cfg, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			name, err := NameForClass(cfg)
			if err != nil {
				t.Fatal(err)
			}
			replayTrace(t, f, trace, name, cfg, xInit)
		})
	}
}

func replayTrace(t *testing.T, f *safetensors.File, trace, name string, cfg Config, xInit *tensor.Tensor) {
	key := func(k string) string { return trace + "." + k }
	has := func(k string) bool { _, ok := f.Info(key(k)); return ok }
	s, err := New(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantTS := readNumbers(t, f, key("timesteps"))
	latents := readT(t, f, key("latents"))
	steps := latents.Dim(0) - 1
	if err := s.SetTimesteps(steps); err != nil {
		t.Fatal(err)
	}
	ts := make([]float32, len(s.Timesteps()))
	copy(ts, s.Timesteps())
	report := map[string]float64{}
	check := func(what string, got []float32, want []float64) {
		w := make([]float32, len(want))
		for i, v := range want {
			w[i] = float32(v)
		}
		if len(got) != len(w) {
			t.Fatalf("%s: %d values, want %d", what, len(got), len(w))
		}
		d := golden.Compare(got, w)
		report[what] = d.MaxRel
		if d.MaxRel > tolParity {
			t.Errorf("%s: %v\n got %v\nwant %v", what, d, got, w)
		}
	}
	check("timesteps", ts, wantTS)
	if has("sigmas") {
		check("sigmas", s.Sigmas(), readNumbers(t, f, key("sigmas")))
	}
	check("init_noise_sigma", []float32{s.InitNoiseSigma()}, readNumbers(t, f, key("init_noise_sigma")))

	var noise NoiseSource
	var rep *replay
	if has("noise") {
		rep = &replay{draws: readT(t, f, key("noise"))}
		noise = rep
	}
	modelIn := readT(t, f, key("model_input"))
	var predX0 *tensor.Tensor
	if has("pred_original_sample") {
		predX0 = readT(t, f, key("pred_original_sample"))
	}
	sigma := s.InitNoiseSigma()
	x := ew1(xInit, func(v float32) float32 { return v * sigma })
	ws := map[string]*worst{"latents": {}, "model_input": {}, "pred_original_sample": {}}
	ws["latents"].add(golden.Compare(x.Data(), sliceAt(latents, 0)), "latents[0]")
	for i, tt := range s.Timesteps() {
		in := s.ScaleModelInput(x, i)
		ws["model_input"].add(golden.Compare(in.Data(), sliceAt(modelIn, i)), fmt.Sprintf("model_input[%d]", i))
		out, _ := fakeModel(in, tt)
		prev, x0 := s.Step(out, i, x, noise)
		ws["latents"].add(golden.Compare(prev.Data(), sliceAt(latents, i+1)), fmt.Sprintf("latents[%d]", i+1))
		if predX0 != nil {
			if x0 == nil {
				t.Fatalf("step %d returned no pred_original_sample; the trace has one", i)
			}
			ws["pred_original_sample"].add(golden.Compare(x0.Data(), sliceAt(predX0, i)), fmt.Sprintf("pred_original_sample[%d]", i))
		}
		tensor.Release(in, out, x, x0)
		x = prev
	}
	defer x.Release()
	if rep != nil && rep.next != rep.draws.Dim(0) {
		t.Errorf("drew %d noise tensors, the trace recorded %d", rep.next, rep.draws.Dim(0))
	}
	for k, w := range ws {
		if w.where == "" {
			continue
		}
		report[k] = w.rel
		if w.rel > tolParity {
			t.Errorf("%s: worst %s", k, w.where)
		}
	}
	t.Logf("%s (%s): worst rel: timesteps %.2g, sigmas %.2g, init_noise_sigma %.2g, model_input %.2g, latents %.2g (%s), pred_original_sample %.2g",
		trace, name, report["timesteps"], report["sigmas"], report["init_noise_sigma"], report["model_input"], report["latents"], ws["latents"].where, report["pred_original_sample"])

	// Sample, the loop users call, must land on the same final latent.
	if rep != nil {
		rep.next = 0
	}
	got, err := Sample(context.Background(), s, fakeModel, xInit, steps, noise, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	if d := golden.Compare(got.Data(), sliceAt(latents, steps)); d.MaxRel > tolParity {
		t.Errorf("Sample final latent: %v", d)
	}
}
