package textenc

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/internal/parity"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// check compares got with the reference tensor name and releases the reference.
func check(t *testing.T, f *safetensors.File, name string, got *tensor.Tensor, tol float64) {
	t.Helper()
	want := parity.Read(t, f, name)
	defer want.Release()
	if !slices.Equal(got.Shape(), want.Shape()) {
		t.Fatalf("%s: shape %v, want %v", name, got.Shape(), want.Shape())
	}
	d := golden.Compare(got.Float32s(), want.Float32s())
	if d.MaxRel > tol {
		t.Errorf("%s: %v exceeds %.0e", name, d, tol)
	} else {
		t.Logf("%s: %v", name, d)
	}
}

// TestCLIPTextParity runs the Hugging Face-named CLIP text transformer against the
// openai/transformers reference: last hidden state, pooled output, projected
// embeddings, clip skip (hidden_states), gradients with respect to the token
// embeddings, and every parameter gradient. The config comes from config.json.
func TestCLIPTextParity(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "clip_text")
	cfg, err := LoadCLIPConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewCLIPText(cfg, rand.New(rand.NewPCG(1, 1)), true)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.ReleaseParams(m)
	for _, file := range []string{"weights_hf.safetensors", "text_projection_hf.safetensors"} {
		if err := nn.LoadFile(m, filepath.Join(dir, file), nn.LoadOptions{AllowMissing: true}); err != nil {
			t.Fatal(err)
		}
	}
	io := parity.Open(t, filepath.Join(dir, "io.safetensors"))
	flat, shape, err := nn.ReadInts(io, "input_ids")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([][]int, shape[0])
	for i := range ids {
		ids[i] = flat[i*shape[1] : (i+1)*shape[1]]
	}
	gLast, gEmb := parity.Read(t, io, "g_last_hidden_state"), parity.Read(t, io, "g_text_embeds")
	defer tensor.Release(gLast, gEmb)
	paramsLive := tensor.CPU.Stats().Live

	// Pass 1: from token embeddings as a leaf, for grad_inputs_embeds. Outputs are
	// within 1e-5 of max|ref| (float32 vs float64 differ by ~5e-7 here, per MANIFEST),
	// gradients within 1e-4 (the bound).
	var e *tensor.Tensor
	tensor.NoGrad(func() { e, err = m.Embed(ids) })
	if err != nil {
		t.Fatal(err)
	}
	e.SetRequiresGrad(true)
	out, err := m.ForwardEmbeds(e, ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	check(t, io, "last_hidden_state", out.LastHidden, 1e-5)
	check(t, io, "pooled_output", out.Pooled, 1e-5)
	check(t, io, "text_embeds", out.TextEmbeds, 1e-5)
	tensor.BackwardWith([]*tensor.Tensor{out.LastHidden, out.TextEmbeds}, []*tensor.Tensor{gLast, gEmb})
	check(t, io, "grad_inputs_embeds", e.Grad(), 1e-4)
	out.Release()
	e.Release()
	for _, p := range m.Params("") {
		p.T().ZeroGrad()
	}

	// Pass 2: from ids, for every parameter gradient (token embedding rows sparse).
	out, err = m.Forward(ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	tensor.BackwardWith([]*tensor.Tensor{out.LastHidden, out.TextEmbeds}, []*tensor.Tensor{gLast, gEmb})
	out.Release()
	if s := tensor.SavedBytes(); s != 0 {
		t.Fatalf("%d saved bytes after backward", s)
	}
	pg := parity.Open(t, filepath.Join(dir, "param_grads_hf.safetensors"))
	rowIDs, _, err := nn.ReadInts(pg, "sparse_rows.ids")
	if err != nil {
		t.Fatal(err)
	}
	// Each gradient is compared relative to its own max|value|, floored at 1e-3 of
	// the largest parameter gradient: the k_proj biases' gradients are analytically
	// zero (softmax ignores a shift shared by all keys), so both sides hold rounding
	// noise only, which no relative bound on the noise itself can judge.
	type pair struct {
		name      string
		got, want []float32
	}
	var pairs []pair
	var globalMax float64
	for _, p := range m.Params("") {
		g := p.T().Grad()
		if g == nil {
			t.Fatalf("%s: no gradient", p.Name)
		}
		got, name := g.Float32s(), p.Name
		if name == "text_model.embeddings.token_embedding.weight" {
			w := cfg.HiddenSize
			var rows []float32
			for _, id := range rowIDs {
				rows = append(rows, got[id*w:(id+1)*w]...)
			}
			got, name = rows, "sparse_rows."+name
		}
		want := parity.Read(t, pg, name)
		pairs = append(pairs, pair{name, got, want.Float32s()})
		want.Release()
		globalMax = max(globalMax, golden.Compare(got, pairs[len(pairs)-1].want).WantMax)
	}
	worst, worstName := 0.0, ""
	for _, p := range pairs {
		d := golden.Compare(p.got, p.want)
		rel := d.MaxAbs / max(d.WantMax, 1e-3*globalMax)
		if rel > worst {
			worst, worstName = rel, fmt.Sprintf("%s: %.3g of the floored scale (%v)", p.name, rel, d)
		}
		if rel > 1e-4 {
			t.Errorf("grad %s: %v exceeds 1e-4", p.name, d)
		}
	}
	t.Logf("worst parameter gradient: %s", worstName)
	for _, p := range m.Params("") {
		p.T().ZeroGrad()
	}
	if l := tensor.CPU.Stats().Live; l != paramsLive {
		t.Fatalf("live bytes %d after backward and release, want %d", l, paramsLive)
	}

	// Clip skip 2 = final norm of hidden_states[L-1].
	tensor.NoGrad(func() { out, err = m.Forward(ids, 2) })
	if err != nil {
		t.Fatal(err)
	}
	h := parity.Read(t, io, fmt.Sprintf("hidden_states.%d", cfg.NumHiddenLayers-1))
	var want *tensor.Tensor
	tensor.NoGrad(func() { want = m.FinalLN.Forward(h) })
	d := golden.Compare(out.LastHidden.Float32s(), want.Float32s())
	if d.MaxRel > 1e-5 {
		t.Errorf("clip skip 2: %v", d)
	}
	tensor.Release(h, want)
	out.Release()
}

func TestByteTokenizer(t *testing.T) {
	tok := ByteTokenizer{Length: 6}
	got := tok.Encode([]string{"ab", "abcdefgh", ""})
	want := [][]int{{256, 'a', 'b', 257, 257, 257}, {256, 'a', 'b', 'c', 'd', 257}, {256, 257, 257, 257, 257, 257}}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("Encode[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

// TestTinyCLIPPoolsAtEnd checks that the tiny encoder pools at the first end token
// (not the largest id) and that its outputs have the expected shapes.
func TestTinyCLIPPoolsAtEnd(t *testing.T) {
	m, err := NewCLIPText(TinyCLIPConfig(), rand.New(rand.NewPCG(2, 2)), false)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.ReleaseParams(m)
	ids := ByteTokenizer{Length: 32}.Encode([]string{"a red fox", "zzz"})
	var out CLIPOutput
	tensor.NoGrad(func() { out, err = m.Forward(ids, 0) })
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	if !slices.Equal(out.LastHidden.Shape(), []int{2, 32, 32}) || !slices.Equal(out.Pooled.Shape(), []int{2, 32}) {
		t.Fatalf("shapes %v %v", out.LastHidden.Shape(), out.Pooled.Shape())
	}
	h := out.LastHidden.Float32s()
	for n, end := range []int{10, 4} { // start + 9 bytes, start + 3 bytes
		if !slices.Equal(out.Pooled.Float32s()[n*32:(n+1)*32], h[(n*32+end)*32:(n*32+end+1)*32]) {
			t.Fatalf("sequence %d not pooled at its end token %d", n, end)
		}
	}
	if _, err := m.Forward([][]int{{1, 2}, {1}}, 0); err == nil {
		t.Fatal("ragged ids accepted")
	}
	if _, err := m.Forward([][]int{{1, 999}}, 0); err == nil {
		t.Fatal("out-of-vocabulary id accepted")
	}
}
