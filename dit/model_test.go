package dit

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/parity"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// TestPosEmbedMatchesCheckpoint compares the computed DiT position embedding with the
// pos_embed the official code stored in the golden weights (numpy float64 sin/cos
// rounded to float32; Go's float64 sin/cos may differ in the last float64 bit, which
// can move the float32 result by one ulp, ≤ 6e-8 for |value| ≤ 1).
func TestPosEmbedMatchesCheckpoint(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "dit")
	cfg := loadConfig(t, filepath.Join(dir, "config.json")).(DiTConfig)
	m, err := NewDiT(cfg, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	w := parity.Open(t, filepath.Join(dir, "weights.safetensors"))
	want := parity.Read(t, w, "pos_embed")
	defer want.Release()
	if d := golden.Compare(m.PosEmbed.Float32s(), want.Float32s()); d.MaxAbs > 6e-8 {
		t.Fatalf("pos_embed: %v", d)
	}
	// PixArt's formula with base = grid and scale 1 is DiT's; scale 2 halves positions.
	g := cfg.Grid()
	if !slices.Equal(sinCosPosEmbed(64, g, g, float64(g), 1), sinCosPosEmbed(64, g, g, float64(2*g), 2)) {
		t.Fatal("base 2g with interpolation 2 should equal base g with interpolation 1")
	}
}

// TestLabelDropout checks DiT's label dropout: reproducible from a seed, about
// DropoutProb of the labels become the null class, none without dropout, and labels
// outside the table are refused naming the label.
func TestLabelDropout(t *testing.T) {
	e := &LabelEmbedder{NumClasses: 10, DropoutProb: 0.1, Table: &nn.Embedding{Weight: tensor.Zeros(11, 4)}}
	defer e.Table.Weight.Release()
	labels := make([]int, 10000)
	for i := range labels {
		labels[i] = i % 10
	}
	a := e.Drop(labels, rand.New(rand.NewPCG(5, 6)))
	b := e.Drop(labels, rand.New(rand.NewPCG(5, 6)))
	if !slices.Equal(a, b) {
		t.Fatal("label dropout differs for the same seed")
	}
	null, err := e.Null()
	if err != nil || null != 10 {
		t.Fatalf("Null() = %d, %v", null, err)
	}
	dropped := 0
	for i, y := range a {
		switch y {
		case null:
			dropped++
		case labels[i]:
		default:
			t.Fatalf("label %d became %d", labels[i], y)
		}
	}
	// Binomial(10000, 0.1): standard deviation 30, so ±150 is five of them.
	if dropped < 850 || dropped > 1150 {
		t.Fatalf("%d of 10000 labels dropped, want about 1000", dropped)
	}
	out, err := e.Forward([]int{3, null})
	if err != nil {
		t.Fatal(err)
	}
	out.Release()
	if _, err := e.Forward([]int{11}); err == nil || !strings.Contains(err.Error(), "label 11") {
		t.Fatalf("out-of-range label: %v", err)
	}
	e.DropoutProb = 0
	if !slices.Equal(e.Drop(labels, rand.New(rand.NewPCG(5, 6))), labels) {
		t.Fatal("dropout 0 changed labels")
	}
	if _, err := e.Null(); err == nil {
		t.Fatal("Null() without a null class succeeded")
	}
}

