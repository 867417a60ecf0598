package safetensors

import (
	"slices"
	"strings"
)

// DType is the element type of a tensor, spelled as in the header.
type DType string

// The element types of the safetensors format.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E5M2 DType = "F8_E5M2"
	F8E4M3 DType = "F8_E4M3"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	I64    DType = "I64"
	U64    DType = "U64"
	F64    DType = "F64"
)

var dtypeSizes = map[DType]int{
	BOOL: 1, U8: 1, I8: 1, F8E5M2: 1, F8E4M3: 1,
	I16: 2, U16: 2, F16: 2, BF16: 2,
	I32: 4, U32: 4, F32: 4,
	I64: 8, U64: 8, F64: 8,
}

// Size returns the number of bytes of one element of type d, or 0 when d is
// not a known dtype.
func (d DType) Size() int {
	return dtypeSizes[d]
}

// knownDTypes returns the known dtypes, sorted, for error messages.
func knownDTypes() string {
	names := make([]string, 0, len(dtypeSizes))
	for d := range dtypeSizes {
		names = append(names, string(d))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
