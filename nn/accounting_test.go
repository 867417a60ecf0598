package nn

import (
	"math/rand/v2"
	"testing"

	"github.com/difftune/difftune/tensor"
)

// TestSavedBytesLinearGELULinear checks the tape's accounting against a hand count
// for x -> Linear(W1 frozen, b1) -> GELU -> Linear(W2, b2) -> MSE, where x is an
// activation (x = x0·s with a trainable scalar s). Leaves (parameters, data) are
// resident anyway and are not counted as saved.
func TestSavedBytesLinearGELULinear(t *testing.T) {
	const n, tokens, d, h, o = 3, 5, 8, 13, 6 // odd sizes on purpose
	rows := n * tokens
	for _, frozen := range []bool{true, false} {
		name := "W1 frozen"
		if !frozen {
			name = "W1 trainable"
		}
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 7))
			l1, l2 := NewLinear(rng, d, h, true), NewLinear(rng, h, o, true)
			l1.Weight.SetRequiresGrad(!frozen)
			x0 := uniform(rng, 1, n, tokens, d).SetRequiresGrad(false)
			target := uniform(rng, 1, n, tokens, o).SetRequiresGrad(false)
			s := tensor.Full(0.7, 1).SetRequiresGrad(true)
			base := tensor.CPU.Stats().Live

			x := tensor.Mul(x0, s) // saves x0 (a leaf: not counted)
			h1 := l1.Forward(x)    // MatMul saves x only if W1 is trainable; W1 (leaf) for dx
			g := tensor.GELU(h1, false)
			y := l2.Forward(g) // saves g for dW2
			loss := tensor.MSELoss(y, target)

			// h1 (GELU's input), g (W2's input) and y (MSE's prediction) are float32
			// activations; x joins them only when W1 needs its gradient.
			want := int64(4 * (rows*h + rows*h + rows*o))
			if !frozen {
				want += int64(4 * rows * d)
			}
			if got := tensor.SavedBytes(); got != want {
				t.Fatalf("SavedBytes = %d, want %d", got, want)
			}
			tensor.Backward(loss)
			if got := tensor.SavedBytes(); got != 0 {
				t.Fatalf("SavedBytes after backward = %d, want 0", got)
			}
			if (l1.Weight.Grad() != nil) == frozen || l2.Weight.Grad() == nil || l1.Bias.Grad() == nil || s.Grad() == nil {
				t.Fatal("gradients landed on the wrong parameters")
			}
			tensor.Release(x, h1, g, y, loss)
			var grads int64
			for _, p := range append(append(l1.Params(""), l2.Params("")...), Param{Name: "s", Ptr: &s}) {
				if gr := p.T().Grad(); gr != nil {
					grads += gr.Bytes()
				}
			}
			if got := tensor.CPU.Stats().Live; got != base+grads {
				t.Fatalf("live bytes after release = %d, want parameter baseline %d + gradients %d", got, base, grads)
			}
			for _, p := range append(append(l1.Params(""), l2.Params("")...), Param{Name: "s", Ptr: &s}) {
				p.T().ZeroGrad()
			}
			if got := tensor.CPU.Stats().Live; got != base {
				t.Fatalf("live bytes after ZeroGrad = %d, want %d", got, base)
			}
			ReleaseParams(l1)
			ReleaseParams(l2)
			tensor.Release(x0, target, s)
		})
	}
}
