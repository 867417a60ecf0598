package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

type ktAttnCase struct {
	B, H, Tq, Tk, D int
	mask, causal    bool
}

func (c ktAttnCase) String() string {
	return fmt.Sprintf("B%d_H%d_Tq%d_Tk%d_D%d_mask%v_causal%v", c.B, c.H, c.Tq, c.Tk, c.D, c.mask, c.causal)
}

// ktAttnInputs builds q, k, v and, when asked, a key mask: batch 0 masks its last
// keys, batch 1 (if any) masks every key (fully masked rows), other batches use a
// large finite negative instead of −Inf.
func ktAttnInputs(c ktAttnCase) (q, k, v, mask []float32) {
	rng := rand.New(rand.NewPCG(15, uint64(c.B*131+c.H*17+c.Tq*7+c.Tk*3+c.D)))
	q = ktRand(rng, c.B*c.Tq*c.H*c.D, -1, 1)
	k = ktRand(rng, c.B*c.Tk*c.H*c.D, -1, 1)
	v = ktRand(rng, c.B*c.Tk*c.H*c.D, -1, 1)
	if !c.mask {
		return q, k, v, nil
	}
	mask = make([]float32, c.B*c.Tk)
	for b := 0; b < c.B; b++ {
		for j := 0; j < c.Tk; j++ {
			switch {
			case b == 0 && j >= c.Tk-c.Tk/3:
				mask[b*c.Tk+j] = float32(math.Inf(-1))
			case b == 1:
				mask[b*c.Tk+j] = float32(math.Inf(-1))
			case b >= 2 && j%3 == 1:
				mask[b*c.Tk+j] = -1e9
			}
		}
	}
	return q, k, v, mask
}

func TestAttention(t *testing.T) {
	cases := []ktAttnCase{
		{1, 1, 1, 1, 8, false, false},
		{2, 3, 7, 7, 8, true, false},
		{1, 2, 7, 7, 40, false, true},
		{3, 2, 64, 64, 64, true, false},
		{1, 2, 65, 65, 40, false, true},
		{2, 1, 65, 65, 8, true, true},
		{1, 2, 7, 65, 64, true, false},   // cross-attention, Tq < Tk
		{2, 1, 257, 33, 40, true, false}, // cross-attention, Tq > Tk
		{1, 1, 257, 257, 64, false, true},
		{1, 1, 1, 257, 8, false, false},
		{1, 1, 1024, 1024, 64, false, true},
		{1, 1, 1024, 1024, 40, false, false},
	}
	for i, c := range cases {
		// Alternate threads: 1 runs the single-pass backward, 5 (more workers than
		// heads in most cases) the split dk/dv + dq passes.
		th := []int{1, 5}[i%2]
		t.Run(fmt.Sprintf("%v_t%d", c, th), func(t *testing.T) {
			ktWithThreads(th, func() { ktAttnCheck(t, c) })
		})
	}
}

func ktAttnCheck(t *testing.T, c ktAttnCase) {
	q, k, v, mask := ktAttnInputs(c)
	scale := float32(1 / math.Sqrt(float64(c.D)))
	nq := c.B * c.Tq * c.H * c.D
	out, lse := make([]float32, nq), make([]float32, c.B*c.H*c.Tq)
	rout, rlse := make([]float32, nq), make([]float32, c.B*c.H*c.Tq)
	attentionForward(out, lse, q, k, v, mask, c.B, c.H, c.Tq, c.Tk, c.D, scale, c.causal)
	attentionRef(rout, rlse, q, k, v, mask, c.B, c.H, c.Tq, c.Tk, c.D, scale, c.causal)
	ktClose(t, "out", out, rout, ktRefTol)
	ktClose(t, "lse", lse, rlse, ktRefTol)
	out2 := make([]float32, nq) // lse is optional in the forward pass
	attentionForward(out2, nil, q, k, v, mask, c.B, c.H, c.Tq, c.Tk, c.D, scale, c.causal)
	ktClose(t, "out without lse", out2, out, 0)

	rng := rand.New(rand.NewPCG(16, uint64(nq)))
	dout := ktRand(rng, nq, -1, 1)
	// Shared scale: with one visible key dq and dk vanish exactly, and the float32
	// result is a rounding residue of dout·v products, the size of dv.
	ktBackwardCheck(t, []string{"dq", "dk", "dv"}, []int{nq, len(k), len(v)}, true,
		func(g [][]float32) {
			attentionBackward(g[0], g[1], g[2], dout, q, k, v, out, lse, mask, c.B, c.H, c.Tq, c.Tk, c.D, scale, c.causal)
		},
		func(g [][]float32) {
			attentionBackwardRef(g[0], g[1], g[2], dout, q, k, v, rout, rlse, mask, c.B, c.H, c.Tq, c.Tk, c.D, scale, c.causal)
		})
}

