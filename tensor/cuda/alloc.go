package cuda

import (
	"fmt"
	"sync"

	"github.com/difftune/difftune/tensor"
)

// backend is where an Allocator gets memory: the driver (cuMemAlloc/cuMemFree) on a
// GPU, a fake in tests.
type backend interface {
	malloc(bytes int64) (uint64, error)
	free(ptr uint64) error
}

// Buffer is a block of device memory: Bytes were asked for, the block holds its
// size class (at least Bytes).
type Buffer struct {
	Ptr   uint64
	Bytes int64
	class int64
}

const (
	minBlock   = 512     // every block is a multiple of 512 B (cudaMalloc aligns to 256)
	smallLimit = 1 << 20 // blocks up to 1 MiB are rounded to 512 B, larger ones to a size class
	classSteps = 4       // size classes per power of two above smallLimit: at most 25% unused
)

// sizeClass rounds a request up to the block size that serves it: 512 B steps up to
// 1 MiB, then four classes per power of two, so a training step's repeated shapes
// land in a few free lists and reuse stays high while at most a quarter of a large
// block is unused.
func sizeClass(bytes int64) int64 {
	if bytes <= smallLimit {
		return max(minBlock, (bytes+minBlock-1)/minBlock*minBlock)
	}
	p := int64(smallLimit)
	for p*2 < bytes {
		p *= 2
	}
	step := p / classSteps
	return (bytes + step - 1) / step * step
}

// Allocator is a caching device allocator: freed blocks go to a free list per size
// class and serve later requests of the same class without a driver call, as
// PyTorch's caching allocator does. Its MemStats count exactly as the CPU device's:
// Live and Peak are the bytes asked for by live buffers, Pooled the bytes of cached
// blocks, Saved what the tape reports through AddSaved. Reserved adds the blocks'
// rounding: it is the memory held from the driver.
type Allocator struct {
	mu        sync.Mutex
	be        backend
	free      map[int64][]uint64
	live      map[uint64]int64 // pointer → class, to catch double and foreign frees
	stats     tensor.MemStats
	reserved  int64
	maxPooled int64
}

// newAllocator returns an allocator over be that caches at most maxPooled bytes.
func newAllocator(be backend, maxPooled int64) *Allocator {
	return &Allocator{be: be, free: map[int64][]uint64{}, live: map[uint64]int64{}, maxPooled: maxPooled}
}

// Alloc returns a buffer of at least bytes. When the driver is out of memory it
// releases every cached block and tries once more; the error then says how much is
// live and reserved.
func (a *Allocator) Alloc(bytes int64) (Buffer, error) {
	if bytes < 0 {
		panic(fmt.Sprintf("cuda: alloc of %d bytes", bytes))
	}
	class := sizeClass(bytes)
	a.mu.Lock()
	defer a.mu.Unlock()
	var p uint64
	if l := a.free[class]; len(l) > 0 {
		p = l[len(l)-1]
		a.free[class] = l[:len(l)-1]
		a.stats.Pooled -= class
	} else {
		var err error
		p, err = a.be.malloc(class)
		if IsOutOfMemory(err) {
			a.emptyCache()
			p, err = a.be.malloc(class)
		}
		if err != nil {
			return Buffer{}, fmt.Errorf("cuda: allocate %d bytes (block %d): %w (live %d B, reserved %d B)", bytes, class, err, a.stats.Live, a.reserved)
		}
		a.reserved += class
		a.stats.PoolMiss++
	}
	a.live[p] = class
	a.stats.Allocs++
	a.stats.Live += bytes
	a.stats.Peak = max(a.stats.Peak, a.stats.Live)
	return Buffer{Ptr: p, Bytes: bytes, class: class}, nil
}

// Free returns b to its free list, or to the driver when the cache is full. It
// panics on a buffer this allocator does not hold (a double free).
func (a *Allocator) Free(b Buffer) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	class, ok := a.live[b.Ptr]
	if !ok || class != b.class {
		panic(fmt.Sprintf("cuda: free of a buffer this allocator does not hold (ptr %#x, %d bytes): freed twice?", b.Ptr, b.Bytes))
	}
	delete(a.live, b.Ptr)
	a.stats.Live -= b.Bytes
	if a.stats.Pooled+class > a.maxPooled {
		a.reserved -= class
		return a.be.free(b.Ptr)
	}
	a.free[class] = append(a.free[class], b.Ptr)
	a.stats.Pooled += class
	return nil
}

// EmptyCache returns every cached block to the driver.
func (a *Allocator) EmptyCache() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.emptyCache()
}

func (a *Allocator) emptyCache() error {
	var first error
	for class, l := range a.free {
		for _, p := range l {
			if err := a.be.free(p); err != nil && first == nil {
				first = err
			}
			a.reserved -= class
			a.stats.Pooled -= class
		}
		delete(a.free, class)
	}
	return first
}

// SetPoolLimit caps the bytes kept in the free lists; 0 disables caching.
func (a *Allocator) SetPoolLimit(bytes int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.maxPooled = bytes
	if a.stats.Pooled > bytes {
		return a.emptyCache()
	}
	return nil
}

// Stats returns the memory counters.
func (a *Allocator) Stats() tensor.MemStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Reserved returns the bytes held from the driver: live blocks and cached ones.
func (a *Allocator) Reserved() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reserved
}

// ResetPeak sets the peak counters to the current values.
func (a *Allocator) ResetPeak() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats.Peak = a.stats.Live
	a.stats.PeakSaved = a.stats.Saved
}

// AddSaved adds delta bytes to the storage retained for backward, as the tape
// counts it.
func (a *Allocator) AddSaved(delta int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats.Saved += delta
	a.stats.PeakSaved = max(a.stats.PeakSaved, a.stats.Saved)
}
