package tensor

import (
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"strings"
	"testing"
)

// randSlice returns n values uniform in [-1, 1).
func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = 2*rng.Float32() - 1
	}
	return s
}

type gemmCase struct {
	m, n, k        int
	transA, transB bool
	pad            int // extra leading-dimension elements on A, B and C
	alpha, beta    float32
}

func (tc gemmCase) String() string {
	return fmt.Sprintf("m%d_n%d_k%d_tA%v_tB%v_pad%d_a%g_b%g", tc.m, tc.n, tc.k, tc.transA, tc.transB, tc.pad, tc.alpha, tc.beta)
}

// gemmCases covers odd sizes around the tile sizes (MR = 4/6/14, NR = 4/16/32) and the
// K block (256), all four transpose combinations, padded leading dimensions and the
// three betas, without the full cross product.
func gemmCases() []gemmCase {
	sizes := [][3]int{ // m, n, k
		{1, 1, 1}, {2, 7, 15}, {7, 2, 16}, {15, 17, 1}, {16, 16, 16}, {17, 33, 7},
		{33, 15, 64}, {64, 65, 33}, {65, 64, 127}, {127, 33, 65}, {14, 32, 257},
		{28, 64, 17}, {257, 17, 33}, {33, 257, 2}, {65, 127, 257}, {129, 97, 300},
		{1, 257, 65}, {257, 1, 127}, {2, 2, 520},
	}
	betas := []float32{0, 1, 0.5}
	var cs []gemmCase
	for i, s := range sizes {
		for t := 0; t < 4; t++ {
			cs = append(cs, gemmCase{
				m: s[0], n: s[1], k: s[2],
				transA: t&1 != 0, transB: t&2 != 0,
				pad:   (i + t) % 3 * 3, // 0, 3 or 6 extra columns
				alpha: []float32{1, -0.75, 2.5}[(i+t)%3],
				beta:  betas[(i*4+t)%3],
			})
		}
	}
	return cs
}

// operands builds A, B, C for a case (C NaN-filled when beta == 0, to check it is not read).
func (tc gemmCase) operands(seed int64) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	rng := rand.New(rand.NewSource(seed))
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	lda, ldb, ldc = ac+tc.pad, bc+tc.pad, tc.n+tc.pad
	a = randSlice(rng, ar*lda)
	b = randSlice(rng, br*ldb)
	c = randSlice(rng, tc.m*ldc)
	if tc.beta == 0 {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	return
}

// gemmTol is the allowed |got - want| for an element of C. Each product a·b is exact in
// float64; a float32 kernel rounds every partial sum, so the error of a k-term dot
// product is bounded by ~k·eps·sum|a·b| (eps = 2^-24, the float32 unit roundoff), plus
// one rounding each for alpha, beta·C and the store. With |a|,|b| <= 1 we use
// sum|a·b| <= k, a 2× safety factor, and compare to |alpha|·k + |beta|·|C| scale.
func gemmTol(k int, alpha, beta float32) float64 {
	const eps = 1.0 / (1 << 24)
	return 2 * eps * float64(k+4) * (math.Abs(float64(alpha))*float64(k) + math.Abs(float64(beta)) + 1)
}

