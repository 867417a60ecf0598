package tensor

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

// This file holds the float32 GEMM driver, in the style of GotoBLAS/BLIS. Serially:
//
//	for jc over N in steps of NC:
//	  for pc over K in steps of KC:
//	    pack B[pc:pc+KC, jc:jc+NC] into NR-column panels      (KC×NC block, L2/L3)
//	    for each row block of at most MC rows:
//	      pack A[rows, pc:pc+KC] into MR-row panels           (MC×KC block, L2)
//	      for jr over NR panels:                              (KC×NR B micro-panel, L1)
//	        for ir over MR panels:
//	          micro-kernel: C[MR×NR] = alpha·Apanel·Bpanel + beta·C
//
// Packed A panel layout: a[p*MR + r] = op(A)[i0+r, pc+p]; packed B panel layout:
// b[p*NR + j] = op(B)[pc+p, j0+j]. Panels are zero-padded to full MR / NR, so the
// micro-kernel always runs full tiles; tiles that stick out of C are computed into a
// scratch tile on the stack and merged. The first K block applies the caller's beta,
// later ones accumulate (beta = 1). Every element of C therefore sees the same sequence
// of operations whatever the thread count: results are bitwise reproducible.
//
// In parallel (runParallel), C is cut into one block per worker along M and/or N on
// panel boundaries, and each block is an independent serial GEMM with its own packing.

// microKernel describes one micro-kernel and the cache blocking used with it.
type microKernel struct {
	name   string
	id     int // for callKernel
	mr, nr int // register tile
	kc     int // K block: a KC×NR B micro-panel should sit in L1
	mc     int // max rows of A per task (MC×KC packed A block sits in L2)
	nc     int // N block (KC×NC packed B block sits in L2/L3)
	// pairs: the panels hold pairs of bfloat16 along K, one 32-bit word per pair
	// (gemm_bf16.go), and the kernel's k counts pairs.
	pairs bool
}

// words returns how many 32-bit words a panel row of kc elements of K takes.
func (k *microKernel) words(kc int) int {
	if k.pairs {
		return (kc + 1) / 2
	}
	return kc
}

// Micro-kernel ids for callKernel.
const (
	kidGo = iota
	kidAVX2
	kidAVX512
	kidBF16
)

const (
	maxTile = 1024 // floats in the on-stack scratch tile; >= mr*nr of every kernel
	// gemmParallelMin is the m*n*k below which Gemm runs on the calling goroutine only:
	// below ~100^3 the cost of waking goroutines exceeds the gain.
	gemmParallelMin = 96 * 96 * 96
)

var (
	gemmKernels  = availableKernels()
	activeKernel = gemmKernels[0]
)

// GemmKernel reports which micro-kernel Gemm uses: "avx512", "avx2" or "go".
func GemmKernel() string { return activeKernel.name }

// setGemmKernel switches the micro-kernel (for tests and benchmarks) and reports whether
// one of that name is available; restore undoes the switch.
func setGemmKernel(name string) (restore func(), ok bool) {
	old := activeKernel
	for _, k := range gemmKernels {
		if k.name == name {
			activeKernel = k
			return func() { activeKernel = old }, true
		}
	}
	return func() {}, false
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C for row-major float32 matrices, using up
// to Threads() goroutines.
//
// C is m×n with row stride ldc. op(A) is m×k: A is stored m×k (row stride lda) when
// !transA, or k×m (row stride lda) and used transposed when transA. op(B) is k×n: B is
// stored k×n (row stride ldb) when !transB, or n×k and used transposed when transB.
// When beta == 0, C is only written (NaN or Inf in C do not propagate); when alpha == 0
// or k == 0, A and B are not read. Gemm panics, naming the sizes, when a leading
// dimension is too small or a slice is too short.
//
// For a fixed Threads() (in fact for any thread count) the result is bitwise reproducible.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	g := gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	g.check("Gemm", len(b))
	g.run(Threads())
}

// GemmSerial is Gemm on the calling goroutine only, for callers that already
// parallelise (attention tiles, batched heads).
func GemmSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	g := gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	g.check("GemmSerial", len(b))
	g.run(1)
}

