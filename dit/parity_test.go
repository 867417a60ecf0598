package dit

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/internal/parity"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// Tolerances, relative to each reference tensor's max|value|. The golden files were
// written in float32 by PyTorch; MANIFEST.json's max_abs_err_f32_vs_f64 puts float32's
// own noise at 2.5e-7 (out) .. 2.5e-7 (input grads) of max|value|, so a correct Go
// float32 implementation lands within a few times that. 1e-5 for outputs and 1e-4 for
// gradients are the bounds the golden README gives (gradients of small parameters
// accumulate over every token and sample, so they get the looser bound).
const (
	outTol  = 1e-5
	gradTol = 1e-4
)

// goldenCase is one model loaded with the golden weights plus what its parity check
// needs.
type goldenCase struct {
	dir     string
	model   Model
	forward func() *tensor.Tensor // runs the recorded forward on the golden inputs
	inputs  map[string]*tensor.Tensor
	release func()
}

// loadDiTCase builds the golden DiT from dit/config.json and weights.safetensors and
// reads its inputs from io.safetensors.
func loadDiTCase(t *testing.T) *goldenCase {
	t.Helper()
	dir := filepath.Join(golden.Dir(t), "dit")
	cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewDiT(cfg.(DiTConfig), rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(filepath.Join(dir, "weights.safetensors"), nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	io := parity.Open(t, filepath.Join(dir, "io.safetensors"))
	x := parity.Read(t, io, "x").SetRequiresGrad(true)
	ts := parity.Read(t, io, "t")
	y, _, err := nn.ReadInts(io, "y")
	if err != nil {
		t.Fatal(err)
	}
	return &goldenCase{dir: dir, model: m, inputs: map[string]*tensor.Tensor{"x": x},
		forward: func() *tensor.Tensor {
			out, err := m.Forward(x, ts.Data(), y)
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
		release: func() { tensor.Release(x, ts); m.Release() }}
}

// loadPixArtCase builds the golden PixArt-α from pixart/config.json and its weights.
func loadPixArtCase(t *testing.T) *goldenCase {
	t.Helper()
	dir := filepath.Join(golden.Dir(t), "pixart")
	cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewPixArt(cfg.(PixArtConfig), rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(filepath.Join(dir, "weights.safetensors"), nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	io := parity.Open(t, filepath.Join(dir, "io.safetensors"))
	x := parity.Read(t, io, "hidden_states").SetRequiresGrad(true)
	ctx := parity.Read(t, io, "encoder_hidden_states").SetRequiresGrad(true)
	ts := parity.Read(t, io, "timestep")
	mask, _, err := nn.ReadInts(io, "encoder_attention_mask")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(mask, 0) {
		t.Fatal("golden encoder_attention_mask masks nothing: the mask path would go untested")
	}
	return &goldenCase{dir: dir, model: m, inputs: map[string]*tensor.Tensor{"hidden_states": x, "encoder_hidden_states": ctx},
		forward: func() *tensor.Tensor {
			out, err := m.Forward(x, ts.Data(), ctx, mask, nil)
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
		release: func() { tensor.Release(x, ctx, ts); m.Release() }}
}

func TestDiTParity(t *testing.T)    { checkParity(t, loadDiTCase(t)) }
func TestPixArtParity(t *testing.T) { checkParity(t, loadPixArtCase(t)) }

// checkParity runs the golden forward, compares out, backpropagates the golden
// cotangent g, compares every input gradient (grad_<input>) and every parameter
// gradient in param_grads.safetensors, and checks that nothing stays saved or live.
func checkParity(t *testing.T, c *goldenCase) {
	defer c.release()
	io := parity.Open(t, filepath.Join(c.dir, "io.safetensors"))
	pg := parity.Open(t, filepath.Join(c.dir, "param_grads.safetensors"))
	g := parity.Read(t, io, "g")
	defer g.Release()
	base := tensor.CPU.Stats().Live

	out := c.forward()
	parity.Expect(t, "out", out, parity.Read(t, io, "out"), outTol)
	tensor.BackwardWith([]*tensor.Tensor{out}, []*tensor.Tensor{g})
	out.Release()
	if s := tensor.SavedBytes(); s != 0 {
		t.Fatalf("%d bytes still saved after backward", s)
	}

	for name, x := range c.inputs {
		if x.Grad() == nil {
			t.Fatalf("no gradient reached input %s", name)
		}
		parity.Expect(t, "grad_"+name, x.Grad(), parity.Read(t, io, "grad_"+name), gradTol)
	}
	params := c.model.Params("")
	if len(params) != len(pg.Names()) {
		t.Errorf("model has %d parameters, param_grads.safetensors %d", len(params), len(pg.Names()))
	}
	var worst golden.Diff
	worstName := ""
	for _, p := range params {
		if p.T().Grad() == nil {
			t.Fatalf("parameter %s got no gradient", p.Name)
		}
		want := parity.Read(t, pg, p.Name)
		d := golden.Compare(p.T().Grad().Float32s(), want.Float32s())
		want.Release()
		if strings.HasSuffix(p.Name, "to_k.bias") {
			d = keyBiasDiff(t, pg, p)
		}
		if d.MaxRel > gradTol {
			t.Errorf("param grad %s: %v exceeds %.0e", p.Name, d, gradTol)
		}
		if d.MaxRel >= worst.MaxRel {
			worst, worstName = d, p.Name
		}
	}
	t.Logf("param grads (%d tensors): worst %s: %v", len(params), worstName, worst)

	for _, x := range c.inputs {
		x.ZeroGrad()
	}
	for _, p := range params {
		p.T().ZeroGrad()
	}
	if live := tensor.CPU.Stats().Live; live != base {
		t.Fatalf("live bytes after forward+backward+release = %d, want the baseline %d (a leak of %d)", live, base, live-base)
	}
}

// TestCheckpointing runs each golden model with and without per-block checkpointing:
// gradients must match (the recomputation repeats the same float32 operations in the
// same order, so they are bitwise equal; 1e-6 relative allows a reordered reduction),
// and the saved bytes after forward must shrink.
func TestCheckpointing(t *testing.T) {
	for _, tc := range []struct {
		name string
		load func(*testing.T) *goldenCase
	}{{"dit", loadDiTCase}, {"pixart", loadPixArtCase}} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.load(t)
			defer c.release()
			io := parity.Open(t, filepath.Join(c.dir, "io.safetensors"))
			g := parity.Read(t, io, "g")
			defer g.Release()
			type run struct {
				saved    int64
				perBlock []int64
				grads    map[string][]float32
			}
			do := func(ckpt bool) run {
				setCheckpoint(c.model, ckpt)
				before := tensor.SavedBytes()
				out := c.forward()
				r := run{saved: tensor.SavedBytes() - before, perBlock: slices.Clone(savedPerBlock(c.model)), grads: map[string][]float32{}}
				tensor.BackwardWith([]*tensor.Tensor{out}, []*tensor.Tensor{g})
				out.Release()
				for name, x := range c.inputs {
					r.grads[name] = x.Grad().Float32s()
					x.ZeroGrad()
				}
				for _, p := range c.model.Params("") {
					r.grads[p.Name] = p.T().Grad().Float32s()
					p.T().ZeroGrad()
				}
				return r
			}
			plain, ckpt := do(false), do(true)
			t.Logf("saved after forward: %d bytes plain, %d checkpointed; per block %v vs %v", plain.saved, ckpt.saved, plain.perBlock, ckpt.perBlock)
			if ckpt.saved >= plain.saved {
				t.Errorf("checkpointing saved %d bytes, no fewer than %d without", ckpt.saved, plain.saved)
			}
			for i := range plain.perBlock {
				if plain.perBlock[i] <= 0 || ckpt.perBlock[i] >= plain.perBlock[i] {
					t.Errorf("block %d: saved %d bytes checkpointed, %d plain", i, ckpt.perBlock[i], plain.perBlock[i])
				}
			}
			for name, want := range plain.grads {
				if d := golden.Compare(ckpt.grads[name], want); d.MaxRel > 1e-6 {
					t.Errorf("%s: checkpointed gradient differs: %v", name, d)
				}
			}
		})
	}
}

// keyBiasDiff measures a to_k.bias gradient against the scale of its attention's
// q/k/v bias gradients. The key bias adds q·b to every score of a query row, which
// softmax ignores, so its true gradient is 0 and both files hold float32 rounding
// noise (~1e-7): relative to its own max|value| that noise would read as 100%. DiT's
// fused qkv.bias is measured the same way, since its max is set by the q and v parts.
func keyBiasDiff(t *testing.T, pg *safetensors.File, p nn.Param) golden.Diff {
	t.Helper()
	prefix := strings.TrimSuffix(p.Name, "to_k.bias")
	var scale float64
	for _, sib := range []string{"to_q.bias", "to_k.bias", "to_v.bias"} {
		w := parity.Read(t, pg, prefix+sib)
		scale = max(scale, golden.Compare(w.Float32s(), w.Float32s()).WantMax)
		w.Release()
	}
	want := parity.Read(t, pg, p.Name)
	defer want.Release()
	d := golden.Compare(p.T().Grad().Float32s(), want.Float32s())
	d.WantMax, d.MaxRel = scale, d.MaxAbs/scale
	return d
}

func setCheckpoint(m Model, on bool) {
	switch m := m.(type) {
	case *DiT:
		m.Checkpoint = on
	case *PixArt:
		m.Checkpoint = on
	}
}

func savedPerBlock(m Model) []int64 {
	switch m := m.(type) {
	case *DiT:
		return m.SavedPerBlock
	case *PixArt:
		return m.SavedPerBlock
	}
	return nil
}

// TestActivations compares intermediate outputs with activations.safetensors: the
// embeddings a parity failure would be bisected with.
func TestActivations(t *testing.T) {
	t.Run("dit", func(t *testing.T) {
		c := loadDiTCase(t)
		defer c.release()
		m := c.model.(*DiT)
		acts := parity.Open(t, filepath.Join(c.dir, "activations.safetensors"))
		io := parity.Open(t, filepath.Join(c.dir, "io.safetensors"))
		ts := parity.Read(t, io, "t")
		defer ts.Release()
		tensor.NoGrad(func() {
			xe := m.XEmbedder.Forward(c.inputs["x"])
			te := m.TEmbedder.Forward(ts.Data())
			defer tensor.Release(xe, te)
			parity.Expect(t, "x_embedder", xe, parity.Read(t, acts, "x_embedder.out0"), outTol)
			parity.Expect(t, "t_embedder", te, parity.Read(t, acts, "t_embedder.out0"), outTol)
		})
	})
	t.Run("pixart", func(t *testing.T) {
		c := loadPixArtCase(t)
		defer c.release()
		m := c.model.(*PixArt)
		acts := parity.Open(t, filepath.Join(c.dir, "activations.safetensors"))
		io := parity.Open(t, filepath.Join(c.dir, "io.safetensors"))
		ts := parity.Read(t, io, "timestep")
		defer ts.Release()
		tensor.NoGrad(func() {
			patches := m.PosEmbed.Forward(c.inputs["hidden_states"])
			tokens := tensor.Add(patches, m.PosTable)
			mod, emb, err := m.AdaLNSingle.Forward(ts.Data(), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := m.CaptionProjection.Forward(c.inputs["encoder_hidden_states"])
			defer tensor.Release(patches, tokens, mod, emb, ctx)
			parity.Expect(t, "pos_embed", tokens, parity.Read(t, acts, "pos_embed.out0"), outTol)
			parity.Expect(t, "adaln_single.out0", mod, parity.Read(t, acts, "adaln_single.out0"), outTol)
			parity.Expect(t, "adaln_single.out1", emb, parity.Read(t, acts, "adaln_single.out1"), outTol)
			parity.Expect(t, "caption_projection", ctx, parity.Read(t, acts, "caption_projection.out0"), outTol)
		})
	})
}
