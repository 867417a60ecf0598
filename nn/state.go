package nn

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"unsafe"

	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// LoadOptions control LoadFile.
type LoadOptions struct {
	// Prefix is prepended to every parameter name to form the file key
	// ("model.diffusion_model." for a single-file checkpoint). Keys without it are
	// ignored, so one file can hold several components.
	Prefix string
	// KeepHalf keeps BF16 and F16 tensors in 16-bit storage for parameters that are
	// frozen (they are widened inside the kernels). Trainable parameters and 1-D
	// tensors (norms, biases) are always widened to F32.
	KeepHalf bool
	// Mapped, with KeepHalf, makes the kept 16-bit tensors views of the source's
	// bytes instead of copies: weights load lazily from a memory-mapped file, which
	// must then stay open while the model lives.
	Mapped bool
	// AllowMissing and AllowUnexpected turn the missing-key and unexpected-key errors off.
	AllowMissing, AllowUnexpected bool
}

// Source is what LoadFrom reads tensors from: a *safetensors.File, or a view of one
// that renames keys (a single-file checkpoint seen under diffusers names).
type Source interface {
	// Path names the file in errors.
	Path() string
	// Names lists the tensor names.
	Names() []string
	// Info describes tensor name and reports whether the source has it.
	Info(name string) (safetensors.TensorInfo, bool)
	// Bytes returns the little-endian bytes of tensor name.
	Bytes(name string) ([]byte, error)
}

// LoadFile loads the parameters of m from a safetensors file, checking that every
// parameter has a key with the same shape and that the file has no other keys under
// the prefix. Errors name the file and the keys, and say what to do.
func LoadFile(m Module, path string, o LoadOptions) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return LoadFrom(m, f, o)
}

// LoadFrom is LoadFile on an open source. It copies what it keeps, so the source may
// be closed afterwards.
func LoadFrom(m Module, f Source, o LoadOptions) error {
	path := f.Path()
	ps := m.Params(o.Prefix)
	want := make(map[string]bool, len(ps))
	var missing []string
	for _, p := range ps {
		want[p.Name] = true
		if _, ok := f.Info(p.Name); !ok {
			missing = append(missing, p.Name)
		}
	}
	var unexpected []string
	for _, name := range f.Names() {
		if strings.HasPrefix(name, o.Prefix) && !want[name] {
			unexpected = append(unexpected, name)
		}
	}
	if len(missing) > 0 && !o.AllowMissing {
		return fmt.Errorf("load %s: %d parameter(s) missing: %s (is this checkpoint for another architecture or config?)",
			path, len(missing), listKeys(missing))
	}
	if len(unexpected) > 0 && !o.AllowUnexpected {
		return fmt.Errorf("load %s: %d unexpected key(s): %s (is this checkpoint for another architecture or config?)",
			path, len(unexpected), listKeys(unexpected))
	}
	// Check every shape before replacing anything, so a bad file changes nothing.
	for _, p := range ps {
		info, ok := f.Info(p.Name)
		if !ok {
			continue
		}
		if !slices.Equal(info.Shape, p.T().Shape()) {
			return fmt.Errorf("load %s: tensor %q: want shape %v, got %v (is this checkpoint for another config?)",
				path, p.Name, p.T().Shape(), info.Shape)
		}
	}
	loaded := make([]*tensor.Tensor, len(ps))
	for i, p := range ps {
		info, ok := f.Info(p.Name)
		if !ok {
			continue
		}
		raw, err := f.Bytes(p.Name)
		if err == nil {
			keep := o.KeepHalf && !p.T().RequiresGrad() && len(info.Shape) > 1
			if keep && o.Mapped {
				loaded[i] = mapped(info.DType, raw, info.Shape)
			}
			if loaded[i] == nil {
				loaded[i], err = fromBytes(info.DType, raw, info.Shape, keep)
			}
		}
		if err != nil {
			tensor.Release(loaded...)
			return fmt.Errorf("load %s: tensor %q: %w", path, p.Name, err)
		}
	}
	for i, p := range ps {
		if loaded[i] == nil {
			continue
		}
		loaded[i].SetRequiresGrad(p.T().RequiresGrad())
		p.T().Release()
		*p.Ptr = loaded[i]
	}
	return nil
}

// listKeys formats up to eight keys and how many more there are.
func listKeys(keys []string) string {
	sort.Strings(keys)
	if len(keys) <= 8 {
		return strings.Join(keys, ", ")
	}
	return fmt.Sprintf("%s, ... and %d more", strings.Join(keys[:8], ", "), len(keys)-8)
}

