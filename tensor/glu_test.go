package tensor

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestGatedActMatchesComposition: GatedAct equals Mul(value, act(gate)) forward bit for
// bit and backward within float32 rounding, at a size that spans several parallel
// blocks, and saves two tensors where the composition saves three.
func TestGatedActMatchesComposition(t *testing.T) {
	const rows, cols = 37, 1500 // 55,500 elements: several kernel grains, a ragged tail
	for _, act := range []GateAct{GateSiLU, GateGELU, GateGELUTanh} {
		run := func(fused bool) (out []float32, grads [2][]float32, saved int64) {
			rng := rand.New(rand.NewPCG(7, 7)) // the same inputs for both runs
			v, v0, sv := activation(rng, rows, cols)
			g, g0, sg := activation(rng, rows, cols)
			defer Release(v0, g0, sv, sg)
			var y *Tensor
			if fused {
				y = GatedAct(v, g, act)
			} else {
				var a *Tensor
				switch act {
				case GateSiLU:
					a = SiLU(g)
				default:
					a = GELU(g, act == GateGELUTanh)
				}
				y = Mul(v, a)
				a.Release()
			}
			Release(v, g)
			saved = SavedBytes()
			out = slices.Clone(y.Data())
			dy := randTensor(rand.New(rand.NewPCG(8, 8)), rows, cols)
			BackwardWith([]*Tensor{y}, []*Tensor{dy})
			Release(y, dy)
			return out, [2][]float32{slices.Clone(sv.Grad().Data()), slices.Clone(sg.Grad().Data())}, saved
		}
		want, wantG, wantSaved := run(false)
		got, gotG, gotSaved := run(true)
		if !slices.Equal(got, want) {
			t.Errorf("act %d: forward differs from the composition (max rel %.2g)", act, relMaxDiff(got, want))
		}
		for i := range gotG {
			if e := relMaxDiff(gotG[i], wantG[i]); e > 1e-6 {
				t.Errorf("act %d: gradient %d differs by %.2g", act, i, e)
			}
		}
		if n := int64(4 * rows * cols); gotSaved != 2*n || wantSaved != 3*n {
			t.Errorf("act %d: saved %d fused and %d composed, want %d and %d", act, gotSaved, wantSaved, 2*n, 3*n)
		}
	}
}
