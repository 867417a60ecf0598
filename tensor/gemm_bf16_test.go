package tensor

import (
	"math"
	"math/rand"
	"slices"
	"sort"
	"testing"
)

// roundBF16 returns s with every value rounded to bfloat16.
func roundBF16(s []float32) []float32 {
	out := make([]float32, len(s))
	for i, v := range s {
		out[i] = BF16ToF32(F32ToBF16(v))
	}
	return out
}

// TestBF16Pairs: the pair packing equals the plain Go one bit for bit over panel widths
// around the 16-lane blocks (14 and 32 are the kernel's), with ties, infinities and
// quiet NaNs among the values.
func TestBF16Pairs(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), math.Float32frombits(0x3f808000), math.Float32frombits(0x3f818000), // ties to even: down, up
		math.Float32frombits(0x7f7fffff), 1e-40} // rounds to +Inf; a denormal
	for _, w := range []int{1, 7, 14, 15, 16, 17, 32, 33} {
		for _, pairs := range []int{1, 3} {
			src := randSlice(rng, 2*pairs*w)
			for i, v := range special {
				src[(i*7)%len(src)] = v
			}
			got, want := make([]float32, pairs*w+1), make([]float32, pairs*w+1)
			got[pairs*w], want[pairs*w] = 42, 42 // must stay: nothing is written past the panel
			bf16Pairs(got, src, w, pairs)
			bf16PairsGo(want, src, w, pairs)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("w=%d pairs=%d: word %d = %#08x, Go %#08x", w, pairs, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
				}
			}
		}
	}
}

// TestGemmBF16: over the odd sizes, transposes, padded leading dimensions and betas of
// TestGemm, GemmBF16 equals the float64 GEMM of the bfloat16-rounded operands within
// the float32 accumulation bound of gemmTol (the products of bfloat16 values are exact
// in float32, so only the additions round), on the pair kernel and emulated, and is
// bitwise the same on 1 and 2 threads.
func TestGemmBF16(t *testing.T) {
	defer SetThreads(0)
	paths := []bool{true}
	if bf16Kernel() != nil {
		paths = append(paths, false) // the pair kernel too
	}
	for _, emulate := range paths {
		bf16Emulate = emulate
		for i, tc := range gemmCases() {
			a, lda, b, ldb, c, ldc := tc.operands(int64(i))
			want := slices.Clone(c)
			gemmRef(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, roundBF16(a), lda, roundBF16(b), ldb, tc.beta, want, ldc)
			var got1 []float32
			for _, threads := range []int{1, 2} {
				SetThreads(threads)
				got := slices.Clone(c)
				GemmBF16(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, got, ldc)
				compareC(t, "GemmBF16", tc, got, want, ldc)
				if got1 == nil {
					got1 = got
				} else if !slices.EqualFunc(got, got1, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }) {
					t.Errorf("GemmBF16 %v (emulated %v): 1 and 2 threads differ", tc, emulate)
				}
			}
		}
	}
	bf16Emulate = false
}

// TestGemmBF16Error measures GemmBF16 against the float32 Gemm on operands uniform in
// [-1, 1) for K = 64, 1024 and 4096 (256×256 outputs): the largest difference relative
// to the largest |C|, and the median elementwise relative difference. Rounding both
// operands to bfloat16 (unit roundoff 2^-9) perturbs each product by up to 2^-8
// relative and, with independent signs, a sum of K such errors grows like √K as C does,
// so the normwise figure stays near 2^-8·(a few): the test bounds it by 2^-6 and logs
// the figures (README: "BF16 GEMM").
func TestGemmBF16Error(t *testing.T) {
	const m, n = 256, 256
	rng := rand.New(rand.NewSource(2))
	for _, k := range []int{64, 1024, 4096} {
		a, b := randSlice(rng, m*k), randSlice(rng, k*n)
		c32, c16 := make([]float32, m*n), make([]float32, m*n)
		Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c32, n)
		GemmBF16(false, false, m, n, k, 1, a, k, b, n, 0, c16, n)
		var maxC, maxD float64
		rel := make([]float64, m*n)
		for i := range c32 {
			d := math.Abs(float64(c16[i]) - float64(c32[i]))
			maxC, maxD = math.Max(maxC, math.Abs(float64(c32[i]))), math.Max(maxD, d)
			rel[i] = d / math.Abs(float64(c32[i]))
		}
		sort.Float64s(rel)
		t.Logf("K=%d (%s): max|diff|/max|C| = %.2e, median relative = %.2e", k, GemmBF16Kernel(), maxD/maxC, rel[len(rel)/2])
		if maxD/maxC > 1.0/64 {
			t.Errorf("K=%d: max|diff|/max|C| = %.2e > 2^-6", k, maxD/maxC)
		}
		if maxD == 0 {
			t.Errorf("K=%d: GemmBF16 equals Gemm exactly: the operands were not rounded", k)
		}
	}
}