func TestAttentionFullyMasked(t *testing.T) {
	c := ktAttnCase{B: 2, H: 2, Tq: 5, Tk: 9, D: 8, mask: true}
	q, k, v, mask := ktAttnInputs(c) // batch 1 masks every key
	out, lse := make([]float32, len(q)), make([]float32, c.B*c.H*c.Tq)
	attentionForward(out, lse, q, k, v, mask, c.B, c.H, c.Tq, c.Tk, c.D, 0.3, false)
	dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
	dout := ktRand(rand.New(rand.NewPCG(1, 2)), len(q), -1, 1)
	attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, mask, c.B, c.H, c.Tq, c.Tk, c.D, 0.3, false)
	HD := c.H * c.D
	for i := c.Tq * HD; i < 2*c.Tq*HD; i++ { // batch 1
		if out[i] != 0 || dq[i] != 0 {
			t.Fatalf("fully masked row: out=%v dq=%v at %d, want 0", out[i], dq[i], i)
		}
	}
	for i := c.Tk * HD; i < 2*c.Tk*HD; i++ {
		if dk[i] != 0 || dv[i] != 0 {
			t.Fatalf("fully masked batch: dk=%v dv=%v at %d, want 0", dk[i], dv[i], i)
		}
	}
	for i := c.H * c.Tq; i < 2*c.H*c.Tq; i++ {
		if !math.IsInf(float64(lse[i]), -1) {
			t.Fatalf("lse[%d] = %v, want -Inf", i, lse[i])
		}
	}
}

func TestAttentionGradCheck(t *testing.T) {
	for _, c := range []ktAttnCase{
		{2, 2, 3, 5, 4, true, false},
		{1, 2, 6, 6, 4, false, true},
	} {
		t.Run(c.String(), func(t *testing.T) {
			q, k, v, mask := ktAttnInputs(c)
			if mask != nil { // keep batch 1 partly visible so its gradients are not trivially 0
				for j := 0; j < c.Tk; j += 2 {
					mask[c.Tk+j] = 0
				}
			}
			scale := float32(0.7)
			g := ktRand(rand.New(rand.NewPCG(17, 17)), len(q), -1, 1)
			out, lse := make([]float32, len(q)), make([]float32, c.B*c.H*c.Tq)
			fwd := func() float64 {
				attentionForward(out, lse, q, k, v, mask, c.B, c.H, c.Tq, c.Tk, c.D, scale, c.causal)
				return ktDot(out, g)
			}
			fwd()
			dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
			attentionBackward(dq, dk, dv, g, q, k, v, out, lse, mask, c.B, c.H, c.Tq, c.Tk, c.D, scale, c.causal)
			ktGradCheck(t, "dq", q, dq, fwd, ktFDStep, ktFDTol)
			ktGradCheck(t, "dk", k, dk, fwd, ktFDStep, ktFDTol)
			ktGradCheck(t, "dv", v, dv, fwd, ktFDStep, ktFDTol)
		})
	}
}