// compareC checks got against want in the m×n window and that padding was untouched.
func compareC(t *testing.T, name string, tc gemmCase, got, want []float32, ldc int) {
	t.Helper()
	tol := gemmTol(tc.k, tc.alpha, tc.beta)
	bad := 0
	for i := 0; i < tc.m; i++ {
		for j := 0; j < ldc; j++ {
			g, w := got[i*ldc+j], want[i*ldc+j]
			if j >= tc.n { // padding: must be bit-identical (NaN stays NaN)
				if math.Float32bits(g) != math.Float32bits(w) && !(g != g && w != w) {
					t.Errorf("%s %v: padding C[%d,%d] changed: %v -> %v", name, tc, i, j, w, g)
					return
				}
				continue
			}
			if d := math.Abs(float64(g) - float64(w)); !(d <= tol) {
				if bad < 3 {
					t.Errorf("%s %v: C[%d,%d] = %v, want %v (|diff| %.3g > tol %.3g)", name, tc, i, j, g, w, d, tol)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s %v: %d bad elements", name, tc, bad)
	}
}

type gemmFunc func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

func gemmVariants() map[string]gemmFunc {
	return map[string]gemmFunc{
		"Gemm":       Gemm,
		"GemmSerial": GemmSerial,
		"GemmBatched1": func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
			GemmBatched(transA, transB, 1, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0)
		},
		"GemmB16exact": func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
			// b was rounded to bf16-representable values by the caller (see runGemmCase),
			// so the 16-bit path must agree with the float32 reference.
			h := make([]uint16, len(b))
			for i, v := range b {
				h[i] = F32ToBF16(v)
			}
			GemmB16(transA, transB, m, n, k, alpha, a, lda, h, true, ldb, beta, c, ldc)
		},
	}
}

func runGemmCase(t *testing.T, name string, f gemmFunc, tc gemmCase, seed int64) {
	t.Helper()
	a, lda, b, ldb, c, ldc := tc.operands(seed)
	if strings.Contains(name, "GemmB16") {
		for i, v := range b {
			b[i] = BF16ToF32(F32ToBF16(v))
		}
	}
	want := append([]float32(nil), c...)
	gemmRef(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
	f(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	compareC(t, name, tc, c, want, ldc)
}

// TestGemmKernels runs every entry point with every micro-kernel this CPU supports,
// with 1 and 2 threads.
func TestGemmKernels(t *testing.T) {
	for _, kern := range gemmKernels {
		restore, ok := setGemmKernel(kern.name)
		if !ok {
			t.Fatalf("kernel %q listed but not selectable", kern.name)
		}
		if GemmKernel() != kern.name {
			t.Fatalf("GemmKernel() = %q after selecting %q", GemmKernel(), kern.name)
		}
		for _, threads := range []int{1, 2} {
			SetThreads(threads)
			for name, f := range gemmVariants() {
				for i, tc := range gemmCases() {
					runGemmCase(t, fmt.Sprintf("%s/%s/threads%d", kern.name, name, threads), f, tc, int64(i))
				}
			}
		}
		SetThreads(0)
		restore()
	}
}

// TestGemmKernelAvailable makes sure the fast kernel is actually used where the CPU has it,
// so that a broken CPU detection cannot silently fall back to slow code.
func TestGemmKernelAvailable(t *testing.T) {
	names := []string{}
	for _, k := range gemmKernels {
		names = append(names, k.name)
	}
	t.Logf("kernels: %v, active %s", names, GemmKernel())
	if names[len(names)-1] != "go" || GemmKernel() != names[0] {
		t.Fatalf("kernel list %v / active %s is inconsistent", names, GemmKernel())
	}
	if hostHasAVX512() && GemmKernel() != "avx512" {
		t.Fatalf("/proc/cpuinfo lists avx512f but GemmKernel() = %q", GemmKernel())
	}
}

// TestGemmLarge checks sizes that span several K blocks, row super-blocks and tasks.
func TestGemmLarge(t *testing.T) {
	cases := []gemmCase{
		{m: 300, n: 520, k: 700, alpha: 1, beta: 0},
		{m: 1030, n: 70, k: 600, transA: true, alpha: 0.5, beta: 1, pad: 5},
		{m: 37, n: 4200, k: 90, transB: true, alpha: 1, beta: 0.5},
		{m: 2100, n: 33, k: 1100, transA: true, transB: true, alpha: -1, beta: 0, pad: 1},
	}
	for i, tc := range cases {
		runGemmCase(t, "Gemm", Gemm, tc, int64(100+i))
	}
}

// TestGemmDeterministic: the same call twice gives bitwise identical results, and so do
// 1 and 2 threads (each element of C sees the same sequence of operations).
func TestGemmDeterministic(t *testing.T) {
	tc := gemmCase{m: 517, n: 389, k: 611, alpha: 1.5, beta: 0.5, transB: true}
	a, lda, b, ldb, c0, ldc := tc.operands(7)
	run := func(threads int) []float32 {
		SetThreads(threads)
		defer SetThreads(0)
		c := append([]float32(nil), c0...)
		Gemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
		return c
	}
	r2a, r2b, r1 := run(2), run(2), run(1)
	for i := range r2a {
		if math.Float32bits(r2a[i]) != math.Float32bits(r2b[i]) {
			t.Fatalf("2 threads, two runs differ at %d: %v vs %v", i, r2a[i], r2b[i])
		}
		if math.Float32bits(r2a[i]) != math.Float32bits(r1[i]) {
			t.Fatalf("1 vs 2 threads differ at %d: %v vs %v", i, r1[i], r2a[i])
		}
	}
}

// TestGemmBatched checks many small GEMMs (parallel over the batch) and a few large
// ones (parallel inside), with strides larger than the matrices.
func TestGemmBatched(t *testing.T) {
	for _, tc := range []struct {
		batch int
		gemmCase
	}{
		{13, gemmCase{m: 17, n: 33, k: 20, alpha: 1, beta: 0, transB: true}},
		{9, gemmCase{m: 64, n: 64, k: 64, alpha: 0.5, beta: 1, transA: true}},
		{3, gemmCase{m: 200, n: 190, k: 180, alpha: 1, beta: 0.5}},
	} {
		SetThreads(2)
		ar, ac, br, bc := tc.m, tc.k, tc.k, tc.n
		if tc.transA {
			ar, ac = ac, ar
		}
		if tc.transB {
			br, bc = bc, br
		}
		rng := rand.New(rand.NewSource(int64(tc.batch)))
		sa, sb, sc := ar*ac+5, br*bc+3, tc.m*tc.n+7
		a := randSlice(rng, tc.batch*sa)
		b := randSlice(rng, tc.batch*sb)
		c := randSlice(rng, tc.batch*sc)
		if tc.beta == 0 {
			for i := range c {
				c[i] = float32(math.NaN())
			}
		}
		want := append([]float32(nil), c...)
		for i := 0; i < tc.batch; i++ {
			gemmRef(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a[i*sa:], ac, b[i*sb:], bc, tc.beta, want[i*sc:], tc.n)
		}
		GemmBatched(tc.transA, tc.transB, tc.batch, tc.m, tc.n, tc.k, tc.alpha, a, ac, sa, b, bc, sb, tc.beta, c, tc.n, sc)
		tol := gemmTol(tc.k, tc.alpha, tc.beta)
		for i := 0; i < tc.batch; i++ {
			for j := 0; j < sc; j++ {
				g, w := c[i*sc+j], want[i*sc+j]
				if j >= tc.m*tc.n { // gap between matrices: untouched
					if math.Float32bits(g) != math.Float32bits(w) {
						t.Fatalf("batch %d: gap element %d changed", i, j)
					}
					continue
				}
				if d := math.Abs(float64(g - w)); !(d <= tol) {
					t.Fatalf("batch %d/%d %dx%dx%d: C[%d] = %v, want %v", i, tc.batch, tc.m, tc.n, tc.k, j, g, w)
				}
			}
		}
		SetThreads(0)
	}
}

// TestGemmB16 checks both 16-bit formats against the reference on the widened B, for
// all transposes.
func TestGemmB16(t *testing.T) {
	for _, bf := range []bool{true, false} {
		for tr := 0; tr < 4; tr++ {
			tc := gemmCase{m: 45, n: 70, k: 300, transA: tr&1 != 0, transB: tr&2 != 0, alpha: 0.5, beta: 0, pad: 2}
			a, lda, b, ldb, c, ldc := tc.operands(int64(tr))
			h := make([]uint16, len(b))
			for i, v := range b {
				if bf {
					h[i] = F32ToBF16(v)
					b[i] = BF16ToF32(h[i])
				} else {
					h[i] = F32ToF16(v)
					b[i] = F16ToF32(h[i])
				}
			}
			want := append([]float32(nil), c...)
			gemmRef(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
			GemmB16(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, h, bf, ldb, tc.beta, c, ldc)
			compareC(t, fmt.Sprintf("GemmB16(bf16=%v)", bf), tc, c, want, ldc)
		}
	}
}

// TestGemmDegenerate: empty sizes, k == 0 and alpha == 0 scale C by beta without
// reading A or B (nil here); beta == 0 then zeroes C even if it held NaN.
func TestGemmDegenerate(t *testing.T) {
	c := []float32{1, 2, float32(math.NaN()), 4}
	Gemm(false, false, 0, 2, 3, 1, nil, 3, nil, 2, 0, c, 2) // m == 0: nothing
	if c[0] != 1 || c[3] != 4 {
		t.Fatal("m == 0 modified C")
	}
	Gemm(false, false, 2, 2, 0, 1, nil, 1, nil, 2, 2, c, 2)
	if c[0] != 2 || c[1] != 4 || c[3] != 8 {
		t.Fatalf("k == 0, beta == 2: C = %v", c)
	}
	Gemm(true, true, 2, 2, 5, 0, nil, 2, nil, 5, 0, c, 2)
	for i, v := range c {
		if v != 0 {
			t.Fatalf("alpha == 0, beta == 0: C[%d] = %v", i, v)
		}
	}
}

func TestGemmPanics(t *testing.T) {
	expectPanic := func(name, want string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			if r == nil {
				t.Fatalf("%s: no panic", name)
			}
			if msg := fmt.Sprint(r); !strings.Contains(msg, want) {
				t.Fatalf("%s: panic %q does not mention %q", name, msg, want)
			}
		}()
		f()
	}
	a, b, c := make([]float32, 12), make([]float32, 20), make([]float32, 15)
	expectPanic("short A", "m=3 n=5 k=4", func() { Gemm(false, false, 3, 5, 4, 1, a[:11], 4, b, 5, 0, c, 5) })
	expectPanic("short B", "needs 20 elements, has 19", func() { Gemm(false, false, 3, 5, 4, 1, a, 4, b[:19], 5, 0, c, 5) })
	expectPanic("short C", "C (m×n) is 3x5", func() { Gemm(false, false, 3, 5, 4, 1, a, 4, b, 5, 0, c[:14], 5) })
	expectPanic("small lda", "leading dimension is 3", func() { Gemm(false, false, 3, 5, 4, 1, a, 3, b, 5, 0, c, 5) })
	expectPanic("transposed A", "A (transposed", func() { Gemm(true, false, 3, 5, 4, 1, a[:11], 3, b, 5, 0, c, 5) })
	expectPanic("B16", "GemmB16", func() { GemmB16(false, false, 3, 5, 4, 1, a, 4, make([]uint16, 3), true, 5, 0, c, 5) })
	expectPanic("batched", "GemmBatched", func() {
		GemmBatched(false, false, 2, 3, 5, 4, 1, a, 4, 12, b, 5, 0, 0, c, 5, 0)
	})
}

// TestGemmNoAllocs: a steady-state call, serial or parallel, does not allocate:
// packing buffers and the parallel task come from pools, and parallelFor's helpers are
// persistent goroutines.
func TestGemmNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	const m, n, k = 200, 300, 400
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	if n := testing.AllocsPerRun(10, func() { GemmSerial(false, true, m, n, k, 1, a, k, b, k, 0, c, n) }); n != 0 {
		t.Errorf("GemmSerial allocates %v times per call", n)
	}
	// Parallel calls are counted with the process's GOMAXPROCS, not under
	// testing.AllocsPerRun, which runs with one P: a helper goroutine then never runs
	// during the caller's work and keeps its reference to each call's job, so every
	// call would take a new one from the heap. That is not a real process's steady
	// state, and whether sysmon preempts the caller (letting the helper release its
	// job) depended on how long a call took.
	SetThreads(2)
	defer SetThreads(0)
	for range 50 { // first calls fill each worker's pooled packing buffers and the job list
		Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	}
	const calls = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range calls {
		Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	}
	runtime.ReadMemStats(&after)
	// The count is process-wide (the runtime allocates now and then), and a helper
	// descheduled for a whole call (CI runs packages side by side on two cores) holds
	// one more job once; an allocation per call would show 100.
	if n := after.Mallocs - before.Mallocs; n > 10 {
		t.Errorf("Gemm (2 threads) allocated %d times in %d calls", n, calls)
	}
}
