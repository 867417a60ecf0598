package tensor

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestMain fails the package when any test leaves tensor storage live or saved:
// every test releases what it made.
func TestMain(m *testing.M) {
	code := m.Run()
	if s := CPU.Stats(); code == 0 && (s.Live != 0 || s.Saved != 0) {
		fmt.Fprintf(os.Stderr, "tensor tests leaked storage: %v\n", s)
		code = 1
	}
	os.Exit(code)
}

func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), want) {
			t.Fatalf("panic %v, want one mentioning %q", r, want)
		}
	}()
	f()
}

// TestUnfreezeBeforeBackward: a weight frozen at forward time gets no gradient even
// if unfrozen before Backward (its input was never kept, and its buffer may already
// hold other data).
func TestUnfreezeBeforeBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := randTensor(rng, 2, 3).SetRequiresGrad(true)
	w := randTensor(rng, 3, 2)
	y := MatMul(x, w, false, false)
	x2 := x.Detach()
	x.Release()
	junk := Full(1000, 2, 3) // may reuse x's buffer if it had been freed
	w.SetRequiresGrad(true)
	loss := Sum(y, false)
	Backward(loss)
	if w.Grad() != nil {
		t.Fatalf("a weight frozen at forward time got gradient %v", w.Grad().Data())
	}
	Release(x2, w, y, junk, loss)
}

// TestConvTransientWeight: the weight form computes W′, convolves, and releases W′;
// with data input x, backward needs only x (for dW′), never W′.
func TestConvTransientWeight(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	x := randTensor(rng, 1, 2, 5, 5)
	w := randTensor(rng, 3, 2, 3, 3).SetRequiresGrad(true)
	w2 := Scale(w, 2)
	y := Conv2d(x, w2, nil, 1, 1, 1)
	w2.Release()
	loss := Sum(y, false)
	Backward(loss)
	if w.Grad() == nil {
		t.Fatal("no gradient for w")
	}
	Release(x, w, y, loss)
}

func TestCheckpointReleasedInputAndFrozenBlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	w := randTensor(rng, 4, 4).SetRequiresGrad(true)
	x0 := randTensor(rng, 2, 4)
	s := Full(1, 1).SetRequiresGrad(true)
	x := Mul(x0, s)
	y := Checkpoint(func(in []*Tensor) *Tensor { return MatMul(in[0], w, false, false) }, x)
	x.Release() // allowed: ops keep what they need
	// A frozen block: nothing inside needs a gradient.
	frozen := randTensor(rng, 4, 4)
	z := Checkpoint(func(in []*Tensor) *Tensor { return MatMul(in[0], frozen, false, false) }, x0)
	sum := Add(y, z)
	loss := Sum(sum, false)
	Backward(loss)
	if w.Grad() == nil || s.Grad() == nil {
		t.Fatal("checkpointed gradients missing")
	}
	Release(w, x0, s, y, frozen, z, sum, loss)
}

func TestBackwardThroughFreedTrunkPanics(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	x := randTensor(rng, 2, 3)
	w := randTensor(rng, 3, 3).SetRequiresGrad(true)
	y := MatMul(x, w, false, false)
	l1, l2 := Sum(y, false), Mean(y, false)
	Backward(l1)
	mustPanic(t, "already freed", func() { Backward(l2) })
	Release(x, w, y, l1, l2)
}

// TestSavedCountsLeafKeptOnlyByGraph: data made during a step and released by the
// caller, kept only for backward, counts as saved.
func TestSavedCountsLeafKeptOnlyByGraph(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	w := randTensor(rng, 8, 8).SetRequiresGrad(true)
	x := randTensor(rng, 16, 8)
	y := MatMul(x, w, false, false)
	if SavedBytes() != 0 {
		t.Fatalf("a leaf the caller still holds counts as saved: %d", SavedBytes())
	}
	x.Release()
	if got, want := SavedBytes(), int64(16*8*4); got != want {
		t.Fatalf("after the caller released x: saved %d, want %d", got, want)
	}
	DropGraph(y)
	if SavedBytes() != 0 {
		t.Fatalf("saved %d after DropGraph", SavedBytes())
	}
	Release(w, y)
}

func TestZeroSizeOps(t *testing.T) {
	a, b := Zeros(3, 0), Zeros(3, 0)
	s := Add(a, b)
	m := Sum(a, false, 1)
	if !slices.Equal(m.Shape(), []int{3}) || m.Data()[0] != 0 {
		t.Fatalf("Sum over an empty axis: %v %v", m.Shape(), m.Data())
	}
	p, q := Zeros(2, 0), Zeros(0, 3)
	mm := MatMul(p, q, false, false)
	if !slices.Equal(mm.Shape(), []int{2, 3}) {
		t.Fatalf("empty MatMul shape %v", mm.Shape())
	}
	mustPanic(t, "tensor.Reshape", func() { Reshape(a, -1, -1) })
	Release(a, b, s, m, p, q, mm)
}

// TestBF16MatMulAllLayouts checks 16-bit b for every transpose and batch layout
// against the same values widened to float32.
func TestBF16MatMulAllLayouts(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			for _, shared := range []bool{false, true} {
				as, bs := []int{2, 5, 7}, []int{2, 7, 3}
				if ta {
					as = []int{2, 7, 5}
				}
				if tb {
					bs = []int{2, 3, 7}
				}
				if shared {
					bs = bs[1:]
				}
				a := randTensor(rng, as...).SetRequiresGrad(true)
				b32 := randTensor(rng, bs...)
				bh := b32.Convert(BF16)
				bw := bh.Clone()
				y1, y2 := MatMul(a, bh, ta, tb), MatMul(a, bw, ta, tb)
				if !AllClose(y1, y2, 1e-5, 1e-5) {
					t.Fatalf("ta=%v tb=%v shared=%v: outputs differ", ta, tb, shared)
				}
				l1 := Sum(y1, false)
				Backward(l1)
				g1 := a.Grad().Float32s()
				a.ZeroGrad()
				l2 := Sum(y2, false)
				Backward(l2)
				if relMaxDiff(g1, a.Grad().Float32s()) > 1e-5 {
					t.Fatalf("ta=%v tb=%v shared=%v: gradients differ", ta, tb, shared)
				}
				Release(a, b32, bh, bw, y1, y2, l1, l2)
			}
		}
	}
}
