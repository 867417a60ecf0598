package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/tensor"
)

// fixedSource cycles over one batch; its state is the batch counter.
type fixedSource struct {
	n    int
	imgs *tensor.Tensor
}

func (s *fixedSource) Next() (*tensor.Tensor, []string, error) {
	s.n++
	caps := []string{"a red circle", "a blue square"}
	if s.n%2 == 0 {
		caps[0], caps[1] = caps[1], caps[0]
	}
	return s.imgs.Clone(), caps, nil
}
func (s *fixedSource) Epoch() int              { return s.n / 3 }
func (s *fixedSource) State() (string, error)  { return strconv.Itoa(s.n), nil }
func (s *fixedSource) Restore(st string) error { n, err := strconv.Atoi(st); s.n = n; return err }

func runOpts(out string) RunOptions {
	return RunOptions{Model: "tiny-dit", Adapter: adapters.Config{Kind: adapters.LoRA, Rank: 4, Form: adapters.Auto, Dropout: 0.1, Seed: 2},
		Targets: adapters.Targets{"attn"}, Train: Config{LR: 1e-3, Steps: 6, EMA: 0.5, Seed: 4}, Out: out, Name: "style",
		SaveEvery: 2, KeepLast: 1, SampleEvery: 3, SaveDType: tensor.F32,
		SamplePrompts: []pipeline.PromptLine{{Prompt: "a red circle", Width: 32, Height: 32, Seed: 1, CFG: 3, Steps: 2}}}
}

// TestRunOutputsAndInterruptResume: a straight run writes the adapter, step files
// (pruned), state, previews, train.jsonl and loss.png; a run interrupted at step 3 and
// resumed ends with the same adapter bit for bit.
func TestRunOutputsAndInterruptResume(t *testing.T) {
	imgs := batchImages()
	defer imgs.Release()
	dir := t.TempDir()
	straight := filepath.Join(dir, "straight")
	res, err := Run(context.Background(), &fixedSource{imgs: imgs}, runOpts(straight))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"style.safetensors", "style-step000004.safetensors", "state/state.safetensors", "train.jsonl", "loss.png",
		"samples/style-step000003.png", "samples/style-step000006.png", "samples/style.png"} {
		if _, err := os.Stat(filepath.Join(straight, f)); err != nil {
			t.Errorf("missing output %s", f)
		}
	}
	if _, err := os.Stat(filepath.Join(straight, "style-step000002.safetensors")); err == nil {
		t.Error("--keep-last 1 kept an older step file")
	}
	if raw, _ := os.ReadFile(filepath.Join(straight, "train.jsonl")); strings.Count(string(raw), "\n") != 6 {
		t.Errorf("train.jsonl has %d lines, want 6", strings.Count(string(raw), "\n"))
	}
	if res.Steps != 6 {
		t.Fatalf("steps %d", res.Steps)
	}

	// Interrupted after step 3 (as Ctrl-C would), then resumed.
	resumed := filepath.Join(dir, "resumed")
	ctx, cancel := context.WithCancel(context.Background())
	o := runOpts(resumed)
	o.Progress = func(step, total int, loss, lr float64) {
		if step == 3 {
			cancel()
		}
	}
	if _, err := Run(ctx, &fixedSource{imgs: imgs}, o); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	if _, err := Run(context.Background(), &fixedSource{imgs: imgs}, runOpts(resumed)); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("a second run over a saved state must ask for --resume: %v", err)
	}
	o = runOpts(resumed)
	o.Resume = true
	if _, err := Run(context.Background(), &fixedSource{imgs: imgs}, o); err != nil {
		t.Fatal(err)
	}
	a, _, _ := adapters.Load(filepath.Join(straight, "style.safetensors"))
	b, _, _ := adapters.Load(filepath.Join(resumed, "style.safetensors"))
	defer a.Release()
	defer b.Release()
	for i, m := range a.Modules {
		for k, v := range m.Tensors {
			if !slices.Equal(v.Float32s(), b.Modules[i].Tensors[k].Float32s()) {
				t.Fatalf("%s.%s differs between the straight and the resumed run", m.Key, k)
			}
		}
	}
	if raw, _ := os.ReadFile(filepath.Join(resumed, "train.jsonl")); strings.Count(string(raw), "\n") != 6 {
		t.Errorf("resumed train.jsonl has %d lines, want 6", strings.Count(string(raw), "\n"))
	}
}

// TestTextCache: with a cache folder, captions are encoded once and read back; the
// run is bit-identical to one without the cache.
func TestTextCache(t *testing.T) {
	imgs := batchImages()
	defer imgs.Release()
	dir := t.TempDir()
	plain, cached := runOpts(filepath.Join(dir, "plain")), runOpts(filepath.Join(dir, "cached"))
	plain.SampleEvery, cached.SampleEvery = 0, 0
	plain.SamplePrompts, cached.SamplePrompts = nil, nil
	cached.CacheDir = filepath.Join(dir, "cache")
	if _, err := Run(context.Background(), &fixedSource{imgs: imgs}, plain); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), &fixedSource{imgs: imgs}, cached); err != nil {
		t.Fatal(err)
	}
	entries, _ := filepath.Glob(filepath.Join(dir, "cache", "*", "*.safetensors"))
	if len(entries) == 0 {
		entries, _ = filepath.Glob(filepath.Join(dir, "cache", "*.safetensors"))
	}
	if len(entries) != 2 { // two distinct captions
		t.Fatalf("%d cache entries, want 2", len(entries))
	}
	a, _, _ := adapters.Load(filepath.Join(dir, "plain", "style.safetensors"))
	b, _, _ := adapters.Load(filepath.Join(dir, "cached", "style.safetensors"))
	defer a.Release()
	defer b.Release()
	for i, m := range a.Modules {
		for k, v := range m.Tensors {
			if !slices.Equal(v.Float32s(), b.Modules[i].Tensors[k].Float32s()) {
				t.Fatalf("%s.%s differs with the text cache", m.Key, k)
			}
		}
	}
}
