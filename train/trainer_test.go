package train

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/tensor"
)

func TestLRSchedules(t *testing.T) {
	for _, c := range []struct {
		sched             string
		step, total, warm int
		want              float64
	}{
		{"constant", 5, 10, 3, 1},
		{"constant_with_warmup", 1, 10, 4, 0.25},
		{"constant_with_warmup", 6, 10, 4, 1},
		{"cosine", 0, 10, 0, 1},
		{"cosine", 5, 10, 0, 0.5},
		{"linear", 5, 10, 0, 0.5},
		{"linear", 2, 10, 2, 1},
		{"cosine_with_restarts", 5, 10, 0, 1}, // two cycles: the second starts at step 5
	} {
		cycles := 2
		if got := LRAt(1, c.sched, c.step, c.total, c.warm, cycles); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s step %d/%d warm-up %d: %v, want %v", c.sched, c.step, c.total, c.warm, got, c.want)
		}
	}
	if CheckSchedule("exp") == nil {
		t.Fatal("unknown schedule accepted")
	}
}

// batchImages makes two fixed 32×32 images: a red disc on black and a blue square.
func batchImages() *tensor.Tensor {
	x := tensor.Zeros(2, 3, 32, 32)
	d := x.Data()
	for y := range 32 {
		for xx := range 32 {
			for c := range 3 {
				d[((0*3+c)*32+y)*32+xx], d[((1*3+c)*32+y)*32+xx] = -1, -1
			}
			if (y-16)*(y-16)+(xx-16)*(xx-16) < 100 {
				d[((0*3+0)*32+y)*32+xx] = 1
			}
			if y > 8 && y < 24 && xx > 8 && xx < 24 {
				d[((1*3+2)*32+y)*32+xx] = 1
			}
		}
	}
	return x
}

type run struct {
	p   *pipeline.Pipeline
	set *adapters.Set
	tr  *Trainer
}

func newRun(t *testing.T, model string, c Config) run {
	t.Helper()
	p, err := pipeline.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	set, err := adapters.Inject(p.Denoiser, adapters.Config{Kind: adapters.LoRA, Rank: 4, Form: adapters.Auto, Dropout: 0.1, Seed: 5}, adapters.Targets{"attn-mlp"})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(p, set, c)
	if err != nil {
		t.Fatal(err)
	}
	return run{p, set, tr}
}

func (r run) release() {
	r.tr.Release()
	r.set.Remove()
	r.p.Release()
}

func (r run) steps(t *testing.T, n int, imgs *tensor.Tensor) []float64 {
	t.Helper()
	var losses []float64
	for range n {
		l, err := r.tr.Micro(imgs, []string{"a red circle", "a blue square"})
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, l)
	}
	return losses
}

func weights(s *adapters.Set) [][]float32 {
	var out [][]float32
	for _, p := range s.Trainable() {
		out = append(out, slices.Clone(p.Data()))
	}
	return out
}

// TestResumeIsExact: 10 steps straight equal 5 steps, save, a fresh trainer, load,
// 5 steps — bit for bit (dropout, timesteps and noise all resume from the state).
func TestResumeIsExact(t *testing.T) {
	imgs := batchImages()
	defer imgs.Release()
	c := Config{LR: 1e-3, LRSchedule: "cosine", Warmup: 2, Steps: 10, WeightDecay: 0.01, MaxGradNorm: 1, EMA: 0.9, NoiseOffset: 0.05, MinSNRGamma: 5, Seed: 3}
	a := newRun(t, "tiny-dit", c)
	a.steps(t, 10, imgs)
	want := weights(a.set)
	a.release()

	b := newRun(t, "tiny-dit", c)
	b.steps(t, 5, imgs)
	path := filepath.Join(t.TempDir(), "state.safetensors")
	if err := b.tr.SaveState(path, "loader-state", 0.5); err != nil {
		t.Fatal(err)
	}
	b.release()
	r := newRun(t, "tiny-dit", c)
	defer r.release()
	ds, lossEMA, err := r.tr.LoadState(path)
	if err != nil || ds != "loader-state" || lossEMA != 0.5 || r.tr.Step != 5 {
		t.Fatalf("LoadState: %q %v %v step %d", ds, lossEMA, err, r.tr.Step)
	}
	r.steps(t, 5, imgs)
	got := weights(r.set)
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("tensor %d differs after resume", i)
		}
	}
}

// TestLossFalls overfits one batch: the mean loss of the last 10 of 60 steps is below
// that of the first 10, for a UNet and a DiT.
func TestLossFalls(t *testing.T) {
	imgs := batchImages()
	defer imgs.Release()
	for _, model := range []string{"tiny-unet", "tiny-dit"} {
		t.Run(model, func(t *testing.T) {
			r := newRun(t, model, Config{LR: 3e-3, Steps: 60, Seed: 1})
			defer r.release()
			l := r.steps(t, 60, imgs)
			mean := func(v []float64) float64 {
				var s float64
				for _, x := range v {
					s += x
				}
				return s / float64(len(v))
			}
			first, last := mean(l[:10]), mean(l[50:])
			t.Logf("%s: loss %.4f -> %.4f", model, first, last)
			if last >= first {
				t.Fatalf("loss did not fall: %.4f -> %.4f", first, last)
			}
		})
	}
}
