package adapters

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// block is a small attention-shaped model: q, k and v read the same input.
type block struct {
	Q, K, V, Out, FF1, FF2 *nn.Linear
	Conv                   *nn.Conv2d
}

const dim, hidden = 12, 20

func newBlock(seed uint64) *block {
	rng := rand.New(rand.NewPCG(seed, 1))
	return &block{
		Q: nn.NewLinear(rng, dim, dim, false), K: nn.NewLinear(rng, dim, dim, false), V: nn.NewLinear(rng, dim, dim, false),
		Out: nn.NewLinear(rng, dim, dim, true), FF1: nn.NewLinear(rng, dim, hidden, true), FF2: nn.NewLinear(rng, hidden, dim, true),
		Conv: nn.NewConv2d(rng, 3, 5, 3, 1, 1, 1, true),
	}
}

func (b *block) Params(prefix string) []nn.Param {
	return nn.Children(prefix, nn.Child{Name: "attn.to_q", M: b.Q}, nn.Child{Name: "attn.to_k", M: b.K}, nn.Child{Name: "attn.to_v", M: b.V},
		nn.Child{Name: "attn.to_out.0", M: b.Out}, nn.Child{Name: "ff.net.0.proj", M: b.FF1}, nn.Child{Name: "ff.net.2", M: b.FF2},
		nn.Child{Name: "resnets.0.conv1", M: b.Conv})
}

// forward: y = out(q ⊙ k + v) then ff2(ff1(y)); the conv runs on img.
func (b *block) forward(x, img *tensor.Tensor) (*tensor.Tensor, *tensor.Tensor) {
	q, k, v := b.Q.Forward(x), b.K.Forward(x), b.V.Forward(x)
	qk := tensor.Mul(q, k)
	s := tensor.Add(qk, v)
	o := b.Out.Forward(s)
	h := b.FF1.Forward(o)
	y := b.FF2.Forward(h)
	tensor.Release(q, k, v, qk, s, o, h)
	return y, b.Conv.Forward(img)
}

func randT(rng *rand.Rand, shape ...int) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return tensor.FromFloat32(v, shape...)
}

// perturb gives every adapter tensor random values, so that ΔW ≠ 0 and every
// gradient path is exercised (B = 0 at init would hide dA).
func perturb(s *Set, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 9))
	for _, t := range s.Trainable() {
		for i := range t.Data() {
			t.Data()[i] = float32(rng.NormFloat64()) * 0.3
		}
	}
}

type result struct {
	out   []float32
	grads map[string][]float32
}

// run injects c into a fresh block, runs forward and backward with fixed inputs and
// cotangents, and returns outputs and every gradient (adapters and inputs).
func run(t *testing.T, c Config, targets Targets, tokens int) result {
	t.Helper()
	b := newBlock(1)
	defer nn.ReleaseParams(b)
	s, err := Inject(b, c, targets)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove()
	perturb(s, 3)
	s.Train(true)
	s.SetStep(7)
	rng := rand.New(rand.NewPCG(5, 5))
	x := randT(rng, 2, tokens, dim).SetRequiresGrad(true)
	img := randT(rng, 2, 3, 5, 6).SetRequiresGrad(true)
	y, z := b.forward(x, img)
	gy, gz := randT(rng, y.Shape()...), randT(rng, z.Shape()...)
	tensor.BackwardWith([]*tensor.Tensor{y, z}, []*tensor.Tensor{gy, gz})
	r := result{out: append(y.Float32s(), z.Float32s()...), grads: map[string][]float32{"x": x.Grad().Float32s(), "img": img.Grad().Float32s()}}
	for _, p := range s.Params() {
		if g := p.T().Grad(); g != nil {
			r.grads[p.Name] = g.Float32s()
		}
	}
	tensor.Release(x, img, y, z, gy, gz)
	return r
}

func maxRel(got, want []float32) float64 {
	var m, d float64
	for i := range want {
		m = math.Max(m, math.Abs(float64(want[i])))
		d = math.Max(d, math.Abs(float64(got[i])-float64(want[i])))
	}
	return d / math.Max(m, 1e-30)
}

