package unet

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// TestSD15Step measures one training step (forward, MSE loss, backward) of the sd15
// preset with random weights at a 64×64 latent, batch 1, 77 context tokens: wall
// time, process CPU time and peak live bytes, with and without gradient checkpointing, with the UNet
// trainable (full finetuning) and frozen (gradients reach the inputs only, as under
// an adapter), after one untimed warm-up step. It needs about 13 GiB and a few minutes, so it runs only on request:
//
//	DIFFTUNE_SD15=1 GOMEMLIMIT=20GiB go test ./unet -run TestSD15Step -v -timeout 60m
func TestSD15Step(t *testing.T) {
	m, in := newSD15(t)
	defer releaseModels(m)
	defer in.release()
	// One untimed step first: it touches every buffer once (page faults) and fills the
	// allocator's pool, which steady training runs with.
	in.backward(in.forward(m))
	for _, q := range m.Params("") {
		q.T().ZeroGrad()
	}
	for _, trainable := range []bool{true, false} {
		nn.SetTrainable(m, trainable)
		in.sample.SetRequiresGrad(!trainable) // something must need a gradient
		for _, ckpt := range []bool{false, true} {
			m.GradientCheckpointing = ckpt
			f := measureSD15Step(t, m, in, func() {
				for _, q := range m.Params("") {
					q.T().ZeroGrad()
				}
				in.sample.ZeroGrad()
			})
			t.Logf("trainable=%v checkpointing=%v: %v", trainable, ckpt, f)
		}
	}
}

// TestSD15LoRA measures the same training step as TestSD15Step with the sd15 UNet
// frozen and a rank-16 LoRA on its attention projections (to_q, to_k, to_v,
// to_out.0), for each adapter form, with and without gradient checkpointing, after one
// untimed warm-up step per form (the adapters as injectLoRA makes them). The step
// checks that every adapter tensor has a non-zero gradient, that no base weight has
// one, and that checkpointing saves less than half of what the plain forward saves.
// It runs only on request:
//
//	DIFFTUNE_SD15=1 GOMAXPROCS=1 GOMEMLIMIT=16GiB go test ./unet -run TestSD15LoRA -v -timeout 60m
func TestSD15LoRA(t *testing.T) {
	m, in := newSD15(t)
	defer releaseModels(m)
	defer in.release()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, form := range []adapters.Form{adapters.Auto, adapters.Weight, adapters.Activation} {
		runtime.GC()
		before := tensor.CPU.Stats().Live
		set := injectLoRA(t, m, 16, form, rng)
		t.Logf("%s", set.Summary())
		in.backward(in.forward(m)) // warm-up, untimed
		zero := func() {
			for _, a := range set.Trainable() {
				a.ZeroGrad()
			}
		}
		zero()
		var plainSaved int64
		for _, ckpt := range []bool{false, true} {
			m.GradientCheckpointing = ckpt
			f := measureSD15Step(t, m, in, func() {
				for _, p := range m.Params("") {
					if p.T().Grad() != nil {
						t.Fatalf("form %s: frozen base weight %s has a gradient", form, p.Name)
					}
				}
				for _, p := range set.Params() {
					if g := p.T().Grad(); g == nil || !slices.ContainsFunc(g.Float32s(), func(v float32) bool { return v != 0 }) {
						t.Fatalf("form %s: adapter tensor %s has no non-zero gradient", form, p.Name)
					}
				}
				zero()
			})
			t.Logf("form=%s checkpointing=%v (%s): %v", form, ckpt, choices(set), f)
			if !ckpt {
				plainSaved = f.saved
			} else if f.saved >= plainSaved/2 { // TestCheckpointing's bound; frozen sd15 measured 0.17 vs 1.21 GiB
				t.Fatalf("form %s: checkpointing saved %d bytes, plain %d: want less than half", form, f.saved, plainSaved)
			}
		}
		set.Remove()
		runtime.GC()
		if live := tensor.CPU.Stats().Live; live != before {
			t.Fatalf("form %s: live %d after removing the adapters, want %d", form, live, before)
		}
	}
}