// GemmB16 is Gemm with B stored as 16-bit floats: bfloat16 when bf16 is true, IEEE 754
// binary16 otherwise. B is widened to float32 (exactly) while it is packed, so the
// arithmetic is the same as Gemm on the widened B.
func GemmB16(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []uint16, bf16 bool, ldb int, beta float32, c []float32, ldc int) {
	g := gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		a: a, lda: lda, b16: b, isB16: true, bf16: bf16, ldb: ldb, beta: beta, c: c, ldc: ldc}
	g.check("GemmB16", len(b))
	g.run(Threads())
}

// GemmBatched runs batch independent GEMMs; GEMM i uses a[i*strideA:], b[i*strideB:] and
// c[i*strideC:] with the same sizes, transposes, leading dimensions, alpha and beta.
// Many small GEMMs are spread over the workers (each one serial); few large ones are
// run one after the other, each parallelised inside, so both cases use all cores.
func GemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int) {
	if batch < 0 {
		panic(fmt.Sprintf("tensor: GemmBatched: negative batch %d", batch))
	}
	if batch == 0 {
		return
	}
	g := gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		lda: lda, ldb: ldb, beta: beta, ldc: ldc}
	// Check the last GEMM of the batch (the strides are >= 0, so it reaches furthest).
	if strideA < 0 || strideB < 0 || strideC < 0 {
		panic(fmt.Sprintf("tensor: GemmBatched: negative stride (strideA=%d strideB=%d strideC=%d)", strideA, strideB, strideC))
	}
	last := batch - 1
	g.a, g.b, g.c = tail(a, last*strideA), tail(b, last*strideB), tail(c, last*strideC)
	g.check(fmt.Sprintf("GemmBatched (batch %d of %d, strides %d/%d/%d)", last, batch, strideA, strideB, strideC), len(g.b))
	workers := Threads()
	one := func(i int, workers int) {
		gi := g
		gi.a, gi.b, gi.c = tail(a, i*strideA), tail(b, i*strideB), tail(c, i*strideC)
		gi.run(workers)
	}
	// Large GEMMs, or fewer GEMMs than workers: parallelise inside each one.
	if workers <= 1 || batch < workers || m*n*k >= 8*gemmParallelMin {
		for i := 0; i < batch; i++ {
			one(i, workers)
		}
		return
	}
	parallelFor(batch, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			one(i, 1)
		}
	})
}

// tail returns s[off:], or an empty slice when off is past the end (check reports it).
func tail(s []float32, off int) []float32 {
	if off > len(s) {
		return nil
	}
	return s[off:]
}

// gemmArgs is one GEMM call: sizes, operands and scalars.
type gemmArgs struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	b16            []uint16
	isB16, bf16    bool
	ldb            int
	lowp           bool // round A and B to bfloat16 while packing (GemmBF16)
	c              []float32
	ldc            int
}

// check validates sizes, leading dimensions and slice lengths, panicking with a message
// that names them.
func (g *gemmArgs) check(fn string, lenB int) {
	if g.m < 0 || g.n < 0 || g.k < 0 {
		panic(fmt.Sprintf("tensor: %s: negative size m=%d n=%d k=%d", fn, g.m, g.n, g.k))
	}
	// need returns the minimal slice length for a rows×cols row-major matrix with stride ld.
	need := func(what string, rows, cols, ld, have int) {
		if ld < max(cols, 1) {
			panic(fmt.Sprintf("tensor: %s: %s is %dx%d but its leading dimension is %d (m=%d n=%d k=%d)",
				fn, what, rows, cols, ld, g.m, g.n, g.k))
		}
		if rows == 0 || cols == 0 {
			return
		}
		if n := (rows-1)*ld + cols; have < n {
			panic(fmt.Sprintf("tensor: %s: %s is %dx%d with leading dimension %d and needs %d elements, has %d (m=%d n=%d k=%d)",
				fn, what, rows, cols, ld, n, have, g.m, g.n, g.k))
		}
	}
	usesAB := g.k > 0 && g.alpha != 0 && g.m > 0 && g.n > 0
	if g.transA {
		need("A (transposed, stored k×m)", g.k, g.m, g.lda, lenIf(usesAB, len(g.a)))
	} else {
		need("A (stored m×k)", g.m, g.k, g.lda, lenIf(usesAB, len(g.a)))
	}
	if g.transB {
		need("B (transposed, stored n×k)", g.n, g.k, g.ldb, lenIf(usesAB, lenB))
	} else {
		need("B (stored k×n)", g.k, g.n, g.ldb, lenIf(usesAB, lenB))
	}
	need("C (m×n)", g.m, g.n, g.ldc, len(g.c))
}

