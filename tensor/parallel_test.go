package tensor

import (
	"sync/atomic"
	"testing"
)

// TestParallelForCoversOnce: every index is visited exactly once, for sizes around the
// chunking boundaries and thread counts above the core count.
func TestParallelForCoversOnce(t *testing.T) {
	defer SetThreads(0)
	for _, threads := range []int{1, 2, 3, 8} {
		SetThreads(threads)
		for _, n := range []int{1, 2, 7, 33, 257, 1000} {
			for _, grain := range []int{1, 5, 64} {
				seen := make([]atomic.Int32, n)
				parallelFor(n, grain, func(lo, hi int) {
					if hi-lo < min(grain, n) && hi != n {
						t.Errorf("threads %d n %d grain %d: chunk [%d,%d) below the grain", threads, n, grain, lo, hi)
					}
					for i := lo; i < hi; i++ {
						seen[i].Add(1)
					}
				})
				for i := range seen {
					if c := seen[i].Load(); c != 1 {
						t.Fatalf("threads %d n %d grain %d: index %d visited %d times", threads, n, grain, i, c)
					}
				}
			}
		}
	}
}

// TestParallelForNested: a body that itself calls parallelFor (as a batched GEMM's
// helpers may) completes, even when every helper is busy in an outer chunk.
func TestParallelForNested(t *testing.T) {
	SetThreads(4)
	defer SetThreads(0)
	var total atomic.Int64
	parallelFor(16, 1, func(lo, hi int) {
		for range hi - lo {
			parallelFor(100, 1, func(lo, hi int) { total.Add(int64(hi - lo)) })
		}
	})
	if got := total.Load(); got != 1600 {
		t.Fatalf("nested parallelFor covered %d items, want 1600", got)
	}
}

// TestParallelForNoAllocs: with the helpers started and enough jobs recycled, a call
// allocates nothing (the body closure is made once outside the measured function). A
// helper that wakes late still holds its job when the next call starts, so the warm-up
// lets the free list grow to the number of jobs in flight.
func TestParallelForNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	SetThreads(2)
	defer SetThreads(0)
	var sum atomic.Int64
	body := func(lo, hi int) { sum.Add(int64(hi - lo)) }
	for range 1000 {
		parallelFor(64, 1, body)
	}
	if n := testing.AllocsPerRun(100, func() { parallelFor(64, 1, body) }); n != 0 {
		t.Errorf("parallelFor allocates %v times per call", n)
	}
	if sum.Load() != 64*1101 {
		t.Fatalf("parallelFor covered %d items, want %d", sum.Load(), 64*1101)
	}
}
