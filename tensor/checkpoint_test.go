package tensor

import (
	"math/rand/v2"
	"testing"
)

// TestGradCheckpoint checks Checkpoint's gradients by finite differences when its input
// is an intermediate that the caller releases right after the call (the case
// Checkpoint cannot handle), and that a second, parameter-like input receives its
// gradient through the recomputed graph.
func TestGradCheckpointReleasedInput(t *testing.T) {
	checkGrad(t, gradCase{name: "Checkpoint", shapes: [][]int{{3, 4}, {4, 5}}, f: func(in []*Tensor) *Tensor {
		x := Scale(in[0], 1.5) // an intermediate, released below
		defer x.Release()
		return Checkpoint(func(xs []*Tensor) *Tensor {
			h := MatMul(xs[0], in[1], false, false) // in[1] is read as a parameter would be
			defer h.Release()
			return GELU(h, true)
		}, x)
	}})
}

// TestCheckpointAccounting checks that Checkpoint saves only its inputs, that Backward
// leaves nothing saved, and that DropGraph frees the inputs it kept.
func TestCheckpointAccountingReleasedInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	w := randTensor(rng, 8, 8).SetRequiresGrad(true)
	x0 := randTensor(rng, 4, 8).SetRequiresGrad(true)
	defer Release(w, x0)
	live := CPU.Stats().Live
	block := func(xs []*Tensor) *Tensor {
		h := MatMul(xs[0], w, false, true)
		defer h.Release()
		return SiLU(h)
	}
	for _, backward := range []bool{true, false} {
		x := Scale(x0, 2)
		y := Checkpoint(block, x)
		x.Release()
		if got, want := SavedBytes(), int64(4*4*8); got != want {
			t.Fatalf("saved %d bytes, want the input's %d", got, want)
		}
		if backward {
			g := Full(1, y.shape...)
			BackwardWith([]*Tensor{y}, []*Tensor{g})
			g.Release()
			if w.Grad() == nil || x0.Grad() == nil {
				t.Fatal("no gradient reached w or x0")
			}
			w.ZeroGrad()
			x0.ZeroGrad()
		} else {
			DropGraph(y)
		}
		y.Release()
		if SavedBytes() != 0 || CPU.Stats().Live != live {
			t.Fatalf("backward=%v: saved %d, live %d, want 0 and %d", backward, SavedBytes(), CPU.Stats().Live, live)
		}
	}
}
