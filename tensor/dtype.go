package tensor

import "fmt"

// DType is a storage element type. Compute is always float32; BF16 and F16 storage is
// for frozen weights, widened to float32 inside the kernels that read it.
type DType uint8

// Storage dtypes.
const (
	F32 DType = iota
	BF16
	F16
	// byteMask is one byte per element: the dropout masks the activation form of an
	// adapter keeps, as PyTorch does. It is internal to the package.
	byteMask
)

// Size returns the element size in bytes.
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case byteMask:
		return 1
	}
	return 2
}

func (d DType) String() string {
	switch d {
	case F32:
		return "F32"
	case BF16:
		return "BF16"
	case F16:
		return "F16"
	case byteMask:
		return "U8"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// widen converts 16-bit storage to float32 into dst.
func widen(dst []float32, src []uint16, d DType) {
	if d == BF16 {
		for i, h := range src {
			dst[i] = BF16ToF32(h)
		}
		return
	}
	for i, h := range src {
		dst[i] = F16ToF32(h)
	}
}

// narrow converts float32 to 16-bit storage (round to nearest even) into dst.
func narrow(dst []uint16, src []float32, d DType) {
	if d == BF16 {
		for i, f := range src {
			dst[i] = F32ToBF16(f)
		}
		return
	}
	for i, f := range src {
		dst[i] = F32ToF16(f)
	}
}

// narrowParallel is narrow over large slices in parallel.
func narrowParallel(dst []uint16, src []float32, d DType) {
	parallelFor(len(dst), 1<<16, func(lo, hi int) { narrow(dst[lo:hi], src[lo:hi], d) })
}

// widenParallel is widen over large slices in parallel.
func widenParallel(dst []float32, src []uint16, d DType) {
	parallelFor(len(dst), 1<<16, func(lo, hi int) { widen(dst[lo:hi], src[lo:hi], d) })
}