// lenIf returns have when the operand is read, and a huge length otherwise so that
// only the leading dimension is checked.
func lenIf(used bool, have int) int {
	if used {
		return have
	}
	return int(^uint(0) >> 1)
}

// gemmBBuf is the packed B block of one GEMM call. tmp holds one float32 panel on its
// way to bfloat16 pairs (GemmBF16).
type gemmBBuf struct{ b, tmp []float32 }

// gemmABuf is one worker's packed A block. step/rb record what it holds, so a worker
// that gets several tasks of the same row block packs it only once.
type gemmABuf struct {
	a    []float32
	tmp  []float32 // as gemmBBuf.tmp
	step uint64
	rb   int
}

// Pools make steady-state calls allocation-free. sync.Pool is per-P, so a worker
// normally gets back its own A buffer, still hot in its L2.
var (
	gemmBPool = sync.Pool{New: func() any { return new(gemmBBuf) }}
	gemmAPool = sync.Pool{New: func() any { return new(gemmABuf) }}
	gemmSteps atomic.Uint64 // unique ids for gemmABuf.step
)

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		// 64-byte alignment is not needed for correctness (the kernels use unaligned
		// loads) but keeps panels on cache-line boundaries.
		s = make([]float32, n+16)
		off := (64 - int(uintptr(unsafe.Pointer(&s[0]))&63)) / 4 % 16
		s = s[off : off+n]
	}
	return s[:n]
}

// run executes the GEMM with at most workers goroutines.
func (g *gemmArgs) run(workers int) {
	if g.m == 0 || g.n == 0 {
		return
	}
	if g.k == 0 || g.alpha == 0 {
		g.scaleC()
		return
	}
	if workers > 1 && g.m*g.n*g.k >= gemmParallelMin {
		g.runParallel(workers)
		return
	}
	g.runSerial()
}

// runParallel cuts C into a wm×wn grid of blocks (wm·wn = workers, cut on MR/NR panel
// boundaries) and runs each block as an independent serial GEMM on its own goroutine.
// Workers share nothing but the read-only inputs: each packs its own A rows and B
// columns into its own buffers, which stay in its core's caches, and there is no
// synchronisation between K blocks. (A first version shared one packed B block between
// the workers, with a parallel packing phase and dynamic tasks per K block; it scaled
// worse on the 2-core Zen 5 VM this was tuned on.) The grid is chosen to minimise the busiest worker's compute plus the
// packing it repeats: M splits repeat B packing, N splits repeat A packing.
func (g *gemmArgs) runParallel(workers int) {
	kern := g.kernel()
	mr, nr := kern.mr, kern.nr
	mP, nP := ceilDiv(g.m, mr), ceilDiv(g.n, nr)
	wm, wn := gemmSplit(mP, nP, mr, nr, g.k, workers)
	t := gemmTasks.Get().(*gemmParTask)
	t.g, t.wm, t.wn, t.mP, t.nP, t.mr, t.nr = *g, wm, wn, mP, nP, mr, nr
	parallelRange(wm*wn, 1, t)
	*t = gemmParTask{}
	gemmTasks.Put(t)
}

// gemmParTask is one runParallel call: the worker grid over C. It is recycled through
// gemmTasks so that a parallel GEMM allocates nothing.
type gemmParTask struct {
	g              gemmArgs
	wm, wn, mP, nP int
	mr, nr         int
}

var gemmTasks = sync.Pool{New: func() any { return new(gemmParTask) }}

