package safetensors

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// File is an open, validated safetensors file whose contents are mapped
// into memory. Its methods may be called concurrently, but not concurrently
// with Close.
type File struct {
	path   string
	data   []byte // The whole file.
	hdr    *Header
	index  map[string]int // Name to index in hdr.Tensors.
	names  []string       // Sorted.
	unmap  func([]byte) error
	closed bool
}

// Open maps the safetensors file at path read-only into memory and validates
// its header (see ParseHeader). On unix systems the file is memory-mapped, so
// opening is cheap and tensor bytes are paged in on first use; elsewhere the
// whole file is read. Truncating the file while it is mapped may crash the
// program with SIGBUS, as with any memory-mapped file.
//
// Open fails when the file cannot be opened, is not a regular file, cannot be
// mapped or read, and with a *FormatError naming path for every problem
// ParseHeader reports.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer fd.Close() // A mapping stays valid after its file is closed.
	fi, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &FormatError{Path: path, Msg: "not a regular file"}
	}
	data, unmap, err := mapFile(fd, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("safetensors: map %s: %w", path, err)
	}
	h, err := ParseHeader(data, int64(len(data)))
	if err != nil {
		if unmap != nil {
			unmap(data)
		}
		return nil, withPath(err, path)
	}
	f := &File{
		path:  path,
		data:  data,
		hdr:   h,
		index: make(map[string]int, len(h.Tensors)),
		names: make([]string, len(h.Tensors)),
		unmap: unmap,
	}
	for i, t := range h.Tensors {
		f.index[t.Name] = i
		f.names[i] = t.Name
	}
	slices.Sort(f.names)
	return f, nil
}

// Path returns the path f was opened with.
func (f *File) Path() string { return f.path }

// Names returns the tensor names of f, sorted. The slice is a copy.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Info returns the description of tensor name and whether f has it. Its
// Shape is a copy.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := f.hdr.Tensors[i]
	t.Shape = slices.Clone(t.Shape)
	return t, true
}

// Metadata returns a copy of the "__metadata__" map of f, or nil when the
// file has none.
func (f *File) Metadata() map[string]string { return maps.Clone(f.hdr.Metadata) }

// Header returns the decoded header of f. It is shared, so callers must not
// modify it.
func (f *File) Header() *Header { return f.hdr }

// Bytes returns the raw little-endian bytes of tensor name, a view into the
// mapping that is valid until Close and must not be modified (on unix
// systems the mapping is read-only and writing to it crashes). The view of a
// zero-size tensor is empty.
//
// Bytes fails when f is closed or has no tensor name; the error names the
// file and the key and lists up to three similar names, or says how many
// tensors the file has.
func (f *File) Bytes(name string) ([]byte, error) {
	if f.closed {
		return nil, fmt.Errorf("safetensors: %s: tensor %q: file is closed", f.path, name)
	}
	i, ok := f.index[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q; %s", f.path, name, f.suggest(name))
	}
	t := f.hdr.Tensors[i]
	b, e := f.hdr.DataStart+t.Offsets[0], f.hdr.DataStart+t.Offsets[1]
	return f.data[b:e:e], nil
}

// Close releases the mapping. Views returned by Bytes must not be used
// afterwards. Close fails when unmapping fails; calling it again does
// nothing and returns nil.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	data := f.data
	f.data = nil
	if f.unmap != nil && data != nil {
		if err := f.unmap(data); err != nil {
			return fmt.Errorf("safetensors: close %s: %w", f.path, err)
		}
	}
	return nil
}

// suggest describes names of f similar to name, for a missing-key error.
func (f *File) suggest(name string) string {
	type cand struct {
		name string
		dist int
	}
	var cs []cand
	limit := len(name)/3 + 1
	for _, n := range f.names {
		d := editDistance(name, n, limit)
		if d <= limit || (len(name) >= 3 && (strings.Contains(n, name) || strings.Contains(name, n))) {
			cs = append(cs, cand{n, d})
		}
	}
	if len(cs) == 0 {
		return fmt.Sprintf("the file has %d tensors (list them with Names)", len(f.names))
	}
	slices.SortStableFunc(cs, func(a, b cand) int { return a.dist - b.dist })
	var b strings.Builder
	b.WriteString("did you mean ")
	for i, c := range cs[:min(len(cs), 3)] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", c.name)
	}
	fmt.Fprintf(&b, "? (the file has %d tensors)", len(f.names))
	return b.String()
}

// editDistance returns the Levenshtein distance between a and b in bytes, or
// limit+1 when it is certainly larger than limit.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d > limit || -d > limit {
		return limit + 1
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// OpenBytes validates data as a safetensors file held in memory (an embedded model,
// say); name stands in for the path in errors. data must not change while the File is
// in use; Close does nothing to it.
func OpenBytes(name string, data []byte) (*File, error) {
	h, err := ParseHeader(data, int64(len(data)))
	if err != nil {
		return nil, withPath(err, name)
	}
	f := &File{path: name, data: data, hdr: h, index: make(map[string]int, len(h.Tensors)), names: make([]string, len(h.Tensors))}
	for i, t := range h.Tensors {
		f.index[t.Name] = i
		f.names[i] = t.Name
	}
	slices.Sort(f.names)
	return f, nil
}
