package cuda

import (
	"testing"
	"time"
)

// gemmBF16 prepares bf16 A [m,k], B [n,k] and float32 C [m,n] on the device and
// returns a function that queues one C = A·Bᵀ with the own kernel or cuBLAS.
func gemmBF16(t testing.TB, d *Device, m, n, k int, useCUBLAS bool) func() error {
	t.Helper()
	a, b := make([]uint16, m*k), make([]uint16, n*k)
	for i, v := range randn(m*k, 40) {
		a[i] = toBF16(v)
	}
	for i, v := range randn(n*k, 41) {
		b[i] = toBF16(v)
	}
	A, B, C := up(t, d, a), up(t, d, b), zeros(t, d, m*n)
	if !useCUBLAS {
		return func() error { return d.GemmBF16(C, A, B, m, n, k, 1, 0) }
	}
	cb, err := d.NewCUBLAS()
	if err != nil {
		t.Skipf("cuBLAS: %v", err)
	}
	t.Cleanup(func() { cb.Close() })
	return func() error { return cb.GemmBF16NT(C, A, B, m, n, k, 1, 0) }
}

// timeGemm returns the median GPU time of reps runs after a warm-up.
func timeGemm(t testing.TB, d *Device, run func() error, reps int) time.Duration {
	t.Helper()
	if err := run(); err != nil {
		t.Fatal(err)
	}
	var ts []time.Duration
	for range reps {
		el, err := d.Elapsed(run)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, el)
	}
	for i := range ts { // insertion sort: a handful of samples
		for j := i; j > 0 && ts[j] < ts[j-1]; j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
	return ts[len(ts)/2]
}

func benchGemmBF16(b *testing.B, m, n, k int, useCUBLAS bool) {
	d := gpu(b)
	run := gemmBF16(b, d, m, n, k, useCUBLAS)
	b.ReportAllocs()
	b.ResetTimer()
	var gpuTime time.Duration
	for range b.N {
		el, err := d.Elapsed(run)
		if err != nil {
			b.Fatal(err)
		}
		gpuTime += el
	}
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/gpuTime.Seconds()/1e12, "TFLOP/s")
}

func BenchmarkGemmBF16Own4096(b *testing.B)    { benchGemmBF16(b, 4096, 4096, 4096, false) }
func BenchmarkGemmBF16CUBLAS4096(b *testing.B) { benchGemmBF16(b, 4096, 4096, 4096, true) }

// TestGemmBF16SpeedVsCUBLAS is the acceptance bar: the own bf16 kernel
// reaches at least half of cuBLAS's throughput on 4096³. It also checks the two
// agree, so the timing compares equal work.
func TestGemmBF16SpeedVsCUBLAS(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test; not in -short")
	}
	d := gpu(t)
	const m, n, k = 4096, 4096, 4096
	own := timeGemm(t, d, gemmBF16(t, d, m, n, k, false), 11)
	ref := timeGemm(t, d, gemmBF16(t, d, m, n, k, true), 11)
	tflops := func(el time.Duration) float64 { return 2 * m * n * k / el.Seconds() / 1e12 }
	t.Logf("4096³ bf16 on %s: own %.1f TFLOP/s (%v), cuBLAS %.1f TFLOP/s (%v): %.0f%%", d.Info().Name, tflops(own), own, tflops(ref), ref, 100*ref.Seconds()/own.Seconds())
	if own > 2*ref {
		t.Errorf("own kernel reaches %.0f%% of cuBLAS, want >= 50%%", 100*ref.Seconds()/own.Seconds())
	}
}

// TestGemmBF16MatchesCUBLAS compares the own kernel with cuBLAS on the same bf16
// inputs: both accumulate exact bf16 products in fp32, so they agree to 1e-4 of
// max|C| (summation order only).
func TestGemmBF16MatchesCUBLAS(t *testing.T) {
	d := gpu(t)
	const m, n, k = 512, 384, 1000
	a, b := make([]uint16, m*k), make([]uint16, n*k)
	for i, v := range randn(m*k, 42) {
		a[i] = toBF16(v)
	}
	for i, v := range randn(n*k, 43) {
		b[i] = toBF16(v)
	}
	A, B, C1, C2 := up(t, d, a), up(t, d, b), zeros(t, d, m*n), zeros(t, d, m*n)
	cb, err := d.NewCUBLAS()
	if err != nil {
		t.Skipf("cuBLAS: %v", err)
	}
	defer cb.Close()
	if err := d.GemmBF16(C1, A, B, m, n, k, 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := cb.GemmBF16NT(C2, A, B, m, n, k, 1, 0); err != nil {
		t.Fatal(err)
	}
	within(t, "own vs cuBLAS", down(t, d, C1, m*n), down(t, d, C2, m*n), fp32Tol)
}
