package unet

import (
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"

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
	if os.Getenv("DIFFTUNE_SD15") == "" {
		t.Skip("set DIFFTUNE_SD15=1 to run the SD 1.5 measurement (about 13 GiB, minutes)")
	}
	p := Presets["sd15"]
	start := time.Now()
	m, err := p.NewRandom()
	if err != nil {
		t.Fatal(err)
	}
	defer releaseModels(m)
	total, _ := nn.CountParams(m)
	t.Logf("sd15: %d parameters, %.2f GiB, random init in %v, %d threads", total, gib(tensor.CPU.Stats().Live), time.Since(start).Round(time.Millisecond), tensor.Threads())

	c := m.Config
	rng := rand.New(rand.NewPCG(1, 2))
	sample := randn(rng, 1, c.InChannels, c.SampleSize, c.SampleSize)
	target := randn(rng, 1, c.OutChannels, c.SampleSize, c.SampleSize)
	context := randn(rng, 1, 77, c.CrossAttentionDim[0])
	defer tensor.Release(sample, target, context)
	step := func() {
		out := m.Forward(sample, []float32{500}, context)
		loss := tensor.MSELoss(out, target)
		out.Release()
		tensor.Backward(loss)
		loss.Release()
	}
	// One untimed step first: it touches every buffer once (page faults) and fills the
	// allocator's pool, which steady training runs with.
	step()
	for _, q := range m.Params("") {
		q.T().ZeroGrad()
	}
	for _, trainable := range []bool{true, false} {
		nn.SetTrainable(m, trainable)
		sample.SetRequiresGrad(!trainable) // something must need a gradient
		for _, ckpt := range []bool{false, true} {
			m.GradientCheckpointing = ckpt
			runtime.GC()
			base := tensor.CPU.Stats().Live
			tensor.CPU.ResetPeak()
			t0, cpu0 := time.Now(), cpuTime()
			out := m.Forward(sample, []float32{500}, context)
			fwd := time.Since(t0)
			saved := tensor.SavedBytes()
			loss := tensor.MSELoss(out, target)
			out.Release()
			tensor.Backward(loss)
			loss.Release()
			step, cpu := time.Since(t0), cpuTime()-cpu0
			st := tensor.CPU.Stats()
			t.Logf("trainable=%v checkpointing=%v: forward %v, forward+backward %v wall, %v CPU; saved after forward %.2f GiB; peak live %.2f GiB (%.2f GiB above the %.2f GiB of weights)",
				trainable, ckpt, fwd.Round(time.Millisecond), step.Round(time.Millisecond), cpu.Round(time.Millisecond), gib(saved), gib(st.Peak), gib(st.Peak-base), gib(base))
			for _, q := range m.Params("") {
				q.T().ZeroGrad()
			}
			sample.ZeroGrad()
			if st := tensor.CPU.Stats(); st.Live != base || st.Saved != 0 {
				t.Fatalf("after the step: live %d (want %d), saved %d", st.Live, base, st.Saved)
			}
		}
	}
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }
