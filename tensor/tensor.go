package tensor

import (
	"fmt"
	"math"
	"slices"
)

// Tensor is an N-d row-major array on a device. Its data are contiguous: views exist
// only where they are free (Reshape, Slice along the first axis); everything else
// copies. A Tensor and its graph are used by one goroutine at a time.
type Tensor struct {
	st           *Storage
	off          int
	shape        []int
	requiresGrad bool
	grad         *Tensor
	node         *node
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("tensor: negative dimension in shape %v", slices.Clone(shape))) // a copy keeps shape from escaping
		}
		n *= d
	}
	return n
}

// tensorBox is a tensor, its storage header and a shape of rank <= 4 in one Go
// allocation: a training step makes thousands of tensors, and their buffers already
// come from the pool.
type tensorBox struct {
	t    Tensor
	s    Storage
	dims [4]int
}

// makeTensor returns a tensor of the given shape with new storage of dtype dt (zeroed
// when zero is set).
func makeTensor(dt DType, zero bool, shape []int) *Tensor {
	b := new(tensorBox)
	CPU.allocInto(&b.s, dt, numel(shape), zero)
	b.t.st = &b.s
	b.t.shape = copyShape(&b.dims, shape)
	return &b.t
}

// viewBox is a tensor and a shape of rank <= 4 in one Go allocation.
type viewBox struct {
	t    Tensor
	dims [4]int
}

// newView returns a tensor on s (which the caller has retained) from element off.
func newView(s *Storage, off int, shape []int) *Tensor {
	b := new(viewBox)
	b.t.st, b.t.off = s, off
	b.t.shape = copyShape(&b.dims, shape)
	return &b.t
}

// copyShape copies shape into dims when it fits, or into a new slice.
func copyShape(dims *[4]int, shape []int) []int {
	var out []int
	if len(shape) > len(dims) {
		out = make([]int, len(shape))
	} else {
		out = dims[:len(shape):len(shape)]
	}
	copy(out, shape)
	return out
}

// newTensor allocates an F32 tensor produced by an op (an activation).
func newTensor(zero bool, shape ...int) *Tensor {
	t := makeTensor(F32, zero, shape)
	t.st.activ = true
	return t
}

// Zeros returns a new float32 leaf tensor of zeros.
func Zeros(shape ...int) *Tensor {
	return makeTensor(F32, true, shape)
}

// Full returns a new float32 leaf tensor filled with v.
func Full(v float32, shape ...int) *Tensor {
	t := makeTensor(F32, false, shape)
	for i := range t.st.f32 {
		t.st.f32[i] = v
	}
	return t
}

// FromFloat32 returns a new float32 leaf tensor holding a copy of data. It panics if
// len(data) does not match the shape.
func FromFloat32(data []float32, shape ...int) *Tensor {
	if numel(shape) != len(data) {
		panic(fmt.Sprintf("tensor.FromFloat32: %d values for shape %v", len(data), shape))
	}
	t := makeTensor(F32, false, shape)
	copy(t.st.f32, data)
	return t
}

// FromBits returns a new 16-bit (BF16 or F16) leaf tensor holding a copy of bits.
// It panics if dt is F32 or len(bits) does not match the shape.
func FromBits(dt DType, bits []uint16, shape ...int) *Tensor {
	if dt == F32 || numel(shape) != len(bits) {
		panic(fmt.Sprintf("tensor.FromBits: %d %v values for shape %v", len(bits), dt, shape))
	}
	t := makeTensor(dt, false, shape)
	copy(t.st.u16, bits)
	return t
}

// FromMappedBits returns a 16-bit (BF16 or F16) leaf whose storage is bits itself,
// not a copy: a frozen weight read straight from a memory-mapped checkpoint. The
// bytes count as live while the tensor lives, are never written (nothing writes a
// frozen weight in place), and are never pooled; the caller keeps the memory valid
// until the tensor is released. It panics like FromBits.
func FromMappedBits(dt DType, bits []uint16, shape ...int) *Tensor {
	if dt == F32 || numel(shape) != len(bits) {
		panic(fmt.Sprintf("tensor.FromMappedBits: %d %v values for shape %v", len(bits), dt, shape))
	}
	s := &Storage{dev: CPU, dtype: dt, n: len(bits), u16: bits, refs: 1, external: true}
	CPU.mu.Lock()
	CPU.stats.Allocs++
	CPU.grow(s.Bytes())
	CPU.mu.Unlock()
	return &Tensor{st: s, shape: slices.Clone(shape)}
}

