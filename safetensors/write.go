package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/difftune/difftune/internal/atomicfile"
)

// Tensor is a tensor to write: its name, element type, shape and raw
// little-endian bytes.
type Tensor struct {
	Name  string
	DType DType
	// Shape is the size of each dimension; an empty Shape is a scalar.
	Shape []int
	Data  []byte
}

// Write writes tensors and metadata (which may be nil) to a new safetensors
// file at path, atomically: readers see the old file or the complete new
// one, never a partial file (see internal/atomicfile). The file has mode
// 0644.
//
// The data section holds the tensors sorted by element size, largest first,
// then by name, whatever the order of tensors. The output is therefore
// reproducible, and since the data section starts 8-byte aligned (the header
// is padded with spaces) every tensor starts at a multiple of its element
// size, so a mapped file can be viewed as typed slices. This is the layout
// the Python library writes. The header lists "__metadata__" first, when
// metadata is not empty, then the tensors in the same order.
//
// Write fails, naming path and the offending tensor or metadata key, and
// without touching path, when a name is empty, repeated, "__metadata__" or
// not valid UTF-8; when a dtype is unknown; when a dimension is negative or
// the size overflows; when len(Data) differs from elements × dtype size; when
// a metadata key or value is not valid UTF-8; or when the header would
// exceed MaxHeaderSize. It also fails when the file cannot be created or
// written (for example, when the folder does not exist or is not writable);
// the error from internal/atomicfile then names path.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	infos, order, err := layout(tensors)
	if err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	hdr, err := encodeHeader(infos, metadata)
	if err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error { return emit(w, hdr, tensors, order) })
}

// Encode returns the bytes Write would write, for hashing a file before it exists.
// It fails as Write does for invalid tensors or metadata.
func Encode(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	infos, order, err := layout(tensors)
	if err != nil {
		return nil, fmt.Errorf("safetensors: encode: %w", err)
	}
	hdr, err := encodeHeader(infos, metadata)
	if err != nil {
		return nil, fmt.Errorf("safetensors: encode: %w", err)
	}
	var b bytes.Buffer
	if err := emit(&b, hdr, tensors, order); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// emit writes the header length, the header and the tensor data in file order.
func emit(w io.Writer, hdr []byte, tensors []Tensor, order []int) error {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, i := range order {
		if _, err := w.Write(tensors[i].Data); err != nil {
			return err
		}
	}
	return nil
}

// layout validates tensors and returns their descriptions in file order with
// contiguous offsets, and the indices into tensors in that order.
func layout(tensors []Tensor) ([]TensorInfo, []int, error) {
	seen := make(map[string]bool, len(tensors))
	for i, t := range tensors {
		switch {
		case t.Name == "":
			return nil, nil, fmt.Errorf("tensor %d of %d has an empty name: give every tensor a name", i, len(tensors))
		case t.Name == metadataKey:
			return nil, nil, fmt.Errorf("tensor %d is named %q, which is reserved for metadata: rename it", i, metadataKey)
		case !utf8.ValidString(t.Name):
			return nil, nil, fmt.Errorf("tensor %q: name is not valid UTF-8", t.Name)
		case seen[t.Name]:
			return nil, nil, fmt.Errorf("tensor %q appears more than once: names must be unique", t.Name)
		}
		seen[t.Name] = true
		if t.DType.Size() == 0 {
			return nil, nil, fmt.Errorf("tensor %q: dtype %q is unknown (known: %s)", t.Name, t.DType, knownDTypes())
		}
		for _, d := range t.Shape {
			if d < 0 {
				return nil, nil, fmt.Errorf("tensor %q: shape %v has a negative dimension", t.Name, t.Shape)
			}
		}
		size, ok := byteSize(t.Shape, t.DType.Size())
		if !ok {
			return nil, nil, fmt.Errorf("tensor %q: shape %v of %s overflows int64 bytes", t.Name, t.Shape, t.DType)
		}
		if int64(len(t.Data)) != size {
			return nil, nil, fmt.Errorf("tensor %q: data has %d bytes but shape %v of %s needs %d", t.Name, len(t.Data), t.Shape, t.DType, size)
		}
	}

	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		ta, tb := tensors[a], tensors[b]
		return cmp.Or(cmp.Compare(tb.DType.Size(), ta.DType.Size()), cmp.Compare(ta.Name, tb.Name))
	})
	infos := make([]TensorInfo, len(tensors))
	var off int64
	for k, i := range order {
		t := tensors[i]
		end := off + int64(len(t.Data))
		if end < off {
			return nil, nil, fmt.Errorf("tensor %q: data section exceeds int64 bytes", t.Name)
		}
		infos[k] = TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Offsets: [2]int64{off, end}}
		off = end
	}
	return infos, order, nil
}

// encodeHeader returns the JSON header for tensors, in the given order, and
// metadata, padded with spaces so that 8 plus its length is a multiple of 8.
// The offsets of tensors must be valid; metadata may be nil.
func encodeHeader(tensors []TensorInfo, metadata map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("%q: key %q or its value is not valid UTF-8", metadataKey, k)
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		writeString(&b, metadataKey)
		b.WriteString(":{")
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(&b, k)
			b.WriteByte(':')
			writeString(&b, metadata[k])
		}
		b.WriteByte('}')
	}
	for i, t := range tensors {
		if i > 0 || len(metadata) > 0 {
			b.WriteByte(',')
		}
		writeString(&b, t.Name)
		b.WriteString(`:{"dtype":`)
		writeString(&b, string(t.DType))
		b.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, t.Offsets[0], t.Offsets[1])
	}
	b.WriteByte('}')
	for (8+b.Len())%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("header of %d bytes exceeds the %d-byte limit readers accept: write fewer tensors or less metadata per file", b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), nil
}

// writeString appends s to b as a JSON string without HTML escaping. s must
// be valid UTF-8.
func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // Cannot fail for a string.
	b.Truncate(b.Len() - 1) // Encode appends a newline.
}