// run computes blocks [lo, hi) of the grid, each as a serial GEMM.
func (t *gemmParTask) run(lo, hi int) {
	g, mr, nr := &t.g, t.mr, t.nr
	for b := lo; b < hi; b++ {
		bi, bj := b/t.wn, b%t.wn
		r0, r1 := min(g.m, bi*t.mP/t.wm*mr), min(g.m, (bi+1)*t.mP/t.wm*mr)
		c0, c1 := min(g.n, bj*t.nP/t.wn*nr), min(g.n, (bj+1)*t.nP/t.wn*nr)
		if r0 >= r1 || c0 >= c1 {
			continue
		}
		s := *g
		s.m, s.n = r1-r0, c1-c0
		s.c = g.c[r0*g.ldc+c0:]
		if g.transA {
			s.a = g.a[r0:]
		} else {
			s.a = g.a[r0*g.lda:]
		}
		switch {
		case g.isB16 && g.transB:
			s.b16 = g.b16[c0*g.ldb:]
		case g.isB16:
			s.b16 = g.b16[c0:]
		case g.transB:
			s.b = g.b[c0*g.ldb:]
		default:
			s.b = g.b[c0:]
		}
		s.runSerial()
	}
}

// gemmSplit picks the worker grid wm×wn (wm·wn = workers) that minimises the estimated
// time of the busiest worker: its padded block's flops plus packCost flop-equivalents
// per element it packs (its rows of A and its columns of B, for all of K).
func gemmSplit(mP, nP, mr, nr, k, workers int) (wm, wn int) {
	const packCost = 32 // ~0.15 ns per packed element at ~200 GFLOP/s per core
	best := -1.0
	for d := 1; d <= workers; d++ {
		if workers%d != 0 {
			continue
		}
		rows := float64(ceilDiv(mP, d) * mr)
		cols := float64(ceilDiv(nP, workers/d) * nr)
		t := 2*rows*cols*float64(k) + packCost*(rows+cols)*float64(k)
		if best < 0 || t < best {
			best, wm, wn = t, d, workers/d
		}
	}
	return wm, wn
}

// runSerial executes the GEMM on the calling goroutine.
func (g *gemmArgs) runSerial() {
	m, n, k := g.m, g.n, g.k
	kern := g.kernel()
	mr, nr := kern.mr, kern.nr

	// Balanced blocks: K split into equal pieces no larger than kc (a multiple of 4),
	// N into equal pieces no larger than nc (a multiple of NR), M into row blocks of
	// at most mc rows.
	nk := ceilDiv(k, kern.kc)
	kc := roundUp(ceilDiv(k, nk), 4)
	nb := ceilDiv(n, kern.nc)
	nc := roundUp(ceilDiv(n, nb), nr)
	mP := ceilDiv(m, mr)

	bb := gemmBPool.Get().(*gemmBBuf)
	bb.b = grow(bb.b, kc*nc)
	defer gemmBPool.Put(bb)

	ph := gemmPhase{g: *g, kern: kern, b: bb.b, mP: mP, bb: bb}
	ph.nrb, ph.ncc = ceilDiv(mP, max(1, kern.mc/mr)), 1
	for jc := 0; jc < n; jc += nc {
		ph.jc, ph.ncur = jc, min(nc, n-jc)
		ph.nP = ceilDiv(ph.ncur, nr)
		for pc := 0; pc < k; pc += kc {
			ph.pc, ph.kc = pc, min(kc, k-pc)
			ph.beta = g.beta
			if pc > 0 {
				ph.beta = 1
			}
			ph.step = gemmSteps.Add(1)
			ph.packB(0, ph.nP)
			ph.compute(0, ph.nrb*ph.ncc)
		}
	}
}

// gemmPhase is the state of one (N block, K block) step of runSerial.
type gemmPhase struct {
	g        gemmArgs // a copy: a pointer would make the caller's arguments escape
	kern     *microKernel
	b        []float32 // packed B block
	bb       *gemmBBuf // b's buffer (its tmp serves the bfloat16 packing)
	step     uint64    // unique id of this step (for gemmABuf)
	jc, ncur int       // N block: first column, columns
	nP       int       // NR panels in the N block
	pc, kc   int       // K block: first index, length
	mP       int       // MR panels of A (all rows)
	beta     float32   // beta for this K block
	nrb, ncc int       // task grid: row blocks × column chunks (ncc = 1 today)
}

