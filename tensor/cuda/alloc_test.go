package cuda

import (
	"fmt"
	"testing"

	"github.com/difftune/difftune/tensor"
)

// fakeBackend hands out increasing addresses and fails with
// CUDA_ERROR_OUT_OF_MEMORY once more than capacity bytes are held.
type fakeBackend struct {
	next, held, capacity int64
	blocks               map[uint64]int64
	mallocs, frees       int
}

func newFake(capacity int64) *fakeBackend {
	return &fakeBackend{next: 1 << 20, capacity: capacity, blocks: map[uint64]int64{}}
}

func (f *fakeBackend) malloc(bytes int64) (uint64, error) {
	if f.held+bytes > f.capacity {
		return 0, newError("cuMemAlloc_v2", ErrorOutOfMemory, nil)
	}
	p := uint64(f.next)
	f.next += bytes
	f.held += bytes
	f.blocks[p] = bytes
	f.mallocs++
	return p, nil
}

func (f *fakeBackend) free(p uint64) error {
	b, ok := f.blocks[p]
	if !ok {
		return fmt.Errorf("fake: free of unknown %#x", p)
	}
	delete(f.blocks, p)
	f.held -= b
	f.frees++
	return nil
}

func TestSizeClass(t *testing.T) {
	for _, c := range []struct{ in, want int64 }{
		{0, 512}, {1, 512}, {512, 512}, {513, 1024}, {1 << 20, 1 << 20},
		{1<<20 + 1, 1<<20 + 1<<18}, // 4 classes per power of two above 1 MiB
		{3 << 20, 3 << 20}, {3<<20 + 1, 7 << 19}, {100 << 20, 112 << 20},
	} {
		if got := sizeClass(c.in); got != c.want {
			t.Errorf("sizeClass(%d) = %d, want %d", c.in, got, c.want)
		}
	}
	for n := int64(1); n < 1<<30; n = n*3 + 7 {
		c := sizeClass(n)
		if c < n || (n > smallLimit && float64(c) > 1.25*float64(n)) || c%minBlock != 0 {
			t.Fatalf("sizeClass(%d) = %d: below the request, over 25%% waste or unaligned", n, c)
		}
	}
}

// wantStats compares the counters the allocator owns.
func wantStats(t *testing.T, a *Allocator, live, peak, pooled, allocs, miss, reserved int64) {
	t.Helper()
	s := a.Stats()
	got := [6]int64{s.Live, s.Peak, s.Pooled, s.Allocs, s.PoolMiss, a.Reserved()}
	want := [6]int64{live, peak, pooled, allocs, miss, reserved}
	if got != want {
		t.Fatalf("live, peak, pooled, allocs, misses, reserved = %v, want %v", got, want)
	}
}

func TestAllocatorAccounting(t *testing.T) {
	be := newFake(1 << 30)
	a := newAllocator(be, 1<<30)
	x, _ := a.Alloc(1000) // class 1024
	y, _ := a.Alloc(3000) // class 3072
	wantStats(t, a, 4000, 4000, 0, 2, 2, 4096)
	if err := a.Free(x); err != nil {
		t.Fatal(err)
	}
	wantStats(t, a, 3000, 4000, 1024, 2, 2, 4096)
	z, _ := a.Alloc(600) // same class as x: a pool hit, same block
	if z.Ptr != x.Ptr {
		t.Fatalf("pool hit returned %#x, want the cached %#x", z.Ptr, x.Ptr)
	}
	wantStats(t, a, 3600, 4000, 0, 3, 2, 4096)
	a.ResetPeak()
	wantStats(t, a, 3600, 3600, 0, 3, 2, 4096)
	a.Free(y)
	a.Free(z)
	wantStats(t, a, 0, 3600, 4096, 3, 2, 4096)
	if be.mallocs != 2 || be.frees != 0 {
		t.Fatalf("driver saw %d mallocs, %d frees; want 2, 0", be.mallocs, be.frees)
	}
	if err := a.EmptyCache(); err != nil {
		t.Fatal(err)
	}
	wantStats(t, a, 0, 3600, 0, 3, 2, 0)
	if be.held != 0 || len(be.blocks) != 0 {
		t.Fatalf("driver still holds %d B in %d blocks after EmptyCache", be.held, len(be.blocks))
	}
}

func TestAllocatorSaved(t *testing.T) {
	a := newAllocator(newFake(1<<20), 1<<20)
	a.AddSaved(100)
	a.AddSaved(50)
	a.AddSaved(-120)
	if s := a.Stats(); s.Saved != 30 || s.PeakSaved != 150 {
		t.Fatalf("saved %d, peak saved %d; want 30, 150", s.Saved, s.PeakSaved)
	}
	a.ResetPeak()
	if s := a.Stats(); s.PeakSaved != 30 {
		t.Fatalf("peak saved after ResetPeak %d, want 30", s.PeakSaved)
	}
}

func TestAllocatorPoolLimit(t *testing.T) {
	be := newFake(1 << 30)
	a := newAllocator(be, 2048)
	var bs []Buffer
	for range 3 {
		b, _ := a.Alloc(1024)
		bs = append(bs, b)
	}
	for _, b := range bs {
		a.Free(b)
	}
	// Two blocks fit the 2048 B cache; the third goes back to the driver.
	wantStats(t, a, 0, 3072, 2048, 3, 3, 2048)
	if be.frees != 1 {
		t.Fatalf("driver frees %d, want 1", be.frees)
	}
	if err := a.SetPoolLimit(0); err != nil {
		t.Fatal(err)
	}
	wantStats(t, a, 0, 3072, 0, 3, 3, 0)
	b, _ := a.Alloc(1024)
	a.Free(b)
	wantStats(t, a, 0, 3072, 0, 4, 4, 0) // no caching at limit 0
}

func TestAllocatorOutOfMemoryRetriesAfterEmptyingCache(t *testing.T) {
	be := newFake(4096)
	a := newAllocator(be, 1<<30)
	x, _ := a.Alloc(2048)
	y, _ := a.Alloc(2048)
	a.Free(x)
	a.Free(y)
	// 4096 B cached in the 2048 class; a 3072 B block only fits once they are returned.
	z, err := a.Alloc(3000)
	if err != nil {
		t.Fatalf("alloc after emptying the cache: %v", err)
	}
	wantStats(t, a, 3000, 4096, 0, 3, 3, 3072)
	_, err = a.Alloc(2048)
	if !IsOutOfMemory(err) {
		t.Fatalf("alloc beyond capacity: error %v, want CUDA_ERROR_OUT_OF_MEMORY", err)
	}
	for _, want := range []string{"allocate 2048 bytes", "CUDA_ERROR_OUT_OF_MEMORY", "live 3000 B", "reserved 3072 B"} {
		if !contains(err.Error(), want) {
			t.Fatalf("error %q lacks %q", err, want)
		}
	}
	wantStats(t, a, 3000, 4096, 0, 3, 3, 3072) // a failed alloc counts nothing
	a.Free(z)
}

func TestAllocatorDoubleFreePanics(t *testing.T) {
	a := newAllocator(newFake(1<<20), 1<<20)
	b, _ := a.Alloc(10)
	a.Free(b)
	defer func() {
		if r := recover(); r == nil || !contains(fmt.Sprint(r), "freed twice") {
			t.Fatalf("second Free: recovered %v, want a double-free panic", r)
		}
	}()
	a.Free(b)
}

// The allocator is what the CUDA device reports through tensor.Device.
var _ interface {
	Stats() tensor.MemStats
	ResetPeak()
} = (*Allocator)(nil)