// Shape returns the tensor's shape; the caller must not modify it.
func (t *Tensor) Shape() []int { return t.shape }

// Rank returns the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// Dim returns the size of axis i; negative i counts from the end.
func (t *Tensor) Dim(i int) int { return t.shape[axis(i, len(t.shape), "Dim")] }

// Len returns the number of elements.
func (t *Tensor) Len() int { return numel(t.shape) }

// DType returns the storage dtype.
func (t *Tensor) DType() DType { return t.live().dtype }

// Device returns the device holding the tensor.
func (t *Tensor) Device() Device { return t.live().dev }

// Bytes returns the size of the tensor's elements in bytes.
func (t *Tensor) Bytes() int64 { return int64(t.Len()) * int64(t.DType().Size()) }

func (t *Tensor) live() *Storage {
	if t.st == nil {
		panic("tensor: use of a released tensor (or of a placeholder that was never loaded)")
	}
	return t.st
}

// Placeholder returns a tensor with a shape and no storage: it stands for a parameter
// a checkpoint will replace (nn.LoadFile checks its shape, then swaps in the loaded
// tensor), so that building a model to load costs no memory. Any use of its data
// panics; Release is a no-op.
func Placeholder(shape ...int) *Tensor {
	numel(shape) // validates the dimensions
	return &Tensor{shape: slices.Clone(shape)}
}

// Data returns the float32 elements as a slice aliasing the storage. It panics for
// 16-bit tensors (use Float32s).
func (t *Tensor) Data() []float32 {
	s := t.live()
	if s.dtype != F32 {
		panic(fmt.Sprintf("tensor.Data: tensor is %v, not F32 (use Float32s)", s.dtype))
	}
	return s.f32[t.off : t.off+t.Len()]
}

// Bits returns the 16-bit elements of a BF16 or F16 tensor, aliasing the storage.
func (t *Tensor) Bits() []uint16 {
	s := t.live()
	if s.dtype == F32 {
		panic("tensor.Bits: tensor is F32")
	}
	return s.u16[t.off : t.off+t.Len()]
}

// Float32s returns a copy of the elements widened to float32.
func (t *Tensor) Float32s() []float32 {
	out := make([]float32, t.Len())
	if t.DType() == F32 {
		copy(out, t.Data())
	} else {
		widen(out, t.Bits(), t.DType())
	}
	return out
}

// Item returns the single element of a one-element tensor.
func (t *Tensor) Item() float32 {
	if t.Len() != 1 {
		panic(fmt.Sprintf("tensor.Item: shape %v has %d elements", t.shape, t.Len()))
	}
	return t.Float32s()[0]
}

// Release drops this tensor's reference to its storage. It is safe to call twice.
// The tensor must not be used afterwards; its gradient (if any) is released too.
func (t *Tensor) Release() {
	if t.st != nil {
		t.st.release()
		t.st = nil
	}
	if t.grad != nil {
		t.grad.Release()
		t.grad = nil
	}
}

// Released reports whether Release has been called.
func (t *Tensor) Released() bool { return t.st == nil }

// SetRequiresGrad marks a leaf tensor (a parameter) as needing a gradient. It panics
// on a tensor produced by a recorded op.
func (t *Tensor) SetRequiresGrad(on bool) *Tensor {
	if t.node != nil {
		panic("tensor.SetRequiresGrad: not a leaf (use Detach)")
	}
	if on && t.DType() != F32 {
		panic(fmt.Sprintf("tensor.SetRequiresGrad: a %v tensor cannot be trained; convert it to F32", t.DType()))
	}
	t.requiresGrad = on
	return t
}

// RequiresGrad reports whether gradients flow to or through the tensor.
func (t *Tensor) RequiresGrad() bool { return t.requiresGrad }

// Grad returns the gradient accumulated by Backward on a leaf, or nil.
func (t *Tensor) Grad() *Tensor { return t.grad }

// ZeroGrad releases the accumulated gradient.
func (t *Tensor) ZeroGrad() {
	if t.grad != nil {
		t.grad.Release()
		t.grad = nil
	}
}

// Detach returns a leaf view of the same storage, outside any graph.
func (t *Tensor) Detach() *Tensor {
	s := t.live()
	s.retain()
	return newView(s, t.off, t.shape)
}

// Clone returns a float32 leaf copy (16-bit tensors are widened).
func (t *Tensor) Clone() *Tensor {
	c := makeTensor(F32, false, t.shape)
	if t.DType() == F32 {
		copy(c.st.f32, t.Data())
	} else {
		widen(c.st.f32, t.Bits(), t.DType())
	}
	return c
}

