package unet

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/internal/parity"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

func releaseModels(ms ...*UNet2DConditionModel) {
	for _, m := range ms {
		nn.ReleaseParams(m)
	}
}

// randn returns a leaf of N(0, 1) values.
func randn(rng *rand.Rand, shape ...int) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(rng.NormFloat64())
	}
	return tensor.FromFloat32(d, shape...)
}

// step is one forward + backward of m with cotangent g, reporting the saved bytes
// after forward, the per-block log, and copies of every gradient (inputs last).
type step struct {
	saved  int64
	blocks []BlockSaved
	grads  map[string][]float32
}

func runStep(t *testing.T, m *UNet2DConditionModel, sample, context, g *tensor.Tensor, ts []float32) step {
	t.Helper()
	if tensor.SavedBytes() != 0 {
		t.Fatalf("%d bytes saved before forward", tensor.SavedBytes())
	}
	base := tensor.CPU.Stats().Live
	out := m.Forward(sample, ts, context)
	s := step{saved: tensor.SavedBytes(), blocks: m.BlockSaved, grads: map[string][]float32{}}
	tensor.BackwardWith([]*tensor.Tensor{out}, []*tensor.Tensor{g})
	out.Release()
	if sb := tensor.SavedBytes(); sb != 0 {
		t.Fatalf("%d saved bytes remain after backward", sb)
	}
	ps := append(m.Params(""), nn.Param{Name: "sample", Ptr: &sample}, nn.Param{Name: "encoder_hidden_states", Ptr: &context})
	var gradBytes int64
	for _, p := range ps {
		if gr := p.T().Grad(); gr != nil {
			s.grads[p.Name] = gr.Float32s()
			gradBytes += gr.Bytes()
		}
	}
	if live := tensor.CPU.Stats().Live; live != base+gradBytes {
		t.Fatalf("live bytes after release %d, want baseline %d + gradients %d (a leak)", live, base, gradBytes)
	}
	for _, p := range ps {
		p.T().ZeroGrad()
	}
	return s
}

// TestCheckpointing runs the golden model with and without gradient checkpointing:
// gradients agree to 1e-6 of each tensor's max |value|, fewer bytes are saved, and
// the per-block log adds up to the total. Both runs are bitwise reproducible; they
// differ only in the order float32 gradients are summed (a checkpointed block sums
// its input's gradient inside the block before adding the other consumers'), which
// measures 6e-7 here (and 1.1e-6 on the tiny-unet preset with 2 threads: the bound
// sits at that noise floor, not above a real error).
func TestCheckpointing(t *testing.T) {
	m, dir := goldenModel(t)
	c := m.Config
	io := parity.Open(t, filepath.Join(dir, "io.safetensors"))
	in := readInputs(t, io)
	sample, context, g, ts := in.sample, in.context, in.g, in.timesteps
	n, hw := sample.Dim(0), sample.Dim(2)*sample.Dim(3)

	plain := runStep(t, m, sample, context, g, ts)
	m.GradientCheckpointing = true
	ckpt := runStep(t, m, sample, context, g, ts)

	if len(plain.grads) != len(m.Params(""))+2 {
		t.Fatalf("%d gradients for %d parameters and 2 inputs", len(plain.grads), len(m.Params("")))
	}
	worst, worstName := golden.Diff{}, ""
	for name, want := range plain.grads {
		d := golden.Compare(ckpt.grads[name], want)
		if d.MaxRel >= worst.MaxRel {
			worst, worstName = d, name
		}
	}
	t.Logf("checkpointed vs plain gradients: worst %s: %v", worstName, worst)
	if worst.MaxRel > 1e-6 {
		t.Fatalf("checkpointed gradients differ: %s: %v", worstName, worst)
	}
	t.Logf("saved after forward: plain %d B, checkpointed %d B", plain.saved, ckpt.saved)
	if ckpt.saved >= plain.saved/2 {
		t.Fatalf("checkpointing saved %d bytes, plain %d: want less than half", ckpt.saved, plain.saved)
	}
	for _, s := range []step{plain, ckpt} {
		var sum int64
		for _, b := range s.blocks {
			sum += b.Bytes
		}
		if sum != s.saved || len(s.blocks) == 0 {
			t.Fatalf("per-block saved bytes add up to %d over %d blocks, the forward saved %d", sum, len(s.blocks), s.saved)
		}
	}
	byName := func(s step, name string) int64 {
		for _, b := range s.blocks {
			if b.Name == name {
				return b.Bytes
			}
		}
		t.Fatalf("no block %s in %v", name, s.blocks)
		return 0
	}
	// A resnet keeps six [N, C, H, W] activations (norm1's input, both norms' outputs
	// for the SiLUs, both SiLU outputs for the convs, norm2's input) plus small ones
	// (norm statistics, the time path); checkpointed, only its inputs (the time
	// embedding is saved once, by the first checkpointed block).
	act := int64(4 * n * c.BlockOutChannels[0] * hw)
	if got := byName(plain, "down_blocks.0.resnets.0"); got < 6*act || got >= 7*act {
		t.Fatalf("plain down_blocks.0.resnets.0 saved %d bytes, want 6 × %d plus a little", got, act)
	}
	if got := byName(ckpt, "down_blocks.0.resnets.0"); got > act+int64(4*n*c.TimeEmbeddingDim) {
		t.Fatalf("checkpointed down_blocks.0.resnets.0 saved %d bytes, want at most its inputs %d", got, act+int64(4*n*c.TimeEmbeddingDim))
	}
}

