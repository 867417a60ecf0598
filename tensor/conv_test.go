package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func (p ConvParams) String() string {
	return fmt.Sprintf("N%d_C%d_%dx%d_O%d_k%dx%d_s%d_p%d_g%d", p.N, p.C, p.H, p.W, p.O, p.KH, p.KW, p.StrideH, p.PadH, p.Groups)
}

// ktConvCases covers 1×1 and 3×3 kernels, strides 1 and 2, padding 0 and 1,
// groups 1, 2 and depthwise, odd sizes, and the pointwise GEMM path.
var ktConvCases = []ConvParams{
	{N: 1, C: 1, H: 1, W: 1, O: 1, KH: 1, KW: 1, StrideH: 1, StrideW: 1, Groups: 1},
	{N: 2, C: 3, H: 7, W: 5, O: 4, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, Groups: 1},
	{N: 1, C: 4, H: 7, W: 7, O: 6, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 2},
	{N: 3, C: 8, H: 9, W: 6, O: 8, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, Groups: 8}, // depthwise
	{N: 2, C: 6, H: 9, W: 11, O: 12, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 0, PadW: 0, Groups: 6},
	{N: 2, C: 16, H: 13, W: 7, O: 8, KH: 1, KW: 1, StrideH: 1, StrideW: 1, Groups: 1}, // pointwise GEMM
	{N: 1, C: 8, H: 9, W: 9, O: 4, KH: 1, KW: 1, StrideH: 2, StrideW: 2, Groups: 2},   // 1×1 stride 2
	{N: 1, C: 4, H: 5, W: 5, O: 2, KH: 1, KW: 1, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, Groups: 1},
	{N: 1, C: 3, H: 33, W: 65, O: 5, KH: 3, KW: 3, StrideH: 1, StrideW: 2, PadH: 1, PadW: 0, Groups: 1},
	{N: 1, C: 2, H: 6, W: 5, O: 2, KH: 2, KW: 3, StrideH: 3, StrideW: 1, PadH: 2, PadW: 1, Groups: 1},
	{N: 2, C: 2, H: 1, W: 1, O: 3, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, Groups: 1}, // 1×1 image, 3×3 kernel
	{N: 2, C: 32, H: 33, W: 33, O: 32, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, Groups: 1},
	{N: 1, C: 64, H: 65, W: 65, O: 16, KH: 1, KW: 1, StrideH: 1, StrideW: 1, Groups: 1},
}

func TestConv2d(t *testing.T) {
	for i, p := range ktConvCases {
		// Alternate thread counts so every parallel path runs: 1 (serial), 2, and 7
		// (more workers than images: row tiles and the parallel-Gemm dx path).
		th := []int{2, 7, 1}[i%3]
		t.Run(fmt.Sprintf("%v_t%d", p, th), func(t *testing.T) {
			ktWithThreads(th, func() { ktConvCheck(t, p) })
		})
	}
}

func ktConvCheck(t *testing.T, p ConvParams) {
	rng := rand.New(rand.NewPCG(10, uint64(p.C*p.H*p.W+p.O)))
	x := ktRand(rng, p.N*p.C*p.H*p.W, -1, 1)
	w := ktRand(rng, p.O*p.C/p.Groups*p.KH*p.KW, -1, 1)
	bias := ktRand(rng, p.O, -1, 1)
	nOut := p.N * p.O * p.OH() * p.OW()
	out, ref := ktRand(rng, nOut, -9, 9), make([]float32, nOut) // forward must overwrite
	conv2dForward(out, x, w, bias, p)
	conv2dRef(ref, x, w, bias, p)
	ktClose(t, "out", out, ref, ktRefTol)
	conv2dForward(out, x, w, nil, p)
	conv2dRef(ref, x, w, nil, p)
	ktClose(t, "out (no bias)", out, ref, ktRefTol)

	dout := ktRand(rng, nOut, -1, 1)
	ktBackwardCheck(t, []string{"dx", "dw", "dbias"}, []int{len(x), len(w), p.O}, false,
		func(g [][]float32) { conv2dBackward(g[0], g[1], g[2], dout, x, w, p) },
		func(g [][]float32) { conv2dBackwardRef(g[0], g[1], g[2], dout, x, w, p) })
}

