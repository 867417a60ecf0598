package train

import (
	"math"
	"testing"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/internal/leakcheck"
	"github.com/difftune/difftune/tensor"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// TestAdamWMatchesReference runs three steps against torch.optim.AdamW's update
// written out in float64; float32 state keeps the result within 1e-6 relative.
func TestAdamWMatchesReference(t *testing.T) {
	p := tensor.FromFloat32([]float32{0.5, -1.5, 2, 0}, 4).SetRequiresGrad(true)
	defer p.Release()
	grads := [][]float64{{0.1, -0.2, 0.3, 0}, {1, 1, -1, 0.5}, {-0.3, 0.01, 0, 2}}
	o := NewAdamW([]*tensor.Tensor{p}, 1e-2, 0.1)
	defer o.Release()
	ref := []float64{0.5, -1.5, 2, 0}
	m, v := make([]float64, 4), make([]float64, 4)
	for step, g := range grads {
		p.SetRequiresGrad(true)
		gt := tensor.FromFloat32([]float32{float32(g[0]), float32(g[1]), float32(g[2]), float32(g[3])}, 4)
		// Install the gradient through a tiny graph: L = Σ p·g.
		y := tensor.Mul(p, gt)
		l := tensor.Sum(y, false)
		tensor.Backward(l)
		tensor.Release(gt, y, l)
		o.Step()
		k := float64(step + 1)
		for i := range ref {
			ref[i] *= 1 - 1e-2*0.1
			m[i] = 0.9*m[i] + 0.1*g[i]
			v[i] = 0.999*v[i] + 0.001*g[i]*g[i]
			ref[i] -= 1e-2 / (1 - math.Pow(0.9, k)) * m[i] / (math.Sqrt(v[i])/math.Sqrt(1-math.Pow(0.999, k)) + 1e-8)
		}
	}
	for i, got := range p.Data() {
		if math.Abs(float64(got)-ref[i]) > 1e-6*math.Max(1, math.Abs(ref[i])) {
			t.Fatalf("p[%d] = %v, reference %v", i, got, ref[i])
		}
	}
	if p.Grad() != nil {
		t.Fatal("Step left the gradient in place")
	}
}

// TestBenchStepTiny runs the benchmark on the tiny DiT in every form: it must report
// positive times and memory, and adapters must train fewer parameters than full.
func TestBenchStepTiny(t *testing.T) {
	var full int64
	for _, c := range []BenchConfig{
		{Model: "tiny-dit", Adapter: "full", Batch: 2, Steps: 1, Warmup: 1},
		{Model: "tiny-dit", Adapter: "lora", Form: adapters.Auto, Rank: 4, Batch: 2, Steps: 1, Warmup: 1},
		{Model: "tiny-dit", Adapter: "lora", Form: adapters.Activation, Rank: 4, Batch: 2, Steps: 1, Warmup: 1, Checkpoint: true},
	} {
		r, err := BenchStep(c)
		if err != nil {
			t.Fatal(err)
		}
		if r.StepS <= 0 || r.FwdS <= 0 || r.BwdS <= 0 || r.PeakLive <= 0 || r.Trainable <= 0 {
			t.Fatalf("%+v", r)
		}
		if c.Adapter == "full" {
			full = r.Trainable
		} else if r.Trainable >= full {
			t.Fatalf("lora trains %d parameters, full %d", r.Trainable, full)
		}
	}
	if _, err := BenchStep(BenchConfig{Model: "sd15", Adapter: "lora", Batch: 1, Steps: 1}); err == nil {
		t.Fatal("a non-DiT model was accepted")
	}
}