// TestFormsAgree: for every kind, the weight and auto forms give the activation form's
// outputs and gradients (dropout 0) within 1e-5 of each tensor's scale: the same sums
// in float32, in a different order.
func TestFormsAgree(t *testing.T) {
	for _, kind := range Kinds {
		for _, tokens := range []int{3, 40} { // auto picks rank-r at 3 tokens, merged at 40
			t.Run(fmt.Sprintf("%s/tokens%d", kind, tokens), func(t *testing.T) {
				c := Config{Kind: kind, Rank: 4, Alpha: 2, Form: Activation, Seed: 11}
				ref := run(t, c, Targets{TargetFull}, tokens)
				for _, f := range []Form{Weight, Auto} {
					c.Form = f
					got := run(t, c, Targets{TargetFull}, tokens)
					if d := maxRel(got.out, ref.out); d > 1e-5 {
						t.Errorf("%s: outputs differ by %.3g", f, d)
					}
					if len(got.grads) != len(ref.grads) {
						t.Fatalf("%s: %d gradients, activation has %d", f, len(got.grads), len(ref.grads))
					}
					for name, g := range ref.grads {
						if d := maxRel(got.grads[name], g); d > 1e-5 {
							t.Errorf("%s: gradient %s differs by %.3g", f, name, d)
						}
					}
				}
			})
		}
	}
}

// TestAutoDropoutMatchesActivation: with input dropout 0.1, auto (rank-r, mask from the
// seed) equals the activation form (mask kept) for the same step.
func TestAutoDropoutMatchesActivation(t *testing.T) {
	for _, kind := range []Kind{LoRA, LoCon} {
		c := Config{Kind: kind, Rank: 3, Form: Activation, Dropout: 0.1, Seed: 4}
		ref := run(t, c, Targets{TargetFull}, 9)
		c.Form = Auto
		got := run(t, c, Targets{TargetFull}, 9)
		if d := maxRel(got.out, ref.out); d > 1e-5 {
			t.Errorf("%s: outputs differ by %.3g", kind, d)
		}
		for name, g := range ref.grads {
			if d := maxRel(got.grads[name], g); d > 1e-5 {
				t.Errorf("%s: gradient %s differs by %.3g", kind, name, d)
			}
		}
	}
}

func TestWeightFormRefusesDropout(t *testing.T) {
	err := Config{Kind: LoRA, Rank: 4, Form: Weight, Dropout: 0.1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "auto") {
		t.Fatalf("weight + dropout: %v", err)
	}
}

