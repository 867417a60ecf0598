package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// threads is the number of workers the kernels use; 0 means runtime.GOMAXPROCS(0).
var threads atomic.Int32

// SetThreads sets how many goroutines the CPU kernels run in parallel.
// n <= 0 restores the default, runtime.GOMAXPROCS(0).
func SetThreads(n int) {
	if n < 0 {
		n = 0
	}
	threads.Store(int32(n))
}

// Threads reports how many goroutines the CPU kernels run in parallel.
func Threads() int {
	if n := int(threads.Load()); n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// parallelFor splits [0, n) into contiguous chunks of at least grain items and runs
// body(lo, hi) on up to Threads() goroutines, the calling one included. Chunks are
// handed out dynamically so that uneven work leaves no idle tail.
func parallelFor(n, grain int, body func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	workers := Threads()
	if workers <= 1 || n <= grain {
		body(0, n)
		return
	}
	// About four chunks per worker balances load without much scheduling overhead.
	chunk := (n + 4*workers - 1) / (4 * workers)
	if chunk < grain {
		chunk = grain
	}
	chunks := (n + chunk - 1) / chunk
	if workers > chunks {
		workers = chunks
	}
	var next atomic.Int64
	run := func() {
		for {
			c := int(next.Add(1) - 1)
			if c >= chunks {
				return
			}
			lo := c * chunk
			body(lo, min(lo+chunk, n))
		}
	}
	var wg sync.WaitGroup
	wg.Add(workers - 1)
	for w := 1; w < workers; w++ {
		go func() { defer wg.Done(); run() }()
	}
	run()
	wg.Wait()
}
