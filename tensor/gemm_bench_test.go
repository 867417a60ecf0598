package tensor

import (
	"math/rand"
	"testing"
)

// Shapes are named MxKxN as in gemm_openblas.py: A is M×K, B is K×N, C is M×N.
func BenchmarkGemm64(b *testing.B)             { benchGemm(b, 64, 64, 64) }
func BenchmarkGemm256(b *testing.B)            { benchGemm(b, 256, 256, 256) }
func BenchmarkGemm1024(b *testing.B)           { benchGemm(b, 1024, 1024, 1024) }
func BenchmarkGemm4096x1152x1152(b *testing.B) { benchGemm(b, 4096, 1152, 1152) }
func BenchmarkGemm512x4096x512(b *testing.B)   { benchGemm(b, 512, 4096, 512) }
func BenchmarkGemm256x384x1536(b *testing.B)   { benchGemm(b, 256, 384, 1536) }
func BenchmarkGemm4096x320x320(b *testing.B)   { benchGemm(b, 4096, 320, 320) }

func BenchmarkGemmTransB1024(b *testing.B)    { benchGemmT(b, false, true, 1024, 1024, 1024) }
func BenchmarkGemmTransA1024(b *testing.B)    { benchGemmT(b, true, false, 1024, 1024, 1024) }
func BenchmarkGemmB16BF1024(b *testing.B)     { benchGemmB16(b, true, 1024, 1024, 1024) }
func BenchmarkGemmBatched64x128(b *testing.B) { benchGemmBatched(b, 64, 128, 64, 128) }

func BenchmarkGemmBF16_1024(b *testing.B)           { benchGemmBF16(b, 1024, 1024, 1024) }
func BenchmarkGemmBF16_4096x1152x1152(b *testing.B) { benchGemmBF16(b, 4096, 1152, 1152) }
func BenchmarkGemmBF16_512x4096x512(b *testing.B)   { benchGemmBF16(b, 512, 4096, 512) }
func BenchmarkGemmBF16_256x384x1536(b *testing.B)   { benchGemmBF16(b, 256, 384, 1536) }
func BenchmarkGemmBF16_4096x320x320(b *testing.B)   { benchGemmBF16(b, 4096, 320, 320) }

// benchGemm times C = A·B (beta = 0) for A m×k, B k×n, all row-major and contiguous.
func benchGemm(b *testing.B, m, k, n int) { benchGemmT(b, false, false, m, k, n) }

func benchGemmT(b *testing.B, transA, transB bool, m, k, n int) {
	rng := rand.New(rand.NewSource(1))
	a, bb, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	Gemm(transA, transB, m, n, k, 1, a, lda, bb, ldb, 0, c, n) // warm the pools
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Gemm(transA, transB, m, n, k, 1, a, lda, bb, ldb, 0, c, n)
	}
	reportGFLOPS(b, m, k, n, 1)
}

func benchGemmBF16(b *testing.B, m, k, n int) {
	rng := rand.New(rand.NewSource(1))
	a, bb, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
	GemmBF16(false, false, m, n, k, 1, a, k, bb, n, 0, c, n) // warm the pools
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		GemmBF16(false, false, m, n, k, 1, a, k, bb, n, 0, c, n)
	}
	reportGFLOPS(b, m, k, n, 1)
}

func benchGemmB16(b *testing.B, bf16 bool, m, k, n int) {
	rng := rand.New(rand.NewSource(1))
	a, c := randSlice(rng, m*k), make([]float32, m*n)
	h := make([]uint16, k*n)
	for i := range h {
		h[i] = F32ToBF16(2*rng.Float32() - 1)
	}
	GemmB16(false, false, m, n, k, 1, a, k, h, bf16, n, 0, c, n)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		GemmB16(false, false, m, n, k, 1, a, k, h, bf16, n, 0, c, n)
	}
	reportGFLOPS(b, m, k, n, 1)
}

func benchGemmBatched(b *testing.B, batch, m, k, n int) {
	rng := rand.New(rand.NewSource(1))
	a, bb, c := randSlice(rng, batch*m*k), randSlice(rng, batch*k*n), make([]float32, batch*m*n)
	GemmBatched(false, true, batch, m, n, k, 1, a, k, m*k, bb, k, k*n, 0, c, n, m*n)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		GemmBatched(false, true, batch, m, n, k, 1, a, k, m*k, bb, k, k*n, 0, c, n, m*n)
	}
	reportGFLOPS(b, m, k, n, batch)
}

func reportGFLOPS(b *testing.B, m, k, n, batch int) {
	flops := 2 * float64(m) * float64(k) * float64(n) * float64(batch) * float64(b.N)
	b.ReportMetric(flops/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
}

// BenchmarkGemmMicroKernel times the active micro-kernel alone on packed panels that
// stay in cache (KC = 256, an MC×KC A block against one B micro-panel), i.e. the
// ceiling for the whole GEMM.
func BenchmarkGemmMicroKernel(b *testing.B) {
	kern := activeKernel
	const kc, panels = 256, 8
	rng := rand.New(rand.NewSource(1))
	pa := randSlice(rng, panels*kern.mr*kc)
	pb := randSlice(rng, kern.nr*kc)
	c := make([]float32, panels*kern.mr*kern.nr)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for p := 0; p < panels; p++ {
			callKernel(kern, kc, &pa[p*kern.mr*kc], &pb[0], &c[p*kern.mr*kern.nr], kern.nr, 1, 0)
		}
	}
	reportGFLOPS(b, panels*kern.mr, kc, kern.nr, 1)
}