// TestAttentionScratch checks the memory claim: the per-worker scratch is fixed once
// T exceeds a tile, and a T=4096 forward allocates far less than one Tq×Tk matrix.
func TestAttentionScratch(t *testing.T) {
	const D = 64
	T0 := max(attnTileQ, attnTileK)
	want := attentionScratchFloats(T0, T0, D)
	if bound := 2*attnTileQ*attnTileK + attnTileQ*D; want > bound {
		t.Errorf("attentionScratchFloats = %d, want <= %d", want, bound)
	}
	for _, T := range []int{T0 + 1, 1024, 4096, 1 << 20} {
		if got := attentionScratchFloats(T, T, D); got != want {
			t.Errorf("attentionScratchFloats(%d, %d, %d) = %d, want %d (independent of T)", T, T, D, got, want)
		}
	}
	const T = 4096
	c := ktAttnCase{B: 1, H: 1, Tq: T, Tk: T, D: D}
	q, k, v, _ := ktAttnInputs(c)
	out, lse := make([]float32, len(q)), make([]float32, T)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	attentionForward(out, lse, q, k, v, nil, 1, 1, T, T, D, 0.125, false)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	// Bound: one scratch per worker plus goroutine and closure overhead. A Tq×Tk
	// float32 matrix would be 64 MiB; 1 MiB is 64× below that and ~20× above need.
	if limit := uint64(1 << 20); alloc > limit {
		t.Errorf("T=%d forward allocated %d bytes, want <= %d (a %dx%d score matrix is %d)", T, alloc, limit, T, T, 4*T*T)
	}
	t.Logf("T=%d D=%d forward: %v, %d bytes allocated, scratch %d floats/worker", T, D, elapsed, alloc, want)
	for i, o := range out {
		if math.IsNaN(float64(o)) {
			t.Fatalf("out[%d] is NaN", i)
		}
	}
}

func TestAttentionSizePanics(t *testing.T) {
	f := func(n int) []float32 { return make([]float32, n) }
	ktPanics(t, func() { attentionForward(f(24), f(6), f(23), f(24), f(24), nil, 1, 2, 3, 3, 4, 1, false) },
		"attentionForward", "len(q) = 23", "want 24")
	ktPanics(t, func() { attentionForward(f(24), f(6), f(24), f(32), f(32), nil, 1, 2, 3, 4, 4, 1, true) },
		"attentionForward", "Tq=3", "Tk=4")
	ktPanics(t, func() {
		attentionBackward(nil, f(5), nil, f(24), f(24), f(24), f(24), f(24), f(6), nil, 1, 2, 3, 3, 4, 1, false)
	}, "attentionBackward", "len(dk) = 5", "want 24")
}

func BenchmarkAttention1024(b *testing.B) { benchAttention(b, 1, 8, 1024, 1024, 64) }
func BenchmarkAttention1024Causal(b *testing.B) {
	benchAttentionMode(b, 1, 8, 1024, 1024, 64, true, false)
}
func BenchmarkAttention1024Backward(b *testing.B) { benchAttentionBackward(b, 1, 8, 1024, 1024, 64) }
func BenchmarkAttention4096x77(b *testing.B)      { benchAttention(b, 2, 8, 4096, 77, 40) }

func benchAttention(b *testing.B, B, H, Tq, Tk, D int) {
	benchAttentionMode(b, B, H, Tq, Tk, D, false, false)
}
func benchAttentionBackward(b *testing.B, B, H, Tq, Tk, D int) {
	benchAttentionMode(b, B, H, Tq, Tk, D, false, true)
}

// benchAttentionMode reports GFLOP/s counting the two (forward) or five (backward)
// Tq×Tk×D matrix products at 2 flops per multiply-add (halved when causal).
func benchAttentionMode(b *testing.B, B, H, Tq, Tk, D int, causal, backward bool) {
	c := ktAttnCase{B: B, H: H, Tq: Tq, Tk: Tk, D: D}
	q, k, v, _ := ktAttnInputs(c)
	out, lse := make([]float32, len(q)), make([]float32, B*H*Tq)
	scale := float32(1 / math.Sqrt(float64(D)))
	attentionForward(out, lse, q, k, v, nil, B, H, Tq, Tk, D, scale, causal)
	dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
	flops := 4.0 * float64(B*H*Tq*Tk*D)
	if backward {
		flops = 10.0 * float64(B*H*Tq*Tk*D)
	}
	if causal {
		flops /= 2
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if backward {
			attentionBackward(dq, dk, dv, out, q, k, v, out, lse, nil, B, H, Tq, Tk, D, scale, causal)
		} else {
			attentionForward(out, lse, q, k, v, nil, B, H, Tq, Tk, D, scale, causal)
		}
	}
	b.ReportMetric(flops*float64(b.N)/time.Since(start).Seconds()/1e9, "GFLOP/s")
}