// TestDiTS2Forward runs the dit-s-2 preset (33M parameters) on one 32×32 latent under
// NoGrad: the output has the right shape and, with DiT's adaLN-Zero initialisation
// (zero final layer), is exactly zero; nothing is saved and no bytes stay live.
func TestDiTS2Forward(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 33M-parameter model")
	}
	base := tensor.CPU.Stats().Live
	m, err := New(Presets["dit-s-2"], 7)
	if err != nil {
		t.Fatal(err)
	}
	d := m.(*DiT)
	x := tensor.Full(0.5, 1, 4, 32, 32)
	tensor.NoGrad(func() {
		out, err := d.Forward(x, []float32{500}, []int{207})
		if err != nil {
			t.Fatal(err)
		}
		defer out.Release()
		if !slices.Equal(out.Shape(), []int{1, 8, 32, 32}) {
			t.Fatalf("output shape %v", out.Shape())
		}
		for i, v := range out.Data() {
			if v != 0 {
				t.Fatalf("adaLN-Zero output[%d] = %g, want 0", i, v)
			}
		}
	})
	if _, err := d.Forward(x, []float32{1}, []int{1000, 1}); err == nil {
		t.Fatal("Forward accepted 2 labels for a batch of 1")
	}
	if _, err := d.Forward(x, []float32{1}, []int{1001}); err == nil || !strings.Contains(err.Error(), "1001") {
		t.Fatalf("label 1001: %v", err)
	}
	wrong := tensor.Zeros(1, 4, 16, 16)
	if _, err := d.Forward(wrong, []float32{1}, []int{1}); err == nil || !strings.Contains(err.Error(), "input_size") {
		t.Fatalf("16×16 latent: %v", err)
	}
	tensor.Release(x, wrong)
	m.Release()
	if s, live := tensor.SavedBytes(), tensor.CPU.Stats().Live; s != 0 || live != base {
		t.Fatalf("saved %d, live %d bytes after release; want 0 and %d", s, live, base)
	}
}

// TestPixArtAdditionalConditions builds a small PixArt-α with the 1024 px model's
// resolution and aspect-ratio embedders and checks the conditioning against the
// pieces computed one by one: timestep MLP + [res(height) | res(width) | ar(ratio)].
// It also runs a non-square latent (the position table is recomputed for that grid),
// refuses a missing SizeCond, and backpropagates into the size embedders.
func TestPixArtAdditionalConditions(t *testing.T) {
	c := Presets["pixart-alpha-1024"].(PixArtConfig)
	c.NumLayers, c.NumAttentionHeads, c.AttentionHeadDim, c.CrossAttentionDim, c.CaptionChannels = 1, 2, 12, 24, 8
	base := tensor.CPU.Stats().Live
	m, err := NewPixArt(c, rand.New(rand.NewPCG(9, 9)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		m.Release()
		if live := tensor.CPU.Stats().Live; live != base {
			t.Errorf("live %d bytes after release, want %d", live, base)
		}
	}()
	ts := []float32{10, 900}
	size := &SizeCond{Resolution: [][2]float32{{1024, 768}, {512, 1024}}, AspectRatio: []float32{0.75, 2}}
	if _, err := m.AdaLNSingle.Emb.Forward(ts, nil); err == nil || !strings.Contains(err.Error(), "aspect ratio") {
		t.Fatalf("no SizeCond: %v", err)
	}
	tensor.NoGrad(func() {
		got, err := m.AdaLNSingle.Emb.Forward(ts, size)
		if err != nil {
			t.Fatal(err)
		}
		defer got.Release()
		e := m.AdaLNSingle.Emb
		embed := func(mlp *nn.TimestepMLP, v []float32) []float32 {
			f := timestepFeatures(v)
			o := mlp.Forward(f)
			defer tensor.Release(f, o)
			return o.Float32s()
		}
		d, s := c.Inner(), c.Inner()/3
		temb := embed(e.TimestepEmbedder, ts)
		for n := range ts {
			h := embed(e.ResolutionEmbedder, []float32{size.Resolution[n][0]})
			w := embed(e.ResolutionEmbedder, []float32{size.Resolution[n][1]})
			ar := embed(e.AspectRatioEmbedder, []float32{size.AspectRatio[n]})
			want := slices.Concat(h, w, ar)
			for j := range d {
				want[j] += temb[n*d+j]
			}
			// Same float32 operations in the same order: equal up to summation order.
			if diff := golden.Compare(got.Data()[n*d:(n+1)*d], want); diff.MaxRel > 1e-6 {
				t.Fatalf("sample %d conditioning: %v (D/3 = %d)", n, diff, s)
			}
		}
	})

	x := tensor.Full(0.1, 2, 4, 8, 12).SetRequiresGrad(true) // a 4×6 patch grid, not the 64×64 of sample_size
	caption := tensor.Full(0.2, 2, 3, c.CaptionChannels)
	defer tensor.Release(x, caption)
	out, err := m.Forward(x, ts, caption, []int{1, 1, 0, 1, 0, 0}, size)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.Shape(), []int{2, 8, 8, 12}) {
		t.Fatalf("output shape %v", out.Shape())
	}
	g := tensor.Full(1, out.Shape()...)
	tensor.BackwardWith([]*tensor.Tensor{out}, []*tensor.Tensor{g})
	tensor.Release(out, g)
	for _, v := range m.AdaLNSingle.Emb.ResolutionEmbedder.Linear1.Weight.Grad().Data() {
		if math.IsNaN(float64(v)) {
			t.Fatal("NaN gradient")
		}
	}
	if n := nonZero(m.AdaLNSingle.Emb.AspectRatioEmbedder.Linear2.Weight.Grad().Data()); n == 0 {
		t.Fatal("no gradient reached the aspect-ratio embedder")
	}
	x.ZeroGrad()
	for _, p := range m.Params("") {
		p.T().ZeroGrad()
	}
	if _, err := m.Forward(x, ts, caption, []int{1, 1, 2, 1, 0, 0}, size); err == nil || !strings.Contains(err.Error(), "mask value 2") {
		t.Fatalf("bad mask: %v", err)
	}
	if _, err := m.Forward(x, ts, caption, nil, nil); err == nil {
		t.Fatal("Forward without SizeCond succeeded on a model with additional conditions")
	}
}

