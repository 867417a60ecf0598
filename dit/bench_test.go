package dit

import (
	"testing"

	"github.com/difftune/difftune/tensor"
)

func BenchmarkDiTS2Forward(b *testing.B)   { benchDiT(b, "dit-s-2", 1, false, false) }
func BenchmarkDiTS2TrainStep(b *testing.B) { benchDiT(b, "dit-s-2", 4, true, false) }
func BenchmarkDiTS2TrainStepCheckpointed(b *testing.B) {
	benchDiT(b, "dit-s-2", 4, true, true)
}

// benchDiT times a forward (under NoGrad) or a forward+backward of a DiT preset on
// batch latents of the preset's size, reporting the peak saved bytes of a step.
func benchDiT(b *testing.B, preset string, batch int, backward, checkpoint bool) {
	m, err := New(Presets[preset], 1)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Release()
	d := m.(*DiT)
	d.Checkpoint = checkpoint
	c := d.Config
	x := tensor.Full(0.1, batch, c.InChannels, c.InputSize, c.InputSize)
	defer x.Release()
	ts, ys := make([]float32, batch), make([]int, batch)
	for i := range ts {
		ts[i], ys[i] = float32(100*i+1), i
	}
	b.ReportAllocs()
	var saved int64
	for b.Loop() {
		if !backward {
			tensor.NoGrad(func() {
				out, _ := d.Forward(x, ts, ys)
				out.Release()
			})
			continue
		}
		out, _ := d.Forward(x, ts, ys)
		saved = max(saved, tensor.SavedBytes())
		g := tensor.Full(1, out.Shape()...)
		tensor.BackwardWith([]*tensor.Tensor{out}, []*tensor.Tensor{g})
		tensor.Release(out, g)
		for _, p := range d.Params("") {
			p.T().ZeroGrad()
		}
	}
	b.ReportMetric(float64(saved)/(1<<20), "savedMiB")
}
