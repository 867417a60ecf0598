package tensor

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Device is where a tensor's storage lives and its kernels run. The CPU is the only
// device today; the CUDA device implements the same interface later.
type Device interface {
	// Name identifies the device, e.g. "cpu".
	Name() string
	// Stats returns the device's memory counters.
	Stats() MemStats
	// ResetPeak sets the peak counters to the current values.
	ResetPeak()
}

// MemStats are a device's exact memory counters, in bytes of tensor storage
// (pooled but unused buffers are reported separately, as Pooled).
type MemStats struct {
	Live      int64 // storage held by live tensors
	Peak      int64 // the maximum of Live since the last ResetPeak
	Saved     int64 // activation storage retained for backward, each storage counted once
	PeakSaved int64 // the maximum of Saved since the last ResetPeak
	Pooled    int64 // released buffers kept for reuse
	Allocs    int64 // allocations served (pool hits included)
	PoolMiss  int64 // allocations that had to create a new buffer
}

func (m MemStats) String() string {
	return fmt.Sprintf("live %d B, peak %d B, saved %d B (peak %d B), pooled %d B", m.Live, m.Peak, m.Saved, m.PeakSaved, m.Pooled)
}

// CPU is the default device.
var CPU = &cpuDevice{pool32: map[int][][]float32{}, pool16: map[int][][]uint16{}, pool8: map[int][][]uint8{}, maxPooled: 1 << 30}

// cpuDevice allocates from exact-size free lists: a training step repeats the same
// shapes, so after the first step every request is a pool hit.
type cpuDevice struct {
	mu        sync.Mutex
	stats     MemStats
	pool32    map[int][][]float32
	pool16    map[int][][]uint16
	pool8     map[int][][]uint8
	maxPooled int64
	// A trace (TraceMoments, taken while the package's tracing flag is set): its
	// moments, and the op they are labelled with.
	moments []Moment
	traceOp string
}

func (d *cpuDevice) Name() string { return "cpu" }

func (d *cpuDevice) Stats() MemStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

func (d *cpuDevice) ResetPeak() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Peak = d.stats.Live
	d.stats.PeakSaved = d.stats.Saved
}

// SetPoolLimit caps the bytes the CPU device keeps in its free lists (default 1 GiB);
// buffers released beyond it are left to the garbage collector. 0 disables pooling.
func SetPoolLimit(bytes int64) {
	CPU.mu.Lock()
	defer CPU.mu.Unlock()
	CPU.maxPooled = bytes
	if bytes == 0 {
		clear(CPU.pool32)
		clear(CPU.pool16)
		clear(CPU.pool8)
		CPU.stats.Pooled = 0
	}
}

// alloc returns storage for n elements of dtype dt. The contents are zero when zero
// is set, otherwise unspecified.
func (d *cpuDevice) alloc(dt DType, n int, zero bool) *Storage {
	s := new(Storage)
	d.allocInto(s, dt, n, zero)
	return s
}

// allocInto is alloc into a Storage header the caller provides (see tensorBox).
func (d *cpuDevice) allocInto(s *Storage, dt DType, n int, zero bool) {
	if n < 0 {
		panic(fmt.Sprintf("tensor: alloc of %d elements", n))
	}
	bytes := int64(n) * int64(dt.Size())
	*s = Storage{dev: d, dtype: dt, n: n, refs: 1}
	d.mu.Lock()
	d.stats.Allocs++
	d.grow(bytes)
	switch dt {
	case F32:
		s.f32 = take(d.pool32, n)
	case byteMask:
		s.u8 = take(d.pool8, n)
	default:
		s.u16 = take(d.pool16, n)
	}
	hit := s.f32 != nil || s.u16 != nil || s.u8 != nil
	if hit {
		d.stats.Pooled -= bytes
	} else {
		d.stats.PoolMiss++
	}
	d.mu.Unlock()
	switch {
	case !hit && dt == F32:
		s.f32 = make([]float32, n)
	case !hit && dt == byteMask:
		s.u8 = make([]uint8, n)
	case !hit:
		s.u16 = make([]uint16, n)
	case zero:
		clear(s.f32)
		clear(s.u16)
		clear(s.u8)
	}
}

// free returns a storage whose last reference was dropped.
func (d *cpuDevice) free(s *Storage) {
	bytes := s.Bytes()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Live -= bytes
	if s.external || d.stats.Pooled+bytes > d.maxPooled {
		return // memory the allocator does not own, or a full pool
	}
	d.stats.Pooled += bytes
	switch s.dtype {
	case F32:
		d.pool32[s.n] = append(d.pool32[s.n], s.f32)
	case byteMask:
		d.pool8[s.n] = append(d.pool8[s.n], s.u8)
	default:
		d.pool16[s.n] = append(d.pool16[s.n], s.u16)
	}
}

// take pops a buffer of exactly n elements from a free list, or returns nil.
func take[T any](pool map[int][][]T, n int) []T {
	l := pool[n]
	if len(l) == 0 {
		return nil
	}
	b := l[len(l)-1]
	l[len(l)-1] = nil
	pool[n] = l[:len(l)-1]
	return b
}

// grow counts bytes that just became live, and takes a moment of the trace if one
// is being taken. The caller holds d.mu.
func (d *cpuDevice) grow(bytes int64) {
	d.stats.Live += bytes
	d.stats.Peak = max(d.stats.Peak, d.stats.Live)
	if tracing.Load() {
		d.moments = append(d.moments, Moment{Op: d.traceOp, Live: d.stats.Live})
	}
}

// Moment is one step of a traced run (TraceMoments): the bytes live just after one
// allocation, and the op it belongs to.
type Moment struct {
	// Op is the backward node being run, or in the forward pass the op recorded last
	// (an op records itself after it has allocated its output; Checkpoint's
	// recomputation inside a backward node records forward ops again).
	Op   string
	Live int64
}