// sd15Inputs is one training example for the sd15 preset: a latent, its target and
// a 77-token context, all leaves without gradients.
type sd15Inputs struct{ sample, target, context *tensor.Tensor }

// newSD15 skips unless DIFFTUNE_SD15 is set; otherwise it returns the sd15 preset with
// random weights and one random 64×64 training example for it.
func newSD15(t *testing.T) (*UNet2DConditionModel, sd15Inputs) {
	if os.Getenv("DIFFTUNE_SD15") == "" {
		t.Skip("set DIFFTUNE_SD15=1 to run the SD 1.5 measurement (about 13 GiB, minutes)")
	}
	p := Presets["sd15"]
	start := time.Now()
	m, err := p.NewRandom()
	if err != nil {
		t.Fatal(err)
	}
	total, _ := nn.CountParams(m)
	t.Logf("sd15: %d parameters, %.2f GiB, random init in %v, %d threads", total, gib(tensor.CPU.Stats().Live), time.Since(start).Round(time.Millisecond), tensor.Threads())
	c := m.Config
	rng := rand.New(rand.NewPCG(1, 2))
	return m, sd15Inputs{
		sample:  randn(rng, 1, c.InChannels, c.SampleSize, c.SampleSize),
		target:  randn(rng, 1, c.OutChannels, c.SampleSize, c.SampleSize),
		context: randn(rng, 1, 77, c.CrossAttentionDim[0]),
	}
}

func (in sd15Inputs) release() { tensor.Release(in.sample, in.target, in.context) }

// forward runs m on the example at timestep 500.
func (in sd15Inputs) forward(m *UNet2DConditionModel) *tensor.Tensor {
	return m.Forward(in.sample, []float32{500}, in.context)
}

// backward takes the MSE loss of out against the target, releases out and backpropagates.
func (in sd15Inputs) backward(out *tensor.Tensor) {
	loss := tensor.MSELoss(out, in.target)
	out.Release()
	tensor.Backward(loss)
	loss.Release()
}

// sd15Figures is one measured training step.
type sd15Figures struct {
	fwd, step, cpu time.Duration // forward wall time; forward+backward wall and process CPU time
	saved          int64         // bytes saved for backward after forward
	base, peak     int64         // live bytes before the step and at its peak
}

func (f sd15Figures) String() string {
	return fmt.Sprintf("forward %v, forward+backward %v wall, %v CPU; saved after forward %.2f GiB; peak live %.2f GiB (%.2f GiB above the %.2f GiB before the step)",
		f.fwd.Round(time.Millisecond), f.step.Round(time.Millisecond), f.cpu.Round(time.Millisecond), gib(f.saved), gib(f.peak), gib(f.peak-f.base), gib(f.base))
}

// measureSD15Step times one training step of m on in. After backward it calls grads,
// which checks the gradients and zeroes them; then it fails unless live storage is
// back to where it was before the step and nothing remains saved.
func measureSD15Step(t *testing.T, m *UNet2DConditionModel, in sd15Inputs, grads func()) sd15Figures {
	t.Helper()
	runtime.GC()
	f := sd15Figures{base: tensor.CPU.Stats().Live}
	tensor.CPU.ResetPeak()
	t0, cpu0 := time.Now(), cpuTime()
	out := in.forward(m)
	f.fwd = time.Since(t0)
	f.saved = tensor.SavedBytes()
	in.backward(out)
	f.step, f.cpu = time.Since(t0), cpuTime()-cpu0
	f.peak = tensor.CPU.Stats().Peak
	grads()
	if st := tensor.CPU.Stats(); st.Live != f.base || st.Saved != 0 {
		t.Fatalf("after the step: live %d (want %d), saved %d", st.Live, f.base, st.Saved)
	}
	return f
}

// choices counts the paths the adapters took in the last forward ("merged", "rank-r", ...).
func choices(s *adapters.Set) string {
	n := map[string]int{}
	for _, a := range s.Adapters {
		n[a.Choice]++
	}
	return fmt.Sprint(n)
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }
