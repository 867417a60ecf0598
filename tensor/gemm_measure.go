package tensor

import (
	"math/rand/v2"
	"slices"
	"time"
)

// MeasureGemm times C[m,n] = A[m,k]·B[k,n] on random float32 data with the current
// thread count and returns GFLOP/s: 2·m·k·n per call over the median of seven
// samples, each lasting at least minTime/7 seconds, after two warm-up calls.
func MeasureGemm(m, k, n int, minTime float64) float64 { return measureGemm(Gemm, m, k, n, minTime) }

// MeasureGemmBF16 is MeasureGemm for GemmBF16.
func MeasureGemmBF16(m, k, n int, minTime float64) float64 {
	return measureGemm(GemmBF16, m, k, n, minTime)
}

func measureGemm(gemm func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int), m, k, n int, minTime float64) float64 {
	rng := rand.New(rand.NewPCG(1, 2))
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for i := range a {
		a[i] = rng.Float32()
	}
	for i := range b {
		b[i] = rng.Float32()
	}
	call := func() { gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n) }
	call()
	t0 := time.Now()
	call()
	one := max(time.Since(t0).Seconds(), 1e-9)
	const samples = 7
	inner := max(1, int(minTime/samples/one))
	var ts []float64
	for range samples {
		t0 := time.Now()
		for range inner {
			call()
		}
		ts = append(ts, time.Since(t0).Seconds()/float64(inner))
	}
	slices.Sort(ts)
	return 2 * float64(m) * float64(k) * float64(n) / ts[samples/2] / 1e9
}
