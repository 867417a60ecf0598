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
// handed out dynamically so that uneven work leaves no idle tail. The helpers are
// persistent goroutines (see parJob), so a call allocates nothing but what the caller's
// closure needs, and starts no goroutine.
func parallelFor(n, grain int, body func(lo, hi int)) {
	parallelRange(n, grain, rangeFunc(body))
}

// ranger is a parallelFor body; a pointer to a reused task struct implements it
// without the closure allocation that a func would need.
type ranger interface{ run(lo, hi int) }

type rangeFunc func(lo, hi int)

func (f rangeFunc) run(lo, hi int) { f(lo, hi) }

// parallelRange is parallelFor with the body as a ranger.
func parallelRange(n, grain int, body ranger) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	workers := Threads()
	if workers <= 1 || n <= grain {
		body.run(0, n)
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
	if workers <= 1 {
		body.run(0, n)
		return
	}
	j := getJob()
	j.body, j.n, j.chunk, j.chunks = body, n, chunk, chunks
	j.next.Store(0)
	j.pending.Store(int64(chunks))
	j.refs.Store(1)
	helpers.offer(j, workers-1)
	j.run()
	<-j.done // every chunk has completed, whoever ran it
	j.release()
}

// parJob is one parallelFor call shared with the helper goroutines. Chunks are claimed
// with next and counted down with pending; whoever completes the last chunk signals
// done. The caller claims chunks too, so it never waits for a helper that has not
// started: a helper busy elsewhere (or blocked in a nested parallelFor) only means the
// caller does more of the work. refs counts the holders (the caller and every helper
// the job was offered to); the last to let go recycles the job.
type parJob struct {
	body                ranger
	n, chunk, chunks    int
	next, pending, refs atomic.Int64
	done                chan struct{}
}

// run claims and runs chunks until none is left.
func (j *parJob) run() {
	for {
		c := int(j.next.Add(1) - 1)
		if c >= j.chunks {
			return
		}
		lo := c * j.chunk
		j.body.run(lo, min(lo+j.chunk, j.n))
		if j.pending.Add(-1) == 0 {
			j.done <- struct{}{}
		}
	}
}

func (j *parJob) release() {
	if j.refs.Add(-1) == 0 {
		j.body = nil
		jobFree.mu.Lock()
		jobFree.l = append(jobFree.l, j)
		jobFree.mu.Unlock()
	}
}

// jobFree recycles parJobs (a plain free list: unlike sync.Pool it is not emptied by
// the garbage collector, so steady-state calls never allocate one).
var jobFree struct {
	mu sync.Mutex
	l  []*parJob
}

func getJob() *parJob {
	jobFree.mu.Lock()
	defer jobFree.mu.Unlock()
	if k := len(jobFree.l); k > 0 {
		j := jobFree.l[k-1]
		jobFree.l[k-1] = nil
		jobFree.l = jobFree.l[:k-1]
		return j
	}
	return &parJob{done: make(chan struct{}, 1)}
}

// helpers are the persistent worker goroutines; they are started on first need, as
// many as Threads()-1 has ever been, and block on work between calls.
var helpers helperPool

type helperPool struct {
	mu      sync.Mutex
	started int
	work    chan *parJob
}

// offer hands j to up to k helpers (fewer when the queue is full), taking a reference
// for each.
func (h *helperPool) offer(j *parJob, k int) {
	h.mu.Lock()
	if h.work == nil {
		h.work = make(chan *parJob, 256)
	}
	for h.started < k {
		h.started++
		go h.loop(h.work)
	}
	work := h.work
	h.mu.Unlock()
	for range k {
		j.refs.Add(1)
		select {
		case work <- j:
		default:
			j.refs.Add(-1) // queue full: the caller and the helpers already in do the work
			return
		}
	}
}

func (h *helperPool) loop(work chan *parJob) {
	for j := range work {
		j.run()
		j.release()
	}
}