// packB packs B panels [lo, hi) of the current block.
func (ph *gemmPhase) packB(lo, hi int) {
	nr, kc := ph.kern.nr, ph.kc
	kw := ph.kern.words(kc)
	for v := lo; v < hi; v++ {
		dst, j0, cols := ph.b[v*kw*nr:(v+1)*kw*nr], ph.jc+v*nr, min(nr, ph.ncur-v*nr)
		if !ph.g.lowp {
			ph.g.packBPanel(dst, j0, cols, ph.pc, kc, nr)
			continue
		}
		ph.bb.tmp = grow(ph.bb.tmp, (kc+1)*nr)
		ph.g.packBPanel(ph.bb.tmp, j0, cols, ph.pc, kc, nr)
		lowpPanel(ph.kern, dst, ph.bb.tmp, kc, nr)
	}
}

// compute runs tasks [lo, hi) of the nrb×ncc grid: pack the task's A rows (unless this
// worker's buffer already holds them), then sweep its column chunk.
func (ph *gemmPhase) compute(lo, hi int) {
	mr, kc, m := ph.kern.mr, ph.kc, ph.g.m
	kw := ph.kern.words(kc)
	ab := gemmAPool.Get().(*gemmABuf)
	for t := lo; t < hi; t++ {
		rb, cb := t/ph.ncc, t%ph.ncc
		p0, p1 := rb*ph.mP/ph.nrb, (rb+1)*ph.mP/ph.nrb
		q0, q1 := cb*ph.nP/ph.ncc, (cb+1)*ph.nP/ph.ncc
		i0 := p0 * mr
		rows := min(m, p1*mr) - i0
		if ab.step != ph.step || ab.rb != rb {
			ab.a = grow(ab.a, (p1-p0)*mr*kw)
			for u := 0; u < p1-p0; u++ {
				dst, r0, rs := ab.a[u*kw*mr:(u+1)*kw*mr], i0+u*mr, min(mr, rows-u*mr)
				if !ph.g.lowp {
					ph.g.packAPanel(dst, r0, rs, ph.pc, kc, mr)
					continue
				}
				ab.tmp = grow(ab.tmp, (kc+1)*mr)
				ph.g.packAPanel(ab.tmp, r0, rs, ph.pc, kc, mr)
				lowpPanel(ph.kern, dst, ab.tmp, kc, mr)
			}
			ab.step, ab.rb = ph.step, rb
		}
		ph.g.macro(ph.kern, ab.a, ph.b, kw, i0, rows, 0, p1-p0, ph.jc, ph.ncur, q0, q1, ph.beta)
	}
	gemmAPool.Put(ab)
}

// macro runs the micro-kernel over MR panels [p0, p1) of the packed A super-block that
// starts at row i0 (rows valid rows) and NR panels [q0, q1) of the packed B block that
// starts at column jc (ncur valid columns). kc is the panels' length in words.
func (g *gemmArgs) macro(kern *microKernel, pa, pb []float32, kc, i0, rows, p0, p1, jc, ncur, q0, q1 int, beta float32) {
	mr, nr := kern.mr, kern.nr
	var tile [maxTile]float32
	c, ldc, alpha := g.c, g.ldc, g.alpha
	for q := q0; q < q1; q++ {
		bp := &pb[q*kc*nr]
		j := jc + q*nr
		cols := min(nr, ncur-q*nr)
		for p := p0; p < p1; p++ {
			ap := &pa[p*kc*mr]
			i := i0 + p*mr
			mrows := min(mr, rows-p*mr)
			if mrows == mr && cols == nr {
				callKernel(kern, kc, ap, bp, &c[i*ldc+j], ldc, alpha, beta)
				continue
			}
			callKernel(kern, kc, ap, bp, &tile[0], nr, alpha, 0)
			for r := 0; r < mrows; r++ {
				dst := c[(i+r)*ldc+j : (i+r)*ldc+j+cols]
				src := tile[r*nr : r*nr+cols]
				if beta == 0 {
					copy(dst, src)
					continue
				}
				for x := range dst {
					dst[x] = src[x] + beta*dst[x]
				}
			}
		}
	}
}

// scaleC sets C = beta·C (C = 0 when beta == 0).
func (g *gemmArgs) scaleC() {
	for i := 0; i < g.m; i++ {
		row := g.c[i*g.ldc : i*g.ldc+g.n]
		if g.beta == 0 {
			clear(row)
			continue
		}
		if g.beta == 1 {
			continue
		}
		for j := range row {
			row[j] *= g.beta
		}
	}
}

