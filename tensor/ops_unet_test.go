package tensor

import "testing"

// TestRecomputeGrad checks Recompute against finite differences with its inputs
// released right after the call: an activation input (x·w) and a leaf input (w), a
// parameter-like leaf used inside f (b), and an input that needs no gradient.
func TestRecomputeGrad(t *testing.T) {
	checkGrad(t, gradCase{name: "Recompute", shapes: [][]int{{3, 4}, {4, 5}, {5}}, f: func(in []*Tensor) *Tensor {
		h := MatMul(in[0], in[1], false, false) // an activation, released below
		defer h.Release()
		c := Full(0.5, 3, 5) // needs no gradient
		defer c.Release()
		return Recompute(func(x []*Tensor) *Tensor {
			s := SiLU(x[0])
			defer s.Release()
			m := Mul(s, x[1])
			defer m.Release()
			return Add(m, in[2])
		}, h, c)
	}})
}

// TestRecomputeSavesOnlyInputs checks that the recorded node keeps only its
// activation input, and that backward leaves nothing saved or live.
func TestRecomputeSavesOnlyInputs(t *testing.T) {
	live := CPU.Stats().Live
	x := Full(0.3, 8, 16).SetRequiresGrad(true)
	h := Scale(x, 2) // [8, 16] activation: the only thing Recompute may save
	y := Recompute(func(in []*Tensor) *Tensor {
		a := SiLU(in[0])
		defer a.Release()
		return GELU(a, false)
	}, h)
	h.Release()
	if got, want := SavedBytes(), int64(8*16*4); got != want {
		t.Fatalf("SavedBytes = %d, want %d (the input only)", got, want)
	}
	g := Full(1, 8, 16)
	BackwardWith([]*Tensor{y}, []*Tensor{g})
	if SavedBytes() != 0 || x.Grad() == nil {
		t.Fatalf("after backward: saved %d, grad %v", SavedBytes(), x.Grad())
	}
	Release(y, g, x)
	if got := CPU.Stats().Live; got != live {
		t.Fatalf("live bytes %d, want %d", got, live)
	}
}
