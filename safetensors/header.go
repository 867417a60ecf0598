package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MaxHeaderSize is the largest header, in bytes, that ParseHeader accepts.
// Real headers are a few hundred bytes per tensor; a larger length is taken
// as a sign of corruption rather than allocated.
const MaxHeaderSize = 100 << 20

// metadataKey is the reserved header member that holds the metadata.
const metadataKey = "__metadata__"

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	// Shape is the size of each dimension; an empty Shape is a scalar
	// holding one element.
	Shape []int
	// Offsets is the [begin, end) byte range of the tensor relative to the
	// start of the data section.
	Offsets [2]int64
}

// NumElements returns the number of elements of t, the product of its
// shape: 1 for a scalar, 0 when any dimension is 0. For a TensorInfo from
// ParseHeader the product cannot overflow; for one built by hand the result
// is meaningless if it does.
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Header is a decoded and validated safetensors header.
type Header struct {
	// Tensors are sorted by Offsets (begin, then end), then by name. They
	// cover the data section without overlap or holes.
	Tensors []TensorInfo
	// Metadata is the "__metadata__" member, or nil when there is none.
	Metadata map[string]string
	// DataStart is the file offset of the data section: 8 plus the header
	// length.
	DataStart int64
}

// FormatError reports a malformed safetensors file or header.
type FormatError struct {
	// Path is the file, or "" when the bytes were not read from a named
	// file (ParseHeader).
	Path string
	// Key is the tensor name, or "__metadata__", the problem is in; ""
	// when it concerns the file as a whole.
	Key string
	// Msg describes the problem and a remedy.
	Msg string
}

