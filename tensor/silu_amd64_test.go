//go:build !purego

package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestSiLUAVX512 compares the assembly SiLU kernels with the Go loops they replace
// (siluUseFast off), as TestGELUTanhAVX512 does: on lengths that are multiples of 16
// both take their exponentials from expShiftAVX512 and every other step is the same
// float32 operation, so the results must be equal bit for bit.
func TestSiLUAVX512(t *testing.T) {
	if !cpu.avx512F {
		t.Skip("no AVX-512 on this CPU")
	}
	inf := float32(math.Inf(1))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 10, -10, 30, -30, 88, -88, 100, -100,
		1e30, -1e30, inf, -inf, float32(math.NaN()), 1e-30, -1e-30, 3.7, -3.7}
	for _, n := range []int{16, 32, 256, 4096 + 16, 3 * kernelGrain} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(6, uint64(n)))
			x, dout := ktRand(rng, n, -12, 12), ktRand(rng, n, -2, 2)
			copy(x, special)
			run := func(fast bool) (y, dx []float32) {
				siluUseFast = fast
				defer func() { siluUseFast = true }()
				y, dx = make([]float32, n), ktRand(rand.New(rand.NewPCG(5, 5)), n, -1, 1)
				siluForward(y, x)
				siluBackward(dx, dout, x)
				return y, dx
			}
			fy, fdx := run(true)
			gy, gdx := run(false)
			for i := range fy {
				if math.Float32bits(fy[i]) != math.Float32bits(gy[i]) && !(fy[i] != fy[i] && gy[i] != gy[i]) {
					t.Fatalf("forward x = %v: assembly %v, Go %v", x[i], fy[i], gy[i])
				}
				if math.Float32bits(fdx[i]) != math.Float32bits(gdx[i]) && !(fdx[i] != fdx[i] && gdx[i] != gdx[i]) {
					t.Fatalf("backward x = %v: assembly %v, Go %v", x[i], fdx[i], gdx[i])
				}
			}
		})
	}
}