// tracing says whether TraceMoments is taking a trace.
var tracing atomic.Bool

// TraceMoments runs f and returns its course on the CPU device: a moment at each
// allocation, holding the bytes then live. Live bytes only rise at an allocation, so
// the largest moment is f's peak. Runs of the same graph on inputs of different sizes
// allocate in the same order, and then each moment's bytes are a function of the
// sizes on its own (a sum of tensors that are each of a fixed size or proportional to
// one): membench fits them one by one, so the peak follows the moment that holds it
// as sizes grow. (One allocation depends on the thread count instead: a convolution's
// per-thread weight-gradient partials, when it has fewer tasks than threads.) Traces
// do not nest: TraceMoments panics if called from f.
func TraceMoments(f func()) []Moment {
	d := CPU
	d.mu.Lock()
	if tracing.Load() {
		d.mu.Unlock()
		panic("tensor.TraceMoments: already taking a trace")
	}
	d.moments, d.traceOp = nil, "start"
	tracing.Store(true)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		tracing.Store(false)
		d.moments = nil
		d.mu.Unlock()
	}()
	f()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.moments
}

// traceAt labels the moments that follow with op, if a trace is being taken.
func (d *cpuDevice) traceAt(op string) {
	if !tracing.Load() {
		return
	}
	d.mu.Lock()
	d.traceOp = op
	d.mu.Unlock()
}

func (d *cpuDevice) addSaved(delta int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Saved += delta
	d.stats.PeakSaved = max(d.stats.PeakSaved, d.stats.Saved)
}

// Storage is a reference-counted buffer owned by a device.
type Storage struct {
	dev      *cpuDevice
	dtype    DType
	n        int
	f32      []float32
	u16      []uint16
	u8       []uint8
	refs     int32
	saves    int32 // how many graph nodes keep this storage for backward
	activ    bool  // produced by an op: counted in Saved whenever a node keeps it
	counted  bool  // currently included in MemStats.Saved
	external bool  // aliases memory the allocator does not own (a mapped file): never pooled
	exact    bool  // stays float32 when saved activations are packed (norm statistics, log-sum-exp)
	packed   bool  // an F32 activation that was packed to BF16 for backward (see SetSavedBF16)
}

// Bytes returns the storage size in bytes.
func (s *Storage) Bytes() int64 { return int64(s.n) * int64(s.dtype.Size()) }

func (s *Storage) retain() {
	if s.refs <= 0 {
		panic("tensor: use of released storage")
	}
	s.refs++
	s.recount()
}

func (s *Storage) release() {
	if s.refs <= 0 {
		panic("tensor: storage released twice")
	}
	s.refs--
	if s.refs > 0 && s.refs == s.saves && s.activ && s.dtype == F32 && !s.exact && packSaved.Load() {
		s.pack()
	}
	if s.refs == 0 {
		s.recount()
		s.dev.free(s)
		s.f32, s.u16, s.u8 = nil, nil, nil
		return
	}
	s.recount()
}

// save marks the storage as kept for backward by one more node.
func (s *Storage) save() {
	s.retain()
	s.saves++
	s.recount()
}

func (s *Storage) unsave() {
	s.saves--
	s.release()
}

// recount keeps MemStats.Saved exact: a storage counts while a node keeps it and it
// is either an op's output, or a leaf (data made during the step, such as an
// embedding table lookup input) that only the graph still holds.
func (s *Storage) recount() {
	want := s.saves > 0 && (s.activ || s.refs == s.saves)
	if want != s.counted {
		s.counted = want
		if want {
			s.dev.addSaved(s.Bytes())
		} else {
			s.dev.addSaved(-s.Bytes())
		}
	}
}

// packSaved says whether saved activations are packed to bfloat16 (SetSavedBF16).
var packSaved atomic.Bool

// SetSavedBF16 turns packing of saved activations on or off, process-wide. When on,
// a float32 activation that only the graph still holds (the forward pass has
// released it and some op keeps it for backward) is rounded to bfloat16 in place,
// halving what it costs until backward; backward widens it again where an op reads
// it. This is what mixed-precision training keeps (PyTorch's autocast saves bf16
// activations), with every computation still in float32. Norm statistics and the
// attention log-sum-exp stay float32. Gradients then carry bf16's relative rounding
// (2⁻⁹) in the saved operands. It returns the previous setting.
func SetSavedBF16(on bool) bool { return packSaved.Swap(on) }

// pack rounds an F32 storage to BF16 in place (see SetSavedBF16).
func (s *Storage) pack() { s.recast(BF16); s.packed = true }

// unpack widens a packed storage back to F32 in place, for code that reads it as an
// ordinary float32 tensor again (Checkpoint's recomputation).
func (s *Storage) unpack() {
	if s.packed {
		s.recast(F32)
		s.packed = false
	}
}

// recast converts the storage between F32 and BF16 in place: the old buffer goes
// back to the pool, and the live and saved counts follow the new size.
func (s *Storage) recast(to DType) {
	d := s.dev
	old := &Storage{dev: d, dtype: s.dtype, n: s.n, f32: s.f32, u16: s.u16}
	b := d.alloc(to, s.n, false)
	if to == F32 {
		widenParallel(b.f32, s.u16, s.dtype)
	} else {
		narrowParallel(b.u16, s.f32, to)
	}
	if s.counted {
		d.addSaved(-s.Bytes())
	}
	d.free(old)
	s.dtype, s.f32, s.u16 = to, b.f32, b.u16
	if s.counted {
		d.addSaved(s.Bytes())
	}
}