// TestSavedBytes checks each kind and form against its formula, for the q, k, v
// Linears reading one input x [N, d] (N = 2·tokens): the weight and auto forms keep x
// once for all three; the activation form keeps what PEFT/LyCORIS keep per adapter.
func TestSavedBytes(t *testing.T) {
	const tokens, r = 7, 4
	n := 2 * tokens
	x4 := int64(4 * n * dim) // x in float32
	for _, c := range []struct {
		kind Kind
		form Form
		p    float64
		want int64
	}{
		{LoRA, Weight, 0, x4},
		{LoRA, Auto, 0, x4},
		{LoRA, Auto, 0.1, x4},
		{LoRA, Activation, 0, x4 + 3*4*int64(n*r)}, // x shared, H per adapter
		{LoRA, Activation, 0.1, 3 * (x4 + int64(n*dim) + 4*int64(n*r))}, // x̃ + byte mask + H per adapter
		{DoRA, Weight, 0, x4},
		{DoRA, Activation, 0, x4 + 3*4*int64(n*r+n*dim+2*dim)}, // + H, the pre-scale output, the scale and the detached norm
		{LoHa, Weight, 0, x4},
		{LoHa, Activation, 0, x4 + 3*4*int64(3*dim*dim)}, // + both products and ΔW per adapter
		{LoKr, Weight, 0, x4},
		{LoKr, Activation, 0, x4 + 3*4*int64(dim*dim)}, // + ΔW (w2 is a full factor at this size)
		{IA3, Weight, 0, x4},
		{IA3, Activation, 0, 3 * 4 * int64(n*dim+dim)}, // the N×d output and 1+l per adapter
	} {
		t.Run(fmt.Sprintf("%s/%s/p%g", c.kind, c.form, c.p), func(t *testing.T) {
			b := newBlock(2)
			defer nn.ReleaseParams(b)
			s, err := Inject(b, Config{Kind: c.kind, Rank: r, Form: c.form, Dropout: c.p, Seed: 1}, Targets{"attn.to_[qkv]"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Remove()
			s.Train(true)
			if len(s.Adapters) != 3 {
				t.Fatalf("%d adapters, want q, k, v", len(s.Adapters))
			}
			rng := rand.New(rand.NewPCG(8, 8))
			x0 := randT(rng, 2, tokens, dim)
			sc := tensor.Full(1, 1).SetRequiresGrad(true)
			x := tensor.Mul(x0, sc) // an activation, as inside a model
			base := tensor.SavedBytes()
			q, k, v := b.Q.Forward(x), b.K.Forward(x), b.V.Forward(x)
			got := tensor.SavedBytes() - base
			if got != c.want {
				t.Errorf("saved %d bytes, want %d (choices %s %s %s)", got, c.want, s.Adapters[0].Choice, s.Adapters[1].Choice, s.Adapters[2].Choice)
			}
			tensor.DropGraph(q, k, v, x)
			tensor.Release(x0, sc, x, q, k, v)
		})
	}
}

// TestSavedBytesConv: LoCon on a convolution reading x [2, 3, 6, 6]: the weight form
// and auto (rank-r under Checkpoint, with or without dropout) keep x alone; the
// activation form keeps x̃ (x itself without dropout; with it, x̃ and its byte mask)
// and H [2, r, 6, 6].
func TestSavedBytesConv(t *testing.T) {
	const r = 2
	n := int64(2 * 3 * 6 * 6)
	h4 := int64(4 * 2 * r * 6 * 6)
	for _, c := range []struct {
		form Form
		p    float64
		want int64
	}{
		{Weight, 0, 4 * n},
		{Auto, 0, 4 * n},
		{Auto, 0.1, 4 * n},
		{Activation, 0, 4*n + h4},
		{Activation, 0.1, 4*n + n + h4}, // x̃, its byte mask and H; the frozen path keeps nothing
	} {
		t.Run(fmt.Sprintf("%s/p%g", c.form, c.p), func(t *testing.T) {
			b := newBlock(2)
			defer nn.ReleaseParams(b)
			s, err := Inject(b, Config{Kind: LoCon, Rank: r, Form: c.form, Dropout: c.p, Seed: 1}, Targets{"resnets.0.conv1"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Remove()
			s.Train(true)
			rng := rand.New(rand.NewPCG(8, 8))
			x0 := randT(rng, 2, 3, 6, 6)
			sc := tensor.Full(1, 1).SetRequiresGrad(true)
			x := tensor.Mul(x0, sc)
			base := tensor.SavedBytes()
			y := b.Conv.Forward(x)
			if got := tensor.SavedBytes() - base; got != c.want {
				t.Errorf("saved %d bytes, want %d (choice %s)", got, c.want, s.Adapters[0].Choice)
			}
			tensor.DropGraph(y, x)
			tensor.Release(x0, sc, x, y)
		})
	}
}

// TestGradCheck compares adapter gradients with central differences in float64 of
// L = Σ y·g, for each kind in the weight form (the activation form is tied to it by
// TestFormsAgree). h = 1e-2 on O(1) values: truncation ~1e-4, float32 noise ~1e-5.
func TestGradCheck(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(string(kind), func(t *testing.T) {
			b := newBlock(3)
			defer nn.ReleaseParams(b)
			s, err := Inject(b, Config{Kind: kind, Rank: 2, Alpha: 3, Form: Weight, Seed: 2}, Targets{"attn.to_q", "resnets.*"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Remove()
			perturb(s, 4)
			// DoRA's gradient treats ‖W + sBA‖ as a constant (detached, as in the
			// paper and PEFT); hold it constant in the differences too.
			for _, a := range s.Adapters {
				if d, ok := a.impl.(*dora); ok {
					tensor.NoGrad(func() {
						v := d.lora.merged(a.baseWeight())
						d.fixedNorm = rowNorms(v, d.m.Shape())
						v.Release()
					})
					defer d.fixedNorm.Release()
				}
			}
			rng := rand.New(rand.NewPCG(6, 6))
			x, img := randT(rng, 1, 3, dim), randT(rng, 1, 3, 4, 4)
			defer tensor.Release(x, img)
			loss := func() float64 {
				var sum float64
				tensor.NoGrad(func() {
					y, z := b.Q.Forward(x), b.Conv.Forward(img)
					for i, v := range y.Data() {
						sum += float64(v) * float64(i%5-2)
					}
					for i, v := range z.Data() {
						sum += float64(v) * float64(i%3-1)
					}
					tensor.Release(y, z)
				})
				return sum
			}
			y, z := b.Q.Forward(x), b.Conv.Forward(img)
			gy, gz := tensor.Zeros(y.Shape()...), tensor.Zeros(z.Shape()...)
			for i := range gy.Data() {
				gy.Data()[i] = float32(i%5 - 2)
			}
			for i := range gz.Data() {
				gz.Data()[i] = float32(i%3 - 1)
			}
			tensor.BackwardWith([]*tensor.Tensor{y, z}, []*tensor.Tensor{gy, gz})
			tensor.Release(y, z, gy, gz)
			const h = 1e-2
			for _, p := range s.Params() {
				w := p.T().Data()
				g := p.T().Grad().Data()
				for i := range w {
					orig := w[i]
					w[i] = orig + h
					lp := loss()
					w[i] = orig - h
					lm := loss()
					w[i] = orig
					num := (lp - lm) / (2 * h)
					if math.Abs(num-float64(g[i])) > 2e-3*math.Max(1, math.Abs(num)) {
						t.Fatalf("%s[%d]: analytic %.6g, numeric %.6g", p.Name, i, g[i], num)
					}
				}
			}
		})
	}
}

func TestTargets(t *testing.T) {
	b := newBlock(4)
	defer nn.ReleaseParams(b)
	for _, c := range []struct {
		targets string
		kind    Kind
		want    int
	}{
		{"attn", LoRA, 4},
		{"attn-mlp", LoRA, 6},
		{"full", LoCon, 7},
		{"full", IA3, 6}, // IA3 skips convolutions
		{"attn,!attn.to_out.0", LoRA, 3},
		{"*.to_v", LoRA, 1},
	} {
		tg, err := ParseTargets(c.targets)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Inject(b, Config{Kind: c.kind, Rank: 2, Form: Auto}, tg)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Adapters) != c.want {
			t.Errorf("--targets %s (%s): %d modules, want %d", c.targets, c.kind, len(s.Adapters), c.want)
		}
		if !strings.Contains(s.Summary(), fmt.Sprintf("%d modules", c.want)) {
			t.Errorf("summary %q", s.Summary())
		}
		s.Remove()
	}
	if _, err := Inject(b, Config{Kind: LoRA, Rank: 2, Form: Auto}, Targets{"nothing.*"}); err == nil {
		t.Fatal("a pattern matching nothing was accepted")
	}
}

// TestSaveLoadMerge: save -> load gives identical tensors and metadata; merging the
// file into a fresh model reproduces the adapted model's output; unmerge restores
// the weights bit for bit; a 0.5 merge lands halfway.
func TestSaveLoadMerge(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(string(kind), func(t *testing.T) {
			dir := t.TempDir()
			b := newBlock(5)
			defer nn.ReleaseParams(b)
			s, err := Inject(b, Config{Kind: kind, Rank: 3, Alpha: 1.5, Form: Auto, Seed: 3}, Targets{TargetFull})
			if err != nil {
				t.Fatal(err)
			}
			perturb(s, 6)
			path := filepath.Join(dir, "a.safetensors")
			if err := Save(s, path, SaveOptions{DType: tensor.F32, Metadata: map[string]string{"ss_seed": "3"}}); err != nil {
				t.Fatal(err)
			}
			f, skipped, err := Load(path)
			if err != nil || len(skipped) > 0 {
				t.Fatal(err, skipped)
			}
			defer f.Release()
			if f.Metadata["ss_seed"] != "3" || f.Metadata["ss_network_dim"] != "3" {
				t.Fatalf("metadata %v", f.Metadata)
			}
			if len(f.Modules) != len(s.Adapters) {
				t.Fatalf("%d modules loaded, %d saved", len(f.Modules), len(s.Adapters))
			}
			for _, m := range f.Modules {
				want := kind
				if kind == LoCon {
					want = LoRA
				}
				if m.Kind != want {
					t.Fatalf("%s loaded as %s", m.Key, m.Kind)
				}
			}
			for _, p := range s.Params() {
				key, suffix := splitKey(p.Name)
				var m *Module
				for _, mm := range f.Modules {
					if mm.Key == key {
						m = mm
					}
				}
				if m == nil || !slices.Equal(m.Tensors[suffix].Float32s(), p.T().Float32s()) {
					t.Fatalf("%s differs after save and load", p.Name)
				}
			}

			rng := rand.New(rand.NewPCG(1, 2))
			x, img := randT(rng, 1, 5, dim), randT(rng, 1, 3, 5, 6)
			defer tensor.Release(x, img)
			var y1, z1 *tensor.Tensor
			tensor.NoGrad(func() { y1, z1 = b.forward(x, img) })
			defer tensor.Release(y1, z1)
			s.Remove()

			fresh := newBlock(5)
			defer nn.ReleaseParams(fresh)
			orig := map[string][]float32{}
			for _, p := range fresh.Params("") {
				orig[p.Name] = p.T().Float32s()
			}
			mg, err := Merge(fresh, []Weighted{{f, 1}})
			if err != nil {
				t.Fatal(err)
			}
			var y2, z2 *tensor.Tensor
			tensor.NoGrad(func() { y2, z2 = fresh.forward(x, img) })
			// Merged weights against the adapter computed on the fly: float32 sums in
			// another order.
			if d := maxRel(append(y2.Float32s(), z2.Float32s()...), append(y1.Float32s(), z1.Float32s()...)); d > 1e-5 {
				t.Errorf("merged model differs from the adapted one by %.3g", d)
			}
			tensor.Release(y2, z2)
			mg.Unmerge()
			for _, p := range fresh.Params("") {
				if !slices.Equal(orig[p.Name], p.T().Float32s()) {
					t.Fatalf("unmerge left %s changed", p.Name)
				}
			}
			// A 0.5 merge lands halfway between the original and the full merge.
			full, err := Merge(fresh, []Weighted{{f, 1}})
			if err != nil {
				t.Fatal(err)
			}
			merged := fresh.Q.Weight.Float32s()
			full.Unmerge()
			half, err := Merge(fresh, []Weighted{{f, 0.5}})
			if err != nil {
				t.Fatal(err)
			}
			got := fresh.Q.Weight.Float32s()
			half.Unmerge()
			want := make([]float32, len(got))
			for i, w0 := range orig["attn.to_q.weight"] {
				want[i] = w0 + 0.5*(merged[i]-w0)
			}
			if d := maxRel(got, want); d > 1e-6 {
				t.Errorf("0.5 merge is off the midpoint by %.3g", d)
			}
		})
	}
}

func TestMergeErrors(t *testing.T) {
	dir := t.TempDir()
	b := newBlock(6)
	defer nn.ReleaseParams(b)
	s, err := Inject(b, Config{Kind: LoRA, Rank: 2, Form: Auto}, Targets{TargetAttn})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "a.safetensors")
	if err := Save(s, path, SaveOptions{Metadata: map[string]string{"ss_base_model_version": "sd_v1"}}); err != nil {
		t.Fatal(err)
	}
	s.Remove()
	f, _, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	// A model whose to_q is wider: the error names the key, the shapes and the base model.
	other := newBlock(6)
	defer nn.ReleaseParams(other)
	other.Q.Weight.Release()
	other.Q.Weight = tensor.Zeros(dim, dim+1)
	_, err = Merge(other, []Weighted{{f, 1}})
	if err == nil || !strings.Contains(err.Error(), "lora_unet_attn_to_q") || !strings.Contains(err.Error(), "sd_v1") {
		t.Fatalf("shape mismatch: %v", err)
	}
}

// TestKohyaHashesAndUnknownKeys: the saved file carries sshs_model_hash (SHA-256 of
// the data after the header, recomputed here from the file) and sshs_legacy_hash;
// unknown keys are refused by Load and skipped by LoadIgnoringUnknown.
func TestKohyaHashesAndUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	b := newBlock(7)
	defer nn.ReleaseParams(b)
	s, err := Inject(b, Config{Kind: LoRA, Rank: 2, Form: Auto}, Targets{TargetAttn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove()
	path := filepath.Join(dir, "a.safetensors")
	if err := Save(s, path, SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	sum := sha256.Sum256(raw[8+n:])
	f, _, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["sshs_model_hash"] != hex.EncodeToString(sum[:]) || len(f.Metadata["sshs_legacy_hash"]) != 8 {
		t.Fatalf("hashes %q %q, data hash %x", f.Metadata["sshs_model_hash"], f.Metadata["sshs_legacy_hash"], sum)
	}
	f.Release()

	recs := []safetensors.Tensor{{Name: "lora_unet_attn_to_q.lora_down.weight", DType: safetensors.F32, Shape: []int{1, 1}, Data: make([]byte, 4)},
		{Name: "lora_unet_attn_to_q.lora_up.weight", DType: safetensors.F32, Shape: []int{1, 1}, Data: make([]byte, 4)},
		{Name: "something_else", DType: safetensors.F32, Shape: []int{1}, Data: make([]byte, 4)}}
	odd := filepath.Join(dir, "odd.safetensors")
	if err := safetensors.Write(odd, recs, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(odd); err == nil || !strings.Contains(err.Error(), "something_else") || !strings.Contains(err.Error(), "--ignore-unknown") {
		t.Fatalf("unknown key: %v", err)
	}
	f, skipped, err := LoadIgnoringUnknown(odd)
	if err != nil || len(f.Modules) != 1 || !slices.Contains(skipped, "something_else") {
		t.Fatalf("ignoring unknown keys: %v %v", skipped, err)
	}
	f.Release()
}

// TestLoadLyCORISStyleFiles writes files by hand from the documented key names and
// shapes (as sd-scripts and LyCORIS write them: F16 tensors, F16 scalar alphas, a conv
// LoHa factor stored [r, in, k, k], LoKr with a full w1 and a low-rank w2, DoRA's
// dora_scale [out, 1], IA3 with a bool on_input) and checks each loads as its kind and
// merges into the model.
func TestLoadLyCORISStyleFiles(t *testing.T) {
	f16 := func(name string, shape ...int) safetensors.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		b := make([]byte, 2*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint16(b[2*i:], tensor.F32ToF16(0.01*float32(i%7-3)))
		}
		return safetensors.Tensor{Name: name, DType: safetensors.F16, Shape: shape, Data: b}
	}
	alpha := func(name string, v float32) safetensors.Tensor {
		b := make([]byte, 2)
		binary.LittleEndian.PutUint16(b, tensor.F32ToF16(v))
		return safetensors.Tensor{Name: name, DType: safetensors.F16, Shape: []int{}, Data: b}
	}
	q, c := "lora_unet_attn_to_q", "lora_unet_resnets_0_conv1"
	files := map[Kind][]safetensors.Tensor{
		LoHa: {f16(q+".hada_w1_a", dim, 2), f16(q+".hada_w1_b", 2, dim), f16(q+".hada_w2_a", dim, 2), f16(q+".hada_w2_b", 2, dim), alpha(q+".alpha", 2),
			f16(c+".hada_w1_a", 5, 2), f16(c+".hada_w1_b", 2, 3, 3, 3), f16(c+".hada_w2_a", 5, 2), f16(c+".hada_w2_b", 2, 3, 3, 3), alpha(c+".alpha", 1)},
		LoKr: {f16(q+".lokr_w1", 3, 3), f16(q+".lokr_w2_a", 4, 2), f16(q+".lokr_w2_b", 2, 4), alpha(q+".alpha", 2)},
		DoRA: {f16(q+".lora_down.weight", 2, dim), f16(q+".lora_up.weight", dim, 2), f16(q+".dora_scale", dim, 1), alpha(q+".alpha", 2)},
		IA3:  {f16(q+".weight", dim), {Name: q + ".on_input", DType: safetensors.BOOL, Shape: []int{}, Data: []byte{0}}},
	}
	for kind, recs := range files {
		t.Run(string(kind), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.safetensors")
			if err := safetensors.Write(path, recs, map[string]string{"ss_network_module": "lycoris.kohya"}); err != nil {
				t.Fatal(err)
			}
			f, _, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Release()
			for _, m := range f.Modules {
				if m.Kind != kind {
					t.Fatalf("%s loaded as %s", m.Key, m.Kind)
				}
			}
			b := newBlock(9)
			defer nn.ReleaseParams(b)
			before := b.Q.Weight.Float32s()
			mg, err := Merge(b, []Weighted{{f, 1}})
			if err != nil {
				t.Fatal(err)
			}
			if slices.Equal(before, b.Q.Weight.Float32s()) {
				t.Fatal("merging changed nothing")
			}
			mg.Unmerge()
		})
	}
}