// littleEndian reports whether this machine stores integers as safetensors does.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// mapped returns a 16-bit tensor aliasing raw, or nil when it cannot: another dtype,
// a big-endian machine, or bytes not aligned for uint16.
func mapped(dt safetensors.DType, raw []byte, shape []int) *tensor.Tensor {
	var t tensor.DType
	switch dt {
	case safetensors.BF16:
		t = tensor.BF16
	case safetensors.F16:
		t = tensor.F16
	default:
		return nil
	}
	if !littleEndian || len(raw) < 2 || uintptr(unsafe.Pointer(&raw[0]))%2 != 0 {
		return nil
	}
	return tensor.FromMappedBits(t, unsafe.Slice((*uint16)(unsafe.Pointer(&raw[0])), len(raw)/2), shape...)
}

// fromBytes converts little-endian safetensors data to a tensor: F32 as is, F64
// narrowed to F32 (reference files), BF16/F16 kept 16-bit when keepHalf, else widened.
func fromBytes(dt safetensors.DType, raw []byte, shape []int, keepHalf bool) (*tensor.Tensor, error) {
	switch dt {
	case safetensors.F32:
		d := make([]float32, len(raw)/4)
		for i := range d {
			d[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return tensor.FromFloat32(d, shape...), nil
	case safetensors.F64:
		d := make([]float32, len(raw)/8)
		for i := range d {
			d[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
		return tensor.FromFloat32(d, shape...), nil
	case safetensors.BF16, safetensors.F16:
		if !keepHalf {
			if m := mapped(dt, raw, shape); m != nil { // widen straight from the file's bytes
				defer m.Release()
				return m.Clone(), nil
			}
		}
		bits := make([]uint16, len(raw)/2)
		for i := range bits {
			bits[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
		t := tensor.FromBits(map[safetensors.DType]tensor.DType{safetensors.BF16: tensor.BF16, safetensors.F16: tensor.F16}[dt], bits, shape...)
		if keepHalf {
			return t, nil
		}
		defer t.Release()
		return t.Clone(), nil
	}
	return nil, fmt.Errorf("dtype %s is not a floating-point weight type (want F32, F16, BF16 or F64)", dt)
}

// ReadTensor reads one tensor of a safetensors file as float32 (F32, F64, BF16, F16).
// It is how tests read reference inputs and outputs.
func ReadTensor(f *safetensors.File, name string) (*tensor.Tensor, error) {
	info, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.Path(), name)
	}
	raw, err := f.Bytes(name)
	if err != nil {
		return nil, err
	}
	t, err := fromBytes(info.DType, raw, info.Shape, false)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path(), name, err)
	}
	return t, nil
}

// ReadInts reads an integer tensor (I64 or I32, as reference files store labels,
// token ids and masks) as []int, with its shape.
func ReadInts(f *safetensors.File, name string) ([]int, []int, error) {
	info, ok := f.Info(name)
	if !ok {
		return nil, nil, fmt.Errorf("%s: no tensor %q", f.Path(), name)
	}
	raw, err := f.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	var out []int
	switch info.DType {
	case safetensors.I64:
		out = make([]int, len(raw)/8)
		for i := range out {
			out[i] = int(int64(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	case safetensors.I32:
		out = make([]int, len(raw)/4)
		for i := range out {
			out[i] = int(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		}
	default:
		return nil, nil, fmt.Errorf("%s: tensor %q is %s, not an integer type (I64 or I32)", f.Path(), name, info.DType)
	}
	return out, info.Shape, nil
}

// SaveFile writes m's parameters (named with prefix) to a safetensors file atomically,
// in their own storage dtype, with optional metadata.
func SaveFile(m Module, path, prefix string, metadata map[string]string) error {
	var ts []safetensors.Tensor
	for _, p := range m.Params(prefix) {
		ts = append(ts, Record(p.Name, p.T()))
	}
	if err := safetensors.Write(path, ts, metadata); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// Record encodes a tensor as a safetensors record in its storage dtype.
func Record(name string, t *tensor.Tensor) safetensors.Tensor {
	r := safetensors.Tensor{Name: name, Shape: slices.Clone(t.Shape())}
	switch t.DType() {
	case tensor.F32:
		r.DType = safetensors.F32
		r.Data = make([]byte, 4*t.Len())
		for i, v := range t.Data() {
			binary.LittleEndian.PutUint32(r.Data[4*i:], math.Float32bits(v))
		}
	default:
		r.DType = safetensors.BF16
		if t.DType() == tensor.F16 {
			r.DType = safetensors.F16
		}
		r.Data = make([]byte, 2*t.Len())
		for i, v := range t.Bits() {
			binary.LittleEndian.PutUint16(r.Data[2*i:], v)
		}
	}
	return r
}