// Convert returns a leaf copy stored as dtype dt (rounding to nearest even when narrowing).
func (t *Tensor) Convert(dt DType) *Tensor {
	if dt == F32 {
		return t.Clone()
	}
	src := t.Float32s()
	c := makeTensor(dt, false, t.shape)
	narrow(c.st.u16, src, dt)
	return c
}

// CopyFrom copies src's values into t (same number of elements; dtypes convert).
// It records nothing in the graph.
func (t *Tensor) CopyFrom(src *Tensor) {
	if src.Len() != t.Len() {
		panic(fmt.Sprintf("tensor.CopyFrom: %v into %v", src.shape, t.shape))
	}
	switch {
	case t.DType() == F32 && src.DType() == F32:
		copy(t.Data(), src.Data())
	case t.DType() == F32:
		widen(t.Data(), src.Bits(), src.DType())
	default:
		narrow(t.Bits(), src.Float32s(), t.DType())
	}
}

func (t *Tensor) String() string {
	if t.st == nil {
		return "Tensor(released)"
	}
	return fmt.Sprintf("Tensor(%v %v)", t.DType(), t.shape)
}

// elems is a tensor's elements captured by a backward closure. It stays valid while
// the storage is retained (saved by the node), even after the Tensor is released.
type elems struct {
	st     *Storage
	off, n int
}

func elemsOf(t *Tensor) elems { return elems{st: t.live(), off: t.off, n: t.Len()} }

// optElems is elemsOf, or no elements for a nil tensor.
func optElems(t *Tensor) elems {
	if t == nil {
		return elems{}
	}
	return elemsOf(t)
}

// f32 returns the elements as float32 for reading: the storage itself for F32, or a
// widened temporary (counted as live until done is called) for 16-bit storage.
func (e elems) f32() (data []float32, done func()) {
	if e.st == nil {
		return nil, func() {}
	}
	if e.st.dtype == F32 {
		return e.st.f32[e.off : e.off+e.n], func() {}
	}
	s := CPU.alloc(F32, e.n, false)
	widenParallel(s.f32, e.st.u16[e.off:e.off+e.n], e.st.dtype)
	return s.f32, s.release
}

// block returns elements [lo, hi) as float32: the storage itself for F32, or
// widened into buf (at least hi-lo long) for 16-bit storage.
func (e elems) block(lo, hi int, buf []float32) []float32 {
	if e.st.dtype == F32 {
		return e.st.f32[e.off+lo : e.off+hi]
	}
	b := buf[:hi-lo]
	widen(b, e.st.u16[e.off+lo:e.off+hi], e.st.dtype)
	return b
}

// f32If is f32 when keep is set, and nil data otherwise.
func (e elems) f32If(keep bool) (data []float32, done func()) {
	if !keep {
		return nil, func() {}
	}
	return e.f32()
}

// f32 is elemsOf(t).f32().
func (t *Tensor) f32() (data []float32, done func()) { return elemsOf(t).f32() }

// mustF32 returns t's float32 elements, panicking with the op's name for 16-bit
// tensors: only MatMul's b, Conv2d's weight and Embedding's table may be 16-bit.
func mustF32(op string, t *Tensor) []float32 {
	if t.DType() != F32 {
		panic(fmt.Sprintf("tensor.%s: input %v is %v; convert it with Convert(F32)", op, t.shape, t.DType()))
	}
	return t.Data()
}

// axis normalises a possibly negative axis, panicking with the op's name if invalid.
func axis(a, rank int, op string) int {
	if a < 0 {
		a += rank
	}
	if a < 0 || a >= rank {
		panic(fmt.Sprintf("tensor.%s: axis %d out of range for rank %d", op, a, rank))
	}
	return a
}

// AllClose reports whether a and b have the same shape and |a-b| <= atol + rtol·|b|
// elementwise. It is meant for tests and checks, not for hot paths.
func AllClose(a, b *Tensor, rtol, atol float64) bool {
	if !slices.Equal(a.shape, b.shape) {
		return false
	}
	x, y := a.Float32s(), b.Float32s()
	for i := range x {
		if math.Abs(float64(x[i])-float64(y[i])) > atol+rtol*math.Abs(float64(y[i])) {
			return false
		}
	}
	return true
}

// Release releases every tensor given (nil entries are skipped): model code writes
// `defer tensor.Release(h, g)` for the intermediates of a block.
func Release(ts ...*Tensor) {
	for _, t := range ts {
		if t != nil {
			t.Release()
		}
	}
}