func TestConv2dGradCheck(t *testing.T) {
	for _, p := range []ConvParams{
		{N: 2, C: 4, H: 5, W: 6, O: 4, KH: 3, KW: 3, StrideH: 2, StrideW: 1, PadH: 1, PadW: 1, Groups: 2},
		{N: 1, C: 3, H: 4, W: 3, O: 2, KH: 1, KW: 1, StrideH: 1, StrideW: 1, Groups: 1},
	} {
		t.Run(p.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, 11))
			x := ktRand(rng, p.N*p.C*p.H*p.W, -1, 1)
			w := ktRand(rng, p.O*p.C/p.Groups*p.KH*p.KW, -1, 1)
			bias := ktRand(rng, p.O, -1, 1)
			g := ktRand(rng, p.N*p.O*p.OH()*p.OW(), -1, 1)
			out := make([]float32, len(g))
			fwd := func() float64 { conv2dForward(out, x, w, bias, p); return ktDot(out, g) }
			dx, dw, db := make([]float32, len(x)), make([]float32, len(w)), make([]float32, p.O)
			conv2dBackward(dx, dw, db, g, x, w, p)
			ktGradCheck(t, "dx", x, dx, fwd, ktFDStep, ktFDTol)
			ktGradCheck(t, "dw", w, dw, fwd, ktFDStep, ktFDTol)
			ktGradCheck(t, "dbias", bias, db, fwd, ktFDStep, ktFDTol)
		})
	}
}

func TestConvParamsCheck(t *testing.T) {
	ok := ConvParams{N: 1, C: 4, H: 5, W: 5, O: 6, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 2}
	ok.Check()
	if ok.OH() != 3 || ok.OW() != 3 {
		t.Fatalf("OH, OW = %d, %d; want 3, 3", ok.OH(), ok.OW())
	}
	bad := ok
	bad.Groups = 3
	ktPanics(t, bad.Check, "ConvParams.Check", "Groups=3")
	f := func(n int) []float32 { return make([]float32, n) }
	ktPanics(t, func() { conv2dForward(f(54), f(100), f(108), nil, bad) }, "conv2dForward", "Groups=3")
	bad = ok
	bad.StrideW = 0
	ktPanics(t, bad.Check, "ConvParams", "strides")
	bad = ok
	bad.KH = 8
	ktPanics(t, bad.Check, "ConvParams", "kernel larger")
	ktPanics(t, func() { conv2dForward(f(54), f(99), f(108), nil, ok) }, "conv2dForward", "len(x) = 99", "want 100")
	ktPanics(t, func() { conv2dForward(f(54), f(100), f(108), f(5), ok) }, "conv2dForward", "len(bias) = 5", "6")
	ktPanics(t, func() { conv2dBackward(f(3), nil, nil, f(54), f(100), f(108), ok) }, "conv2dBackward", "len(dx) = 3", "100")
}

// TestConv2dDeterministic checks that dw is bit-identical across runs at a fixed
// thread count (per-slot partial sums reduced in slot order).
func TestConv2dDeterministic(t *testing.T) {
	p := ConvParams{N: 4, C: 8, H: 17, W: 17, O: 8, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1, Groups: 1}
	rng := rand.New(rand.NewPCG(12, 12))
	x, w := ktRand(rng, p.N*p.C*p.H*p.W, -1, 1), ktRand(rng, p.O*p.C*9, -1, 1)
	dout := ktRand(rng, p.N*p.O*p.OH()*p.OW(), -1, 1)
	ktWithThreads(3, func() {
		first := make([]float32, len(w))
		conv2dBackward(nil, first, nil, dout, x, w, p)
		for rep := 0; rep < 3; rep++ {
			dw := make([]float32, len(w))
			conv2dBackward(nil, dw, nil, dout, x, w, p)
			for i := range dw {
				if dw[i] != first[i] {
					t.Fatalf("dw[%d] differs between runs: %v vs %v", i, dw[i], first[i])
				}
			}
		}
	})
}

func BenchmarkConv3x3_64ch_64x64(b *testing.B) { benchConv(b, 1, 64, 64, 64, 64, 3, 1, 1, 1, false) }
func BenchmarkConv3x3_64ch_64x64Backward(b *testing.B) {
	benchConv(b, 1, 64, 64, 64, 64, 3, 1, 1, 1, true)
}
func BenchmarkConv1x1_256ch_32x32(b *testing.B) { benchConv(b, 1, 256, 32, 32, 256, 1, 1, 0, 1, false) }

// benchConv reports GFLOP/s of conv2dForward (or of conv2dBackward computing dx and
// dw, twice the forward's multiply-adds).
func benchConv(b *testing.B, N, C, H, W, O, K, stride, pad, groups int, backward bool) {
	p := ConvParams{N: N, C: C, H: H, W: W, O: O, KH: K, KW: K, StrideH: stride, StrideW: stride, PadH: pad, PadW: pad, Groups: groups}
	rng := rand.New(rand.NewPCG(1, 1))
	x, w := ktRand(rng, N*C*H*W, -1, 1), ktRand(rng, O*C/groups*K*K, -1, 1)
	out := make([]float32, N*O*p.OH()*p.OW())
	flops := 2.0 * float64(len(out)) * float64(C/groups*K*K)
	dx, dw := make([]float32, len(x)), make([]float32, len(w))
	if backward {
		flops *= 2
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if backward {
			conv2dBackward(dx, dw, nil, out, x, w, p)
		} else {
			conv2dForward(out, x, w, nil, p)
		}
	}
	b.ReportMetric(flops*float64(b.N)/time.Since(start).Seconds()/1e9, "GFLOP/s")
}
