package safetensors

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// FuzzParseHeader checks that ParseHeader never panics and that whatever it
// accepts is consistent. The seed corpus is in testdata/fuzz/FuzzParseHeader.
// fileSize is fuzzed independently of data; ParseHeader is also called with
// fileSize = len(data), the case of a whole file, so that the mutator's
// choice of fileSize does not hide header bugs.
func FuzzParseHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, fileSize int64) {
		check(t, data, fileSize)
		check(t, data, int64(len(data)))
	})
}

// check asserts the invariants of a header that ParseHeader accepts.
func check(t *testing.T, data []byte, fileSize int64) {
	h, err := ParseHeader(data, fileSize)
	if err != nil {
		if h != nil {
			t.Fatalf("non-nil header with error %v", err)
		}
		return
	}
	n := int64(binary.LittleEndian.Uint64(data))
	if h.DataStart != 8+n || h.DataStart > fileSize || h.DataStart > int64(len(data)) {
		t.Fatalf("DataStart = %d, header length %d, fileSize %d, len(data) %d", h.DataStart, n, fileSize, len(data))
	}
	dataLen := fileSize - h.DataStart
	var end int64
	seen := make(map[string]bool)
	for i, ti := range h.Tensors {
		if seen[ti.Name] || ti.Name == metadataKey {
			t.Fatalf("bad or repeated name %q", ti.Name)
		}
		seen[ti.Name] = true
		b, e := ti.Offsets[0], ti.Offsets[1]
		if b < 0 || b > e || e > dataLen {
			t.Fatalf("%q: offsets %v outside [0, %d]", ti.Name, ti.Offsets, dataLen)
		}
		if b < end {
			t.Fatalf("%q: offsets %v overlap the previous tensor ending at %d", ti.Name, ti.Offsets, end)
		}
		if i > 0 {
			p := h.Tensors[i-1]
			if p.Offsets[0] > b || p.Offsets[0] == b && p.Offsets[1] == e && p.Name > ti.Name {
				t.Fatalf("not sorted: %q %v before %q %v", p.Name, p.Offsets, ti.Name, ti.Offsets)
			}
		}
		if ti.DType.Size() == 0 {
			t.Fatalf("%q: unknown dtype %q accepted", ti.Name, ti.DType)
		}
		if sz, ok := byteSize(ti.Shape, ti.DType.Size()); !ok || sz != e-b {
			t.Fatalf("%q: shape %v of %s does not fit %v", ti.Name, ti.Shape, ti.DType, ti.Offsets)
		}
		if ti.NumElements()*int64(ti.DType.Size()) != e-b {
			t.Fatalf("%q: NumElements %d disagrees with offsets %v", ti.Name, ti.NumElements(), ti.Offsets)
		}
		end = e
	}
	if end != dataLen {
		t.Fatalf("tensors end at %d, data section has %d bytes", end, dataLen)
	}

	// Re-encoding the header as Write would and parsing it again gives the
	// same tensors and metadata (DataStart may change with the padding).
	hdr, err := encodeHeader(h.Tensors, h.Metadata)
	if err != nil {
		t.Fatalf("re-encoding: %v", err)
	}
	buf := append(binary.LittleEndian.AppendUint64(nil, uint64(len(hdr))), hdr...)
	h2, err := ParseHeader(buf, int64(len(buf))+dataLen)
	if err != nil {
		t.Fatalf("re-encoded header %q does not parse: %v", hdr, err)
	}
	if !reflect.DeepEqual(h2.Tensors, h.Tensors) {
		t.Fatalf("re-encoded tensors %+v, want %+v", h2.Tensors, h.Tensors)
	}
	if len(h.Metadata) > 0 && !reflect.DeepEqual(h2.Metadata, h.Metadata) || len(h.Metadata) == 0 && h2.Metadata != nil {
		t.Fatalf("re-encoded metadata %v, want %v", h2.Metadata, h.Metadata)
	}
}
