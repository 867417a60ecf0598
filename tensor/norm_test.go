package tensor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// ktAffine returns w, b of length C (or nil) for the table's affine setting.
func ktAffine(rng *rand.Rand, C int, affine bool) (w, b []float32) {
	if !affine {
		return nil, nil
	}
	return ktRand(rng, C, 0.5, 1.5), ktRand(rng, C, -0.5, 0.5)
}

func TestGroupNorm(t *testing.T) {
	for _, c := range []struct {
		N, C, HW, G int
		affine      bool
	}{
		{1, 1, 1, 1, false}, {1, 3, 7, 1, true}, {2, 6, 7, 3, true}, {3, 32, 33, 8, false},
		{2, 64, 65, 32, true}, {1, 65, 1, 65, true}, {2, 128, 256, 32, true},
	} {
		t.Run(fmt.Sprintf("N%d_C%d_HW%d_G%d_aff%v", c.N, c.C, c.HW, c.G, c.affine), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, uint64(c.C*c.HW)))
			n := c.N * c.C * c.HW
			x := ktRand(rng, n, 2, 4) // offset mean: exercises the centred variance
			w, b := ktAffine(rng, c.C, c.affine)
			eps := float32(1e-5)
			out, mean, rstd := make([]float32, n), make([]float32, c.N*c.G), make([]float32, c.N*c.G)
			rout, rmean, rrstd := make([]float32, n), make([]float32, c.N*c.G), make([]float32, c.N*c.G)
			groupNormForward(out, mean, rstd, x, w, b, c.N, c.C, c.HW, c.G, eps)
			groupNormRef(rout, rmean, rrstd, x, w, b, c.N, c.C, c.HW, c.G, eps)
			ktClose(t, "out", out, rout, ktRefTol)
			ktClose(t, "mean", mean, rmean, ktRefTol)
			ktClose(t, "rstd", rstd, rrstd, ktRefTol)

			dout := ktRand(rng, n, -1, 1)
			ktBackwardCheck(t, []string{"dx", "dw", "db"}, []int{n, c.C, c.C}, false,
				func(g [][]float32) { groupNormBackward(g[0], g[1], g[2], dout, x, w, mean, rstd, c.N, c.C, c.HW, c.G) },
				func(g [][]float32) {
					groupNormBackwardRef(g[0], g[1], g[2], dout, x, w, mean, rstd, c.N, c.C, c.HW, c.G)
				})
		})
	}
}

func TestLayerNorm(t *testing.T) {
	for _, c := range []struct {
		rows, C int
		affine  bool
		drop    string // "w" or "b": affine with only the other one
	}{{1, 1, false, ""}, {7, 33, true, ""}, {65, 65, false, ""}, {3, 768, true, ""}, {1000, 64, true, ""},
		{5, 7, true, "w"}, {5, 7, true, "b"}} {
		t.Run(fmt.Sprintf("%dx%d_aff%v%s", c.rows, c.C, c.affine, c.drop), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(6, uint64(c.rows*c.C)))
			n := c.rows * c.C
			x := ktRand(rng, n, -3, 5)
			w, b := ktAffine(rng, c.C, c.affine)
			switch c.drop {
			case "w":
				w = nil
			case "b":
				b = nil
			}
			eps := float32(1e-5)
			out, mean, rstd := make([]float32, n), make([]float32, c.rows), make([]float32, c.rows)
			rout, rmean, rrstd := make([]float32, n), make([]float32, c.rows), make([]float32, c.rows)
			layerNormForward(out, mean, rstd, x, w, b, c.rows, c.C, eps)
			layerNormRef(rout, rmean, rrstd, x, w, b, c.rows, c.C, eps)
			ktClose(t, "out", out, rout, ktRefTol)
			ktClose(t, "mean", mean, rmean, ktRefTol)
			ktClose(t, "rstd", rstd, rrstd, ktRefTol)

			dout := ktRand(rng, n, -1, 1)
			ktBackwardCheck(t, []string{"dx", "dw", "db"}, []int{n, c.C, c.C}, false,
				func(g [][]float32) { layerNormBackward(g[0], g[1], g[2], dout, x, w, mean, rstd, c.rows, c.C) },
				func(g [][]float32) { layerNormBackwardRef(g[0], g[1], g[2], dout, x, w, mean, rstd, c.rows, c.C) })
		})
	}
}

func TestRMSNorm(t *testing.T) {
	for _, c := range []struct {
		rows, C int
		affine  bool
	}{{1, 1, false}, {7, 33, true}, {65, 65, false}, {3, 768, true}, {1000, 64, true}} {
		t.Run(fmt.Sprintf("%dx%d_aff%v", c.rows, c.C, c.affine), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(c.rows*c.C)))
			n := c.rows * c.C
			x := ktRand(rng, n, -2, 3)
			w, _ := ktAffine(rng, c.C, c.affine)
			eps := float32(1e-6)
			out, rstd := make([]float32, n), make([]float32, c.rows)
			rout, rrstd := make([]float32, n), make([]float32, c.rows)
			rmsNormForward(out, rstd, x, w, c.rows, c.C, eps)
			rmsNormRef(rout, rrstd, x, w, c.rows, c.C, eps)
			ktClose(t, "out", out, rout, ktRefTol)
			ktClose(t, "rstd", rstd, rrstd, ktRefTol)

			dout := ktRand(rng, n, -1, 1)
			ktBackwardCheck(t, []string{"dx", "dw"}, []int{n, c.C}, false,
				func(g [][]float32) { rmsNormBackward(g[0], g[1], dout, x, w, rstd, c.rows, c.C) },
				func(g [][]float32) { rmsNormBackwardRef(g[0], g[1], dout, x, w, rstd, c.rows, c.C) })
		})
	}
}

func TestNormGradCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	eps := float32(1e-5)
	t.Run("groupNorm", func(t *testing.T) {
		N, C, HW, G := 2, 4, 5, 2
		x := ktRand(rng, N*C*HW, -1, 2)
		w, b := ktAffine(rng, C, true)
		g := ktRand(rng, len(x), -1, 1)
		out, mean, rstd := make([]float32, len(x)), make([]float32, N*G), make([]float32, N*G)
		fwd := func() float64 { groupNormForward(out, mean, rstd, x, w, b, N, C, HW, G, eps); return ktDot(out, g) }
		fwd()
		dx, dw, db := make([]float32, len(x)), make([]float32, C), make([]float32, C)
		groupNormBackward(dx, dw, db, g, x, w, mean, rstd, N, C, HW, G)
		ktGradCheck(t, "dx", x, dx, fwd, ktFDStep, ktFDTol)
		ktGradCheck(t, "dw", w, dw, fwd, ktFDStep, ktFDTol)
		ktGradCheck(t, "db", b, db, fwd, ktFDStep, ktFDTol)
	})
	t.Run("layerNorm", func(t *testing.T) {
		rows, C := 3, 7
		x := ktRand(rng, rows*C, -1, 2)
		w, b := ktAffine(rng, C, true)
		g := ktRand(rng, len(x), -1, 1)
		out, mean, rstd := make([]float32, len(x)), make([]float32, rows), make([]float32, rows)
		fwd := func() float64 { layerNormForward(out, mean, rstd, x, w, b, rows, C, eps); return ktDot(out, g) }
		fwd()
		dx, dw, db := make([]float32, len(x)), make([]float32, C), make([]float32, C)
		layerNormBackward(dx, dw, db, g, x, w, mean, rstd, rows, C)
		ktGradCheck(t, "dx", x, dx, fwd, ktFDStep, ktFDTol)
		ktGradCheck(t, "dw", w, dw, fwd, ktFDStep, ktFDTol)
		ktGradCheck(t, "db", b, db, fwd, ktFDStep, ktFDTol)
	})
	t.Run("rmsNorm", func(t *testing.T) {
		rows, C := 3, 7
		x := ktRand(rng, rows*C, -1, 2)
		w, _ := ktAffine(rng, C, true)
		g := ktRand(rng, len(x), -1, 1)
		out, rstd := make([]float32, len(x)), make([]float32, rows)
		fwd := func() float64 { rmsNormForward(out, rstd, x, w, rows, C, eps); return ktDot(out, g) }
		fwd()
		dx, dw := make([]float32, len(x)), make([]float32, C)
		rmsNormBackward(dx, dw, g, x, w, rstd, rows, C)
		ktGradCheck(t, "dx", x, dx, fwd, ktFDStep, ktFDTol)
		ktGradCheck(t, "dw", w, dw, fwd, ktFDStep, ktFDTol)
	})
}

// TestNormDeterministic checks that the dw/db reductions give bit-identical results
// on repeated runs with the same thread count (no races, fixed reduction order).
func TestNormDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	rows, C := 4097, 96
	x, dout := ktRand(rng, rows*C, -1, 1), ktRand(rng, rows*C, -1, 1)
	w, b := ktAffine(rng, C, true)
	out, mean, rstd := make([]float32, rows*C), make([]float32, rows), make([]float32, rows)
	layerNormForward(out, mean, rstd, x, w, b, rows, C, 1e-5)
	for _, th := range []int{1, 3, 8} {
		ktWithThreads(th, func() {
			var first []float32
			for rep := 0; rep < 3; rep++ {
				dw, db := make([]float32, C), make([]float32, C)
				layerNormBackward(nil, dw, db, dout, x, w, mean, rstd, rows, C)
				got := append(dw, db...)
				if first == nil {
					first = got
				} else if !slices.Equal(first, got) {
					t.Fatalf("threads=%d: layerNormBackward dw/db differ between runs", th)
				}
			}
		})
	}
}

func TestNormSizePanics(t *testing.T) {
	f := func(n int) []float32 { return make([]float32, n) }
	ktPanics(t, func() { layerNormForward(f(12), f(3), f(3), f(12), f(5), nil, 3, 4, 1e-5) }, "layerNormForward", "len(w) = 5", "4")
	ktPanics(t, func() { groupNormForward(f(12), f(3), f(3), f(12), nil, nil, 1, 6, 2, 4, 1e-5) }, "groupNormForward", "C=6", "G=4")
	ktPanics(t, func() { rmsNormBackward(f(11), nil, f(12), f(12), nil, f(3), 3, 4) }, "rmsNormBackward", "len(dx) = 11", "12")
}

func BenchmarkLayerNorm4096x768(b *testing.B) { benchLayerNorm(b, 4096, 768) }

func benchLayerNorm(b *testing.B, rows, C int) {
	rng := rand.New(rand.NewPCG(1, 1))
	x, dout := ktRand(rng, rows*C, -1, 1), ktRand(rng, rows*C, -1, 1)
	w, bb := ktAffine(rng, C, true)
	out, mean, rstd := make([]float32, rows*C), make([]float32, rows), make([]float32, rows)
	dx, dw, db := make([]float32, rows*C), make([]float32, C), make([]float32, C)
	b.SetBytes(int64(4 * 5 * rows * C)) // forward reads x, writes out; backward reads x, dout, rw dx
	b.ReportAllocs()
	for b.Loop() {
		layerNormForward(out, mean, rstd, x, w, bb, rows, C, 1e-5)
		layerNormBackward(dx, dw, db, dout, x, w, mean, rstd, rows, C)
	}
}
