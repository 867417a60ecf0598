package tensor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// activation returns x0·s for a trainable scalar s: an op output (counted when saved)
// that requires a gradient.
func activation(rng *rand.Rand, shape ...int) (x, x0, s *Tensor) {
	x0 = randTensor(rng, shape...)
	s = Full(1.5, 1).SetRequiresGrad(true)
	return Mul(x0, s), x0, s
}

func TestCheckpointSavesOnlyInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	w := randTensor(rng, 16, 24).SetRequiresGrad(true)
	defer w.Release()
	f := func(in []*Tensor) *Tensor {
		h := MatMul(in[0], w, false, false)
		defer h.Release()
		return Mul(h, h)
	}
	for _, ckpt := range []bool{false, true} {
		x, x0, s := activation(rng, 9, 16)
		var y *Tensor
		if ckpt {
			y = Checkpoint(f, x)
		} else {
			y = f([]*Tensor{x})
		}
		// Without checkpointing: x (for dW) and h (for Mul, once though used twice);
		// with it: only the input x.
		want := int64(4 * 9 * 16)
		if !ckpt {
			want += 4 * 9 * 24
		}
		if got := SavedBytes(); got != want {
			t.Fatalf("checkpoint=%v: SavedBytes = %d, want %d", ckpt, got, want)
		}
		loss := Sum(y, false)
		Backward(loss)
		if SavedBytes() != 0 || w.Grad() == nil || s.Grad() == nil {
			t.Fatalf("checkpoint=%v: saved %d after backward, grads %v %v", ckpt, SavedBytes(), w.Grad(), s.Grad())
		}
		Release(x, x0, s, y, loss)
	}
}

// TestAttentionSavesLinearBytes runs attention at T = 4096 and checks that what it
// saves is q, k, v, the output and the log-sum-exp: O(T), not the O(T²) probabilities.
func TestAttentionSavesLinearBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("T=4096 attention forward takes a few seconds")
	}
	const b, tokens, heads, d = 1, 4096, 2, 32
	rng := rand.New(rand.NewPCG(4, 4))
	q, q0, sq := activation(rng, b, tokens, heads*d)
	k, k0, sk := activation(rng, b, tokens, heads*d)
	v, v0, sv := activation(rng, b, tokens, heads*d)
	base := SavedBytes()
	CPU.ResetPeak()
	live := CPU.Stats().Live
	o := Attention(q, k, v, heads, nil, false)
	got := SavedBytes() - base
	// q, k, v were not saved before (Mul saved only the leaves), so attention adds
	// q, k, v, o (4·T·H·D floats) and lse (H·T floats).
	want := int64(4 * (4*b*tokens*heads*d + b*heads*tokens))
	if got != want {
		t.Fatalf("attention saved %d bytes, want %d", got, want)
	}
	if peak := CPU.Stats().Peak - live; peak >= int64(4*tokens*tokens) {
		t.Fatalf("attention's peak extra memory %d bytes is not below one T×T float matrix (%d)", peak, 4*tokens*tokens)
	}
	DropGraph(o)
	if SavedBytes() != 0 {
		t.Fatalf("DropGraph left %d saved bytes", SavedBytes())
	}
	Release(q, q0, sq, k, k0, sk, v, v0, sv, o)
}

func TestNoGradRecordsNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	w := randTensor(rng, 8, 8).SetRequiresGrad(true)
	x := randTensor(rng, 4, 8)
	var y *Tensor
	NoGrad(func() {
		h := MatMul(x, w, false, true)
		defer h.Release()
		y = GELU(h, false)
	})
	if y.RequiresGrad() || SavedBytes() != 0 {
		t.Fatalf("NoGrad recorded: requiresGrad %v, saved %d", y.RequiresGrad(), SavedBytes())
	}
	Release(w, x, y)
}

// TestSteadyStateNoPoolMiss runs the same small training step twice: the second must
// be served entirely from the pool, and live bytes must come back to the baseline.
func TestSteadyStateNoPoolMiss(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	w1 := randTensor(rng, 32, 16).SetRequiresGrad(true)
	w2 := randTensor(rng, 8, 32).SetRequiresGrad(true)
	x := randTensor(rng, 5, 16)
	target := randTensor(rng, 5, 8)
	step := func() {
		h := MatMul(x, w1, false, true)
		g := SiLU(h)
		y := MatMul(g, w2, false, true)
		loss := MSELoss(y, target)
		Backward(loss)
		Release(h, g, y, loss)
		w1.ZeroGrad()
		w2.ZeroGrad()
	}
	base := CPU.Stats().Live
	step()
	miss := CPU.Stats().PoolMiss
	step()
	if d := CPU.Stats().PoolMiss - miss; d != 0 {
		t.Fatalf("second step made %d new buffers", d)
	}
	if l := CPU.Stats().Live; l != base {
		t.Fatalf("live %d after the step, want %d", l, base)
	}
	Release(w1, w2, x, target)
}

// TestTraceMoments: a traced step has a moment at each allocation, labelled with the
// op recorded last or the backward node running, holding the bytes then live; the
// largest is the step's peak.
func TestTraceMoments(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	x0 := randTensor(rng, 16, 8)
	s := Full(1.5, 1).SetRequiresGrad(true)
	defer Release(x0, s)
	CPU.ResetPeak()
	base := CPU.Stats().Live
	ms := TraceMoments(func() {
		y := Mul(x0, s)
		l := Sum(y, false)
		y.Release()
		Backward(l)
		l.Release()
	})
	var got []string
	var peak int64
	for _, m := range ms {
		got = append(got, fmt.Sprintf("%s %d", m.Op, m.Live-base))
		peak = max(peak, m.Live)
	}
	want := []string{
		"start 512", // y
		"Mul 516",   // the loss
		"Sum 8",     // after y's release: the seed gradient
		"Sum 12",    // the loss's gradient accumulator
		"Sum 524",   // y's
		"Mul 524",   // s's gradient, after the loss's accumulator is released
	}
	if !slices.Equal(got, want) {
		t.Fatalf("moments %q, want %q", got, want)
	}
	if st := CPU.Stats(); peak != st.Peak {
		t.Errorf("largest moment %d B, device peak %d B", peak, st.Peak)
	}
	s.ZeroGrad()
}

// TestTraceMomentsPanics: a trace does not nest, and one that f panics out of ends:
// later allocations are not recorded and a new trace can start.
func TestTraceMomentsPanics(t *testing.T) {
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "already taking a trace") {
				t.Errorf("a nested trace: %v", r)
			}
		}()
		TraceMoments(func() { TraceMoments(func() {}) })
	}()
	func() {
		defer func() { _ = recover() }()
		TraceMoments(func() { panic("f failed") })
	}()
	if tracing.Load() || len(CPU.moments) != 0 {
		t.Fatal("the trace outlived its TraceMoments")
	}
	x := Zeros(4)
	x.Release()
	if len(CPU.moments) != 0 {
		t.Fatal("an allocation after the trace was recorded")
	}
	if ms := TraceMoments(func() { Zeros(2).Release() }); len(ms) != 1 {
		t.Fatalf("a trace after a failed one has %d moments, want 1", len(ms))
	}
}
