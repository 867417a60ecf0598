//go:build !purego

package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestKernelExpShiftAVX512 compares the assembly with kernelExpShiftGo over odd
// lengths, shifts and special values, and checks its accuracy against math.Exp.
func TestKernelExpShiftAVX512(t *testing.T) {
	if !cpu.avx512F {
		t.Skip("no AVX-512 on this CPU")
	}
	inf := float32(math.Inf(1))
	special := []float32{0, -0.0, 1, -1, -87.33654, -87.3365, -87.34, 88.72283, 88.7228, 88.73, -88, 88.5,
		-inf, inf, float32(math.NaN()), -1000, 1000, 1e-30, -1e-30, 80, -80, 0.34657359, -0.34657359}
	for _, n := range []int{1, 7, 15, 16, 17, 33, 257, 4096} {
		for _, m := range []float32{0, 3.5, -2} {
			t.Run(fmt.Sprintf("n%d/m%v", n, m), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(8, uint64(n)))
				x := ktRand(rng, n, -90, 90)
				copy(x, special)
				got, want := slices.Clone(x), slices.Clone(x)
				gs := kernelExpShift(got, m)
				ws := kernelExpShiftGo(want, m)
				for i := range got {
					g, w := float64(got[i]), float64(want[i])
					if math.IsNaN(w) || math.IsInf(w, 0) || w == 0 {
						if !(g == w || math.IsNaN(g) && math.IsNaN(w)) {
							t.Fatalf("x = %v: got %v, Go kernel %v", x[i], g, w)
						}
						continue
					}
					// Fused Cody–Waite steps change the last bit at most; below the
					// smallest normal float32 the ulp is absolute (2^-149).
					if math.Abs(g-w) > 2.5e-7*math.Abs(w)+1.5e-45 {
						t.Fatalf("x = %v: got %v, Go kernel %v", x[i], g, w)
					}
					if e := math.Exp(float64(x[i] - m)); math.Abs(g-e) > 2.4e-7*e+1.5e-45 {
						t.Fatalf("x = %v: got %v, exp %v (> 2 ulps)", x[i], g, e)
					}
				}
				// The sums add in a different order: compare to float32 rounding of n terms.
				if !(math.IsNaN(float64(gs)) && math.IsNaN(float64(ws))) && math.Abs(float64(gs-ws)) > 1e-6*float64(n)*math.Abs(float64(ws)) {
					t.Fatalf("sum %v, Go kernel %v", gs, ws)
				}
			})
		}
	}
}