// Error returns "safetensors: PATH: tensor "KEY": MSG", leaving out the parts
// that are empty.
func (e *FormatError) Error() string {
	var b bytes.Buffer
	b.WriteString("safetensors: ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	switch {
	case e.Key == metadataKey:
		b.WriteString(strconv.Quote(e.Key))
		b.WriteString(": ")
	case e.Key != "":
		b.WriteString("tensor ")
		b.WriteString(strconv.Quote(e.Key))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// withPath sets the path of err when it is a *FormatError without one.
func withPath(err error, path string) error {
	var fe *FormatError
	if errors.As(err, &fe) && fe.Path == "" {
		fe.Path = path
	}
	return err
}

func formatErr(key, format string, args ...any) *FormatError {
	return &FormatError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Remedies appended to messages.
const (
	remedyCorrupt = "the file is truncated, corrupt or not a safetensors file; re-download or re-export it"
	remedyWriter  = "the program that wrote the file is broken; re-export it with the safetensors library"
)

// ParseHeader decodes and validates the header of a safetensors file. data is
// the whole file or at least its first 8+N bytes, where N is the header
// length stored in the first 8 bytes; fileSize is the size of the whole file,
// against which the tensor offsets are checked.
//
// ParseHeader fails with a *FormatError when fileSize is less than 8 or than
// len(data); when data holds less than 8+N bytes; when N exceeds
// MaxHeaderSize or the file; when the header is not UTF-8 or not a single
// JSON object (trailing whitespace is allowed); when a member name appears
// twice, at any level; when a tensor entry lacks dtype, shape or
// data_offsets, has an unknown dtype, a shape or offset that is not a
// non-negative integer, a shape whose byte size overflows, begin > end, or a
// byte length other than elements × dtype size; when a tensor lies outside
// the data section or overlaps another; when the tensors leave a hole or
// unused bytes at the end of the data section; and when "__metadata__" is not
// an object of strings. It never panics, whatever the input.
func ParseHeader(data []byte, fileSize int64) (*Header, error) {
	if fileSize < 8 {
		return nil, formatErr("", "file has %d bytes, fewer than the 8-byte header length: %s", max(fileSize, 0), remedyCorrupt)
	}
	if fileSize < int64(len(data)) {
		return nil, formatErr("", "fileSize %d is less than the %d bytes of data given: pass the size of the whole file", fileSize, len(data))
	}
	if len(data) < 8 {
		return nil, formatErr("", "only %d bytes given: pass at least the first 8 bytes and the header", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderSize {
		return nil, formatErr("", "header length %d exceeds the %d-byte limit: %s", n, MaxHeaderSize, remedyCorrupt)
	}
	if int64(n) > fileSize-8 {
		return nil, formatErr("", "header length %d exceeds the %d bytes that follow it: %s", n, fileSize-8, remedyCorrupt)
	}
	dataStart := 8 + int64(n)
	if int64(len(data)) < dataStart {
		return nil, formatErr("", "only %d bytes given but the header ends at byte %d: pass the whole header", len(data), dataStart)
	}
	raw := data[8:dataStart]
	if !utf8.Valid(raw) {
		return nil, formatErr("", "header is not valid UTF-8: %s", remedyCorrupt)
	}
	top, err := members(raw)
	if err != nil {
		var dup *dupError
		if errors.As(err, &dup) {
			return nil, formatErr(dup.key, "appears twice in the header (encoding/json would silently keep the last one): %s", remedyWriter)
		}
		return nil, formatErr("", "header %v: %s", err, remedyCorrupt)
	}

	dataLen := fileSize - dataStart
	h := &Header{DataStart: dataStart, Tensors: make([]TensorInfo, 0, len(top))}
	for _, m := range top {
		if m.key == metadataKey {
			if h.Metadata, err = parseMetadata(m.val); err != nil {
				return nil, err
			}
			continue
		}
		t, err := parseEntry(m.key, m.val, dataLen)
		if err != nil {
			return nil, err
		}
		h.Tensors = append(h.Tensors, t)
	}

	slices.SortFunc(h.Tensors, func(a, b TensorInfo) int {
		return cmp.Or(
			cmp.Compare(a.Offsets[0], b.Offsets[0]),
			cmp.Compare(a.Offsets[1], b.Offsets[1]),
			cmp.Compare(a.Name, b.Name),
		)
	})
	var end int64
	for i, t := range h.Tensors {
		switch {
		case t.Offsets[0] < end:
			prev := h.Tensors[i-1] // end > 0 implies i > 0.
			return nil, formatErr(t.Name, "data_offsets %v overlap tensor %q at %v: %s", t.Offsets, prev.Name, prev.Offsets, remedyWriter)
		case t.Offsets[0] > end:
			return nil, formatErr(t.Name, "data_offsets %v leave a hole of %d bytes at data offset %d; the format requires tensors to cover the data section without holes: %s",
				t.Offsets, t.Offsets[0]-end, end, remedyWriter)
		}
		end = t.Offsets[1]
	}
	if end != dataLen {
		return nil, formatErr("", "data section has %d bytes but the tensors cover only %d: %s", dataLen, end, remedyCorrupt)
	}
	return h, nil
}

// parseEntry decodes and validates the entry of tensor name. dataLen is the
// size of the data section.
func parseEntry(name string, raw json.RawMessage, dataLen int64) (TensorInfo, error) {
	t := TensorInfo{Name: name}
	ms, err := members(raw)
	if err != nil {
		return t, formatErr(name, "entry %v: want an object with dtype, shape and data_offsets", err)
	}
	var haveDType, haveShape, haveOffsets bool
	for _, m := range ms {
		switch m.key {
		case "dtype":
			haveDType = true
			if kind(m.val) != "a string" {
				return t, formatErr(name, "dtype is %s, want a string such as \"F32\"", kind(m.val))
			}
			var s string
			if err := json.Unmarshal(m.val, &s); err != nil {
				return t, formatErr(name, "dtype: %v", err)
			}
			t.DType = DType(s)
			if t.DType.Size() == 0 {
				return t, formatErr(name, "dtype %q is unknown (known: %s): convert the tensor to a supported dtype", s, knownDTypes())
			}
		case "shape":
			haveShape = true
			dims, err := parseInts("shape", m.val, math.MaxInt)
			if err != nil {
				return t, formatErr(name, "%v: %s", err, remedyWriter)
			}
			t.Shape = make([]int, len(dims))
			for i, d := range dims {
				t.Shape[i] = int(d)
			}
		case "data_offsets":
			haveOffsets = true
			offs, err := parseInts("data_offsets", m.val, math.MaxInt64)
			if err != nil {
				return t, formatErr(name, "%v: %s", err, remedyWriter)
			}
			if len(offs) != 2 {
				return t, formatErr(name, "data_offsets has %d elements, want 2 ([begin, end])", len(offs))
			}
			t.Offsets = [2]int64{offs[0], offs[1]}
		}
		// Other members are ignored, as the reference implementation does.
	}
	switch {
	case !haveDType:
		return t, formatErr(name, "entry has no dtype: %s", remedyWriter)
	case !haveShape:
		return t, formatErr(name, "entry has no shape: %s", remedyWriter)
	case !haveOffsets:
		return t, formatErr(name, "entry has no data_offsets: %s", remedyWriter)
	}

	begin, end := t.Offsets[0], t.Offsets[1]
	if begin > end {
		return t, formatErr(name, "data_offsets begin %d > end %d: %s", begin, end, remedyWriter)
	}
	size, ok := byteSize(t.Shape, t.DType.Size())
	if !ok {
		return t, formatErr(name, "shape %v of %s overflows int64 bytes: %s", t.Shape, t.DType, remedyCorrupt)
	}
	if size != end-begin {
		return t, formatErr(name, "shape %v of %s needs %d bytes but data_offsets %v span %d: %s",
			t.Shape, t.DType, size, t.Offsets, end-begin, remedyWriter)
	}
	if end > dataLen {
		return t, formatErr(name, "data_offsets %v end past the %d-byte data section: %s", t.Offsets, dataLen, remedyCorrupt)
	}
	return t, nil
}

// byteSize returns the number of bytes of a tensor of the given shape with
// elements of elemSize bytes, and false if that overflows int64. A shape with
// a zero dimension has 0 bytes whatever its other dimensions.
func byteSize(shape []int, elemSize int) (int64, bool) {
	if slices.Contains(shape, 0) {
		return 0, true
	}
	n := int64(elemSize)
	for _, d := range shape {
		if d < 0 || n > math.MaxInt64/int64(d) {
			return 0, false
		}
		n *= int64(d)
	}
	return n, true
}

// parseInts decodes raw, the value of field, as a JSON array of integers in
// [0, limit].
func parseInts(field string, raw json.RawMessage, limit int64) ([]int64, error) {
	if k := kind(raw); k != "an array" {
		return nil, fmt.Errorf("%s is %s, want an array of non-negative integers", field, k)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, fmt.Errorf("%s: %v", field, err)
	}
	out := make([]int64, len(elems))
	for i, e := range elems {
		if k := kind(e); k != "a number" {
			return nil, fmt.Errorf("%s[%d] is %s, want a non-negative integer", field, i, k)
		}
		s := string(e)
		v, err := strconv.ParseInt(s, 10, 64)
		switch {
		case err == nil && v >= 0 && s[0] != '-' && v <= limit:
			out[i] = v
		case s[0] == '-':
			return nil, fmt.Errorf("%s[%d] = %s is negative", field, i, s)
		case errors.Is(err, strconv.ErrRange) || v > limit:
			return nil, fmt.Errorf("%s[%d] = %s is too large (limit %d)", field, i, s, limit)
		default:
			return nil, fmt.Errorf("%s[%d] = %s is not an integer", field, i, s)
		}
	}
	return out, nil
}

// parseMetadata decodes the "__metadata__" member: an object of strings, or
// null, which means no metadata.
func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if kind(raw) == "null" {
		return nil, nil
	}
	ms, err := members(raw)
	if err != nil {
		return nil, formatErr(metadataKey, "%v: want an object mapping strings to strings", err)
	}
	md := make(map[string]string, len(ms))
	for _, m := range ms {
		if k := kind(m.val); k != "a string" {
			return nil, formatErr(metadataKey, "value of %q is %s, want a string: %s", m.key, k, remedyWriter)
		}
		var s string
		if err := json.Unmarshal(m.val, &s); err != nil {
			return nil, formatErr(metadataKey, "value of %q: %v", m.key, err)
		}
		md[m.key] = s
	}
	return md, nil
}

// member is one name/value pair of a JSON object.
type member struct {
	key string
	val json.RawMessage
}

// members decodes raw as a single JSON object followed only by whitespace and
// returns its members in order. Unlike json.Unmarshal into a map it reports
// duplicate names. The errors read well after "header " or "entry ".
func members(raw []byte) ([]member, error) {
	switch k := kind(raw); k {
	case "an object":
	case "not JSON":
		return nil, fmt.Errorf("is not valid JSON")
	default:
		return nil, fmt.Errorf("is %s, not a JSON object", k)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // The '{', checked by kind.
		return nil, syntaxErr(err)
	}
	var ms []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxErr(err)
		}
		key, ok := tok.(string)
		if !ok { // Unreachable: the decoder only yields strings as keys.
			return nil, fmt.Errorf("has a member name %v that is not a string", tok)
		}
		if seen[key] {
			return nil, &dupError{key}
		}
		seen[key] = true
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, syntaxErr(err)
		}
		ms = append(ms, member{key, val})
	}
	if _, err := dec.Token(); err != nil { // The '}'.
		return nil, syntaxErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			return nil, fmt.Errorf("has data after the JSON object (only trailing spaces are allowed)")
		}
		return nil, syntaxErr(err)
	}
	return ms, nil
}