// TestNoGradForward checks that inference records nothing, leaks nothing and gives
// the recorded forward's output.
func TestNoGradForward(t *testing.T) {
	m, err := Presets["tiny-unet"].NewRandom()
	if err != nil {
		t.Fatal(err)
	}
	defer releaseModels(m)
	c := m.Config
	rng := rand.New(rand.NewPCG(5, 6))
	sample := randn(rng, 1, c.InChannels, 16, 16)
	context := randn(rng, 1, 3, c.CrossAttentionDim[0])
	defer tensor.Release(sample, context)
	base := tensor.CPU.Stats().Live
	var out *tensor.Tensor
	tensor.NoGrad(func() { out = m.Forward(sample, []float32{400}, context) })
	if tensor.SavedBytes() != 0 || len(m.BlockSaved) != 0 {
		t.Fatalf("NoGrad forward saved %d bytes, logged %d blocks", tensor.SavedBytes(), len(m.BlockSaved))
	}
	rec := m.Forward(sample, []float32{400}, context) // parameters require gradients: recorded
	if d := golden.Compare(out.Float32s(), rec.Float32s()); d.MaxAbs != 0 || math.IsNaN(d.WantMax) {
		t.Fatalf("NoGrad and recorded forwards differ: %v", d)
	}
	tensor.DropGraph(rec)
	tensor.Release(out, rec)
	if live := tensor.CPU.Stats().Live; live != base {
		t.Fatalf("live bytes %d, want %d", live, base)
	}
}

// TestFrozenForwardRecordsNothing checks that a checkpointing model with frozen
// weights and inputs that need no gradient records nothing: checkpoint nodes would
// otherwise keep block inputs alive for a backward that never comes.
func TestFrozenForwardRecordsNothing(t *testing.T) {
	m, err := Presets["tiny-unet"].NewRandom()
	if err != nil {
		t.Fatal(err)
	}
	defer releaseModels(m)
	nn.SetTrainable(m, false)
	m.GradientCheckpointing = true
	c := m.Config
	rng := rand.New(rand.NewPCG(7, 8))
	sample := randn(rng, 1, c.InChannels, 16, 16)
	context := randn(rng, 1, 3, c.CrossAttentionDim[0])
	defer tensor.Release(sample, context)
	base := tensor.CPU.Stats().Live
	out := m.Forward(sample, []float32{10}, context)
	if out.RequiresGrad() || tensor.SavedBytes() != 0 {
		t.Fatalf("frozen forward recorded a graph: requires grad %v, saved %d", out.RequiresGrad(), tensor.SavedBytes())
	}
	out.Release()
	if live := tensor.CPU.Stats().Live; live != base {
		t.Fatalf("live bytes %d, want %d", live, base)
	}
}

// injectLoRA freezes m and attaches a LoRA of the given rank and form to its attention
// projections (to_q, to_k, to_v, to_out.0), in training mode. The up matrices start
// from N(0, 0.01²) instead of zeros, as after some training, so that both factors get
// a gradient.
func injectLoRA(t *testing.T, m *UNet2DConditionModel, rank int, form adapters.Form, rng *rand.Rand) *adapters.Set {
	t.Helper()
	set, err := adapters.Inject(m, adapters.Config{Kind: adapters.LoRA, Rank: rank, Form: form, Seed: 1}, adapters.Targets{adapters.TargetAttn})
	if err != nil {
		t.Fatal(err)
	}
	set.Train(true)
	for _, p := range set.Params() {
		if strings.HasSuffix(p.Name, ".lora_up.weight") {
			for i, d := 0, p.T().Data(); i < len(d); i++ {
				d[i] = float32(0.01 * rng.NormFloat64())
			}
		}
	}
	return set
}

// TestCheckpointingUnderAdapter checks that checkpointing engages when only an
// adapter trains (frozen UNet, inputs without gradients): it saves less than half of
// what the plain forward saves, and the adapter's gradients agree with the plain
// pass's to 1e-6 of each tensor's max |value| (TestCheckpointing's bound: only the
// summation order differs).
func TestCheckpointingUnderAdapter(t *testing.T) {
	m, err := Presets["tiny-unet"].NewRandom()
	if err != nil {
		t.Fatal(err)
	}
	defer releaseModels(m)
	rng := rand.New(rand.NewPCG(9, 10))
	set := injectLoRA(t, m, 4, adapters.Activation, rng)
	defer set.Remove()
	c := m.Config
	sample := randn(rng, 1, c.InChannels, 16, 16)
	context := randn(rng, 1, 3, c.CrossAttentionDim[0])
	g := randn(rng, 1, c.OutChannels, 16, 16)
	defer tensor.Release(sample, context, g)
	var saved [2]int64
	var grads [2][][]float32
	for i, ckpt := range []bool{false, true} {
		m.GradientCheckpointing = ckpt
		out := m.Forward(sample, []float32{10}, context)
		saved[i] = tensor.SavedBytes()
		tensor.BackwardWith([]*tensor.Tensor{out}, []*tensor.Tensor{g})
		out.Release()
		for _, a := range set.Trainable() {
			if a.Grad() == nil {
				t.Fatalf("checkpointing=%v: an adapter tensor %v has no gradient", ckpt, a.Shape())
			}
			grads[i] = append(grads[i], a.Grad().Float32s())
			a.ZeroGrad()
		}
	}
	t.Logf("saved after forward: plain %d B, checkpointed %d B", saved[0], saved[1])
	if saved[1] >= saved[0]/2 {
		t.Fatalf("checkpointing under an adapter saved %d bytes, plain %d: want less than half", saved[1], saved[0])
	}
	for i, want := range grads[0] {
		if d := golden.Compare(grads[1][i], want); d.MaxRel > 1e-6 {
			t.Fatalf("adapter tensor %d: checkpointed gradient differs: %v", i, d)
		}
	}
}
