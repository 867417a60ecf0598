package nn

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// block is a small two-layer module for state-dict tests.
type block struct {
	In  *Linear
	Out *Linear
}

func (b *block) Params(prefix string) []Param {
	return Children(prefix, Child{"proj_in", b.In}, Child{"net.2", b.Out})
}

func newBlock(seed uint64) *block {
	rng := rand.New(rand.NewPCG(seed, 0))
	return &block{In: NewLinear(rng, 5, 7, true), Out: NewLinear(rng, 7, 3, false)}
}

func TestParamsAreCheckpointKeys(t *testing.T) {
	b := newBlock(1)
	defer ReleaseParams(b)
	var names []string
	for _, p := range b.Params("model.") {
		names = append(names, p.Name)
	}
	want := []string{"model.proj_in.weight", "model.proj_in.bias", "model.net.2.weight"}
	if !slices.Equal(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	total, trainable := CountParams(b)
	if total != 7*5+7+3*7 || trainable != total {
		t.Fatalf("CountParams = %d, %d", total, trainable)
	}
}

// scaleAdapter is a LinearAdapter with one parameter, as package adapters' are.
type scaleAdapter struct{ s *tensor.Tensor }

func (a *scaleAdapter) Params(prefix string) []Param {
	return Named(prefix, a, Param{Name: "scale", Ptr: &a.s})
}

func (a *scaleAdapter) ForwardLinear(l *Linear, x *tensor.Tensor) *tensor.Tensor { return l.Plain(x) }

// TestNeedsGrad checks that NeedsGrad sees trainable parameters of the model and of
// adapters attached to its layers, and nothing when all are frozen.
func TestNeedsGrad(t *testing.T) {
	for _, tc := range []struct {
		name                string
		trainable, adapted  bool
		adapterTrains, want bool
	}{
		{"frozen", false, false, false, false},
		{"trainable", true, false, false, true},
		{"frozen with a frozen adapter", false, true, false, false},
		{"frozen with a trainable adapter", false, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlock(3)
			defer ReleaseParams(b)
			SetTrainable(b, tc.trainable)
			if tc.adapted {
				a := &scaleAdapter{s: tensor.Zeros(1).SetRequiresGrad(tc.adapterTrains)}
				defer a.s.Release()
				b.Out.Adapter = a
			}
			if got := NeedsGrad(b); got != tc.want {
				t.Fatalf("NeedsGrad = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSaveLoadRoundTrip saves F32, BF16 and F16 parameters and loads them back bit
// for bit; loading with KeepHalf keeps frozen matrices 16-bit.
func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.F16} {
		t.Run(dt.String(), func(t *testing.T) {
			src := newBlock(2)
			defer ReleaseParams(src)
			w := src.In.Weight.Convert(dt)
			src.In.Weight.Release()
			src.In.Weight = w
			path := filepath.Join(dir, dt.String()+".safetensors")
			if err := SaveFile(src, path, "", map[string]string{"format": "pt"}); err != nil {
				t.Fatal(err)
			}
			dst := newBlock(3)
			defer ReleaseParams(dst)
			SetTrainable(dst, false)
			if err := LoadFile(dst, path, LoadOptions{KeepHalf: true}); err != nil {
				t.Fatal(err)
			}
			if dst.In.Weight.DType() != dt {
				t.Fatalf("loaded weight is %v, want %v kept", dst.In.Weight.DType(), dt)
			}
			for i, p := range src.Params("") {
				q := dst.Params("")[i]
				if !slices.Equal(p.T().Float32s(), q.T().Float32s()) {
					t.Fatalf("%s differs after round trip", p.Name)
				}
			}
		})
	}
}

func TestLoadErrorsNameKeys(t *testing.T) {
	dir := t.TempDir()
	src := newBlock(4)
	defer ReleaseParams(src)
	path := filepath.Join(dir, "a.safetensors")
	if err := SaveFile(src, path, "", nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		dst  Module
		o    LoadOptions
		want []string
	}{
		{"missing", &block{In: NewLinear(rand.New(rand.NewPCG(1, 1)), 5, 7, true), Out: NewLinear(rand.New(rand.NewPCG(1, 1)), 7, 3, true)}, LoadOptions{}, []string{"missing", "net.2.bias", path}},
		{"unexpected", &block{In: NewLinear(rand.New(rand.NewPCG(1, 1)), 5, 7, false), Out: NewLinear(rand.New(rand.NewPCG(1, 1)), 7, 3, false)}, LoadOptions{}, []string{"unexpected", "proj_in.bias"}},
		{"shape", &block{In: NewLinear(rand.New(rand.NewPCG(1, 1)), 6, 7, true), Out: NewLinear(rand.New(rand.NewPCG(1, 1)), 7, 3, false)}, LoadOptions{}, []string{"proj_in.weight", "[7 6]", "[7 5]"}},
		{"prefix", newBlock(5), LoadOptions{Prefix: "unet."}, []string{"missing", "unet.proj_in.weight"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer ReleaseParams(c.dst)
			before := c.dst.Params("")[0].T().Float32s()
			err := LoadFile(c.dst, path, c.o)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
			if !slices.Equal(before, c.dst.Params("")[0].T().Float32s()) {
				t.Fatal("a failed load changed the parameters")
			}
		})
	}
	b6 := newBlock(6)
	defer ReleaseParams(b6)
	if err := LoadFile(b6, filepath.Join(dir, "nope.safetensors"), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "nope.safetensors") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

// TestLoadIntoPlaceholders builds a module from placeholders (shapes, no storage) and
// fills it from a file: no memory before loading, the file's values after, and a
// placeholder left unloaded panics on use with a message saying so.
func TestLoadIntoPlaceholders(t *testing.T) {
	src := newBlock(11)
	defer ReleaseParams(src)
	path := filepath.Join(t.TempDir(), "b.safetensors")
	if err := SaveFile(src, path, "", nil); err != nil {
		t.Fatal(err)
	}
	live := tensor.CPU.Stats().Live
	b := PlaceholderBuilder()
	dst := &block{In: b.Linear(5, 7, true), Out: b.Linear(7, 3, false)}
	if tensor.CPU.Stats().Live != live {
		t.Fatal("placeholders allocated storage")
	}
	if err := LoadFile(dst, path, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	defer ReleaseParams(dst)
	for i, p := range src.Params("") {
		if !slices.Equal(p.T().Float32s(), dst.Params("")[i].T().Float32s()) {
			t.Fatalf("%s differs after loading into placeholders", p.Name)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "placeholder") {
			t.Fatalf("unloaded placeholder: %v", r)
		}
	}()
	tensor.Placeholder(2, 2).Data()
}

// TestLoadMapped: with KeepHalf and Mapped, a frozen BF16 matrix loads as a view of
// the mapped file (no copy, counted live while it lives, never pooled) with the file's
// values, and live bytes return to the baseline when it is released.
func TestLoadMapped(t *testing.T) {
	src := newBlock(12)
	defer ReleaseParams(src)
	w := src.In.Weight.Convert(tensor.BF16)
	src.In.Weight.Release()
	src.In.Weight = w
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := SaveFile(src, path, "", nil); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base := tensor.CPU.Stats()
	b := PlaceholderBuilder()
	dst := &block{In: b.Linear(5, 7, true), Out: b.Linear(7, 3, false)}
	if err := LoadFrom(dst, f, LoadOptions{KeepHalf: true, Mapped: true}); err != nil {
		t.Fatal(err)
	}
	if dst.In.Weight.DType() != tensor.BF16 || !slices.Equal(dst.In.Weight.Float32s(), src.In.Weight.Float32s()) {
		t.Fatalf("mapped weight %v differs", dst.In.Weight.DType())
	}
	raw, _ := f.Bytes("proj_in.weight")
	if &dst.In.Weight.Bits()[0] != (*uint16)(unsafe.Pointer(&raw[0])) {
		t.Fatal("the weight is a copy, not a view of the mapped file")
	}
	ReleaseParams(dst)
	if s := tensor.CPU.Stats(); s.Live != base.Live || s.Pooled > base.Pooled+4*int64(7+3*7) {
		t.Fatalf("after release: live %d (want %d), pooled %d (was %d)", s.Live, base.Live, s.Pooled, base.Pooled)
	}
}