// dupError reports a member name that appears twice in an object.
type dupError struct{ key string }

func (e *dupError) Error() string {
	return fmt.Sprintf("has member %q twice (encoding/json would silently keep the last one)", e.key)
}

func syntaxErr(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("is not valid JSON: %v (near byte %d)", se, se.Offset)
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("is not valid JSON: unexpected end")
	}
	return fmt.Errorf("is not valid JSON: %v", err)
}

// kind names the kind of JSON value raw starts with, for error messages.
func kind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "a number"
	}
	return "not JSON"
}

// ReadHeader reads and validates the header of the safetensors file at path
// without reading tensor data. It fails when the file cannot be opened or
// read, and with a *FormatError naming path for every problem ParseHeader
// reports.
func ReadHeader(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() {
		return nil, &FormatError{Path: path, Msg: "not a regular file"}
	}
	var prefix [8]byte
	if _, err := io.ReadFull(f, prefix[:min(size, 8)]); err != nil {
		return nil, fmt.Errorf("safetensors: read %s: %w", path, err)
	}
	if size < 8 {
		_, err := ParseHeader(prefix[:size], size)
		return nil, withPath(err, path)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > MaxHeaderSize || int64(n) > size-8 {
		// Let ParseHeader report it without allocating.
		_, err := ParseHeader(prefix[:], size)
		return nil, withPath(err, path)
	}
	buf := make([]byte, 8+n)
	copy(buf, prefix[:])
	if _, err := io.ReadFull(f, buf[8:]); err != nil {
		return nil, fmt.Errorf("safetensors: read %s: %w", path, err)
	}
	h, err := ParseHeader(buf, size)
	return h, withPath(err, path)
}