// packAPanel packs op(A)[i0:i0+rows, pc:pc+kc] into dst as a kc×mr panel
// (dst[p*mr+r]), zero-padding rows >= rows.
func (g *gemmArgs) packAPanel(dst []float32, i0, rows, pc, kc, mr int) {
	dst = dst[:kc*mr]
	a, lda := g.a, g.lda
	if g.transA {
		// A stored k×m: each p contributes a contiguous run of rows.
		for p := 0; p < kc; p++ {
			d := dst[p*mr : p*mr+mr]
			copy(d, a[(pc+p)*lda+i0:(pc+p)*lda+i0+rows])
			clear(d[rows:])
		}
		return
	}
	// A stored m×k: transpose rows into the panel.
	done := transposeFast(dst, mr, a[i0*lda+pc:], lda, rows, kc)
	for r := 0; r < rows && done < kc; r++ {
		src := a[(i0+r)*lda+pc+done : (i0+r)*lda+pc+kc]
		stridedStore(dst[done*mr+r:], src, mr)
	}
	for r := rows; r < mr; r++ {
		for p := 0; p < kc; p++ {
			dst[p*mr+r] = 0
		}
	}
}

// stridedStore sets dst[p*stride] = src[p] for all p.
func stridedStore(dst, src []float32, stride int) {
	if len(src) == 0 {
		return
	}
	_ = dst[(len(src)-1)*stride]
	for p, v := range src {
		dst[p*stride] = v
	}
}

// packBPanel packs op(B)[pc:pc+kc, j0:j0+cols] into dst as a kc×nr panel
// (dst[p*nr+j]), zero-padding columns >= cols. 16-bit B is widened here.
func (g *gemmArgs) packBPanel(dst []float32, j0, cols, pc, kc, nr int) {
	dst = dst[:kc*nr]
	ldb := g.ldb
	if g.isB16 {
		g.packB16Panel(dst, j0, cols, pc, kc, nr)
		return
	}
	b := g.b
	if !g.transB {
		for p := 0; p < kc; p++ {
			d := dst[p*nr : p*nr+nr]
			copy(d, b[(pc+p)*ldb+j0:(pc+p)*ldb+j0+cols])
			clear(d[cols:])
		}
		return
	}
	done := 0
	if cols == nr && nr%16 == 0 {
		for h := 0; h < nr; h += 16 {
			done = transposeFast(dst[h:], nr, b[(j0+h)*ldb+pc:], ldb, 16, kc)
		}
	}
	for j := 0; j < cols && done < kc; j++ {
		stridedStore(dst[done*nr+j:], b[(j0+j)*ldb+pc+done:(j0+j)*ldb+pc+kc], nr)
	}
	for j := cols; j < nr; j++ {
		for p := 0; p < kc; p++ {
			dst[p*nr+j] = 0
		}
	}
}

func (g *gemmArgs) packB16Panel(dst []float32, j0, cols, pc, kc, nr int) {
	b, ldb, bf := g.b16, g.ldb, g.bf16
	if !g.transB {
		for p := 0; p < kc; p++ {
			d := dst[p*nr : p*nr+nr]
			widen16(d[:cols], b[(pc+p)*ldb+j0:(pc+p)*ldb+j0+cols], bf)
			clear(d[cols:])
		}
		return
	}
	for j := 0; j < cols; j++ {
		src := b[(j0+j)*ldb+pc : (j0+j)*ldb+pc+kc]
		d := dst[j:]
		_ = d[(kc-1)*nr]
		if bf {
			for p, h := range src {
				d[p*nr] = BF16ToF32(h)
			}
		} else {
			for p, h := range src {
				d[p*nr] = F16ToF32(h)
			}
		}
	}
	for j := cols; j < nr; j++ {
		for p := 0; p < kc; p++ {
			dst[p*nr+j] = 0
		}
	}
}

// widen16 converts 16-bit floats (bf16 or IEEE f16) to float32.
func widen16(dst []float32, src []uint16, bf16 bool) {
	dst = dst[:len(src)]
	if bf16 {
		for i, h := range src {
			dst[i] = BF16ToF32(h)
		}
		return
	}
	for i, h := range src {
		dst[i] = F16ToF32(h)
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
func roundUp(a, b int) int { return ceilDiv(a, b) * b }
