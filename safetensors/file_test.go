package safetensors

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/golden"
)

// le returns the little-endian bytes of vals, which must be fixed-size.
func le(vals any) []byte {
	b, err := binary.Append(nil, binary.LittleEndian, vals)
	if err != nil {
		panic(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	tensors := []Tensor{
		{Name: "f32", DType: F32, Shape: []int{2, 3}, Data: le([]float32{1, -2, 3.5, float32(math.Inf(1)), 0, math.MaxFloat32})},
		// F16 and BF16 are raw bit patterns: 1.0, -2.0, NaN, smallest subnormal.
		{Name: "f16", DType: F16, Shape: []int{4}, Data: le([]uint16{0x3c00, 0xc000, 0x7e00, 0x0001})},
		// An odd byte count (3 × 2) so the next tensor would be misaligned
		// without Write's ordering by element size.
		{Name: "bf16", DType: BF16, Shape: []int{3}, Data: le([]uint16{0x3f80, 0xc000, 0x7fc0})},
		{Name: "f64", DType: F64, Shape: []int{1, 2}, Data: le([]float64{math.Pi, -math.SmallestNonzeroFloat64})},
		{Name: "scalar", DType: I64, Shape: []int{}, Data: le([]int64{-42})},
		{Name: "empty", DType: F32, Shape: []int{0, 3}, Data: nil},
		{Name: "mask", DType: BOOL, Shape: []int{3}, Data: []byte{1, 0, 1}},
		{Name: "a \"quoted\" <name> & é", DType: U8, Shape: []int{1}, Data: []byte{7}},
	}
	md := map[string]string{"format": "pt", "note": "<&> \"é\"\n"}

	for _, tc := range []struct {
		name     string
		tensors  []Tensor
		metadata map[string]string
	}{
		{"with metadata", tensors, md},
		{"no metadata", tensors, nil},
		{"no tensors", nil, md},
		{"empty file", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.safetensors")
			if err := Write(path, tc.tensors, tc.metadata); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()

			if got := f.Metadata(); !maps.Equal(got, tc.metadata) {
				t.Errorf("Metadata = %v, want %v", got, tc.metadata)
			}
			var want []string
			for _, tt := range tc.tensors {
				want = append(want, tt.Name)
			}
			slices.Sort(want)
			if got := f.Names(); !slices.Equal(got, want) {
				t.Errorf("Names = %q, want %q", got, want)
			}
			h := f.Header()
			if h.DataStart%8 != 0 {
				t.Errorf("DataStart = %d, not 8-byte aligned", h.DataStart)
			}
			for _, tt := range tc.tensors {
				info, ok := f.Info(tt.Name)
				if !ok {
					t.Fatalf("Info(%q) missing", tt.Name)
				}
				if info.DType != tt.DType || !slices.Equal(info.Shape, tt.Shape) {
					t.Errorf("%q: got %s %v, want %s %v", tt.Name, info.DType, info.Shape, tt.DType, tt.Shape)
				}
				if info.Shape == nil {
					t.Errorf("%q: Shape is nil, want empty", tt.Name)
				}
				// Write orders by element size, so every tensor is aligned
				// to its element size within the file.
				if (h.DataStart+info.Offsets[0])%int64(tt.DType.Size()) != 0 {
					t.Errorf("%q: file offset %d not aligned to %d", tt.Name, h.DataStart+info.Offsets[0], tt.DType.Size())
				}
				b, err := f.Bytes(tt.Name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, tt.Data) {
					t.Errorf("%q: bytes = %x, want %x", tt.Name, b, tt.Data)
				}
			}

			// ReadHeader agrees with Open.
			rh, err := ReadHeader(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rh, h) {
				t.Errorf("ReadHeader = %+v, Open header = %+v", rh, h)
			}

			// Writing the same tensors in another order gives the same file.
			rev := slices.Clone(tc.tensors)
			slices.Reverse(rev)
			path2 := filepath.Join(t.TempDir(), "y.safetensors")
			if err := Write(path2, rev, tc.metadata); err != nil {
				t.Fatal(err)
			}
			b1, _ := os.ReadFile(path)
			b2, _ := os.ReadFile(path2)
			if !bytes.Equal(b1, b2) {
				t.Error("file depends on the order of tensors")
			}
		})
	}
}

func TestWriteLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	err := Write(path, []Tensor{
		{Name: "b", DType: U8, Shape: []int{1}, Data: []byte{1}},
		{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{2}},
		{Name: "c", DType: F16, Shape: []int{1}, Data: []byte{3, 4}},
		{Name: "d", DType: I64, Shape: []int{}, Data: make([]byte, 8)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ReadHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ti := range h.Tensors {
		got = append(got, ti.Name)
	}
	// Element size descending, then name.
	if want := []string{"d", "c", "a", "b"}; !slices.Equal(got, want) {
		t.Errorf("data order %q, want %q", got, want)
	}
}

func TestBytesErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.safetensors")
	var tensors []Tensor
	for _, n := range []string{"down.0.weight", "down.0.bias", "down.1.weight", "up.0.weight", "mid.attn.qkv"} {
		tensors = append(tensors, Tensor{Name: n, DType: F32, Shape: []int{1}, Data: make([]byte, 4)})
	}
	if err := Write(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		want []string // Fragments of the error.
	}{
		{"down.0.weigth", []string{`did you mean "down.0.weight"`}},
		{"down.0", []string{`"down.0.weight"`, `"down.0.bias"`}},
		{"zzzzzzzzzzzzzzzzzzzzz", []string{"the file has 5 tensors"}},
	} {
		t.Run(tc.key, func(t *testing.T) {
			_, err := f.Bytes(tc.key)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, w := range append(tc.want, path, `"`+tc.key+`"`) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Bytes("up.0.weight"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Bytes after Close: err = %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenNotRegular(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Open(folder): err = %v", err)
	}
	if _, err := ReadHeader(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("ReadHeader(folder): err = %v", err)
	}
	missing := filepath.Join(dir, "missing.safetensors")
	if _, err := Open(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Open(missing): err = %v", err)
	}
}

// TestGolden opens every reference file: they were written by the Python
// library, so they must all validate, and every tensor's bytes must have
// the length its dtype and shape imply.
func TestGolden(t *testing.T) {
	root := golden.Dir(t)
	var files, tensors int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".safetensors") {
			return err
		}
		files++
		f, err := Open(path)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer f.Close()
		rh, err := ReadHeader(path)
		if err != nil {
			t.Error(err)
		} else if !reflect.DeepEqual(rh, f.Header()) {
			t.Errorf("%s: ReadHeader and Open disagree", path)
		}
		for _, name := range f.Names() {
			info, _ := f.Info(name)
			b, err := f.Bytes(name)
			if err != nil {
				t.Error(err)
				continue
			}
			if want := info.NumElements() * int64(info.DType.Size()); int64(len(b)) != want {
				t.Errorf("%s: %q: %d bytes, want %d", path, name, len(b), want)
			}
			tensors++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no .safetensors files under %s", root)
	}
	t.Logf("opened %d files with %d tensors under %s", files, tensors, root)
}