func nonZero(v []float32) int {
	n := 0
	for _, x := range v {
		if x != 0 {
			n++
		}
	}
	return n
}

// TestPixArtPooledProjection checks the optional pooled caption input: the parameter
// count matches the config's, the pooled embedding changes the output, and a missing
// or misshapen one is refused.
func TestPixArtPooledProjection(t *testing.T) {
	c := Presets["tiny-pixart"].(PixArtConfig)
	c.PooledProjectionDim = 32
	m, err := NewPixArt(c, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	if total, _ := nn.CountParams(m); total != c.NumParams() {
		t.Fatalf("%d parameters, the config counts %d", total, c.NumParams())
	}
	for _, q := range m.Params("") { // a trained model: no zero-initialised outputs
		for i := range q.T().Data() {
			q.T().Data()[i] += float32(i%7-3) * 0.01
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	x, capt := randn(rng, 2, 3, 32, 32), randn(rng, 2, 5, 32)
	p1, p2 := randn(rng, 2, 32), randn(rng, 2, 32)
	defer tensor.Release(x, capt, p1, p2)
	var a, b *tensor.Tensor
	tensor.NoGrad(func() {
		a, err = m.ForwardPooled(x, []float32{10, 500}, capt, nil, p1, nil)
		if err == nil {
			b, err = m.ForwardPooled(x, []float32{10, 500}, capt, nil, p2, nil)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tensor.Release(a, b)
	diff := 0.0
	for i, v := range a.Data() {
		diff = math.Max(diff, math.Abs(float64(v-b.Data()[i])))
	}
	if diff < 1e-3 {
		t.Fatalf("the pooled embedding does not reach the output (max diff %g)", diff)
	}
	if _, err := m.Forward(x, []float32{10, 500}, capt, nil, nil); err == nil || !strings.Contains(err.Error(), "pooled_projection_dim") {
		t.Fatalf("a missing pooled embedding: %v", err)
	}
}

func randn(rng *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.Zeros(shape...)
	for i := range t.Data() {
		t.Data()[i] = float32(rng.NormFloat64())
	}
	return t
}
