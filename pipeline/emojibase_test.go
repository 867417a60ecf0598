package pipeline

import (
	"context"
	"image"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/difftune/difftune/tensor"
)

// colorMeans returns the mean R, G, B (0..255) over the pixels of imgs that are not
// near-white (the emoji's background), and the fraction of such pixels.
func colorMeans(imgs []*image.RGBA) (r, g, b, ink float64) {
	var n, all float64
	for _, img := range imgs {
		p := img.Pix
		for i := 0; i < len(p); i += 4 {
			all++
			if p[i] > 225 && p[i+1] > 225 && p[i+2] > 225 {
				continue
			}
			r, g, b, n = r+float64(p[i]), g+float64(p[i+1]), b+float64(p[i+2]), n+1
		}
	}
	return r / n, g / n, b / n, n / all
}

// TestEmojiBase loads the embedded model (in under a second: its weights are BF16
// widened once) and samples from it: the images are emoji-like (a white background
// around a coloured subject) and follow the prompt's colour. Measured with the shipped
// model: red apple 255 21 39 over 74% of the pixels, green apple 67 243 56 (77%), blue
// heart 16 150 255 (72%), grinning face 233 203 60 (66%).
func TestEmojiBase(t *testing.T) {
	start := time.Now()
	p, err := Load(DefaultModel)
	if err != nil {
		t.Fatal(err)
	}
	load := time.Since(start)
	defer p.Release()
	t.Logf("emoji-base loaded in %v: %s", load, p.Description)
	if load > time.Second {
		t.Errorf("loading the embedded model took %v, want under a second", load)
	}
	if p.Spec == nil || p.Size != p.Spec.Size || p.Channels != 3 {
		t.Fatalf("spec %v, size %d, channels %d", p.Spec, p.Size, p.Channels)
	}
	if info, err := Describe(DefaultModel); err != nil || info.Size != p.Size || info.Multiple != p.Multiple {
		t.Fatalf("Describe: %+v, %v", info, err)
	}
	gen := func(prompt string) []*image.RGBA {
		imgs, err := p.Generate(context.Background(), Request{Prompt: prompt, N: 4, Steps: 20, Sampler: "dpmpp_2m", CFG: 4, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		return imgs
	}
	for _, c := range []struct {
		prompt string
		check  func(r, g, b float64) bool
	}{
		{"red apple", func(r, g, b float64) bool { return r > g+30 && r > b+30 }},
		{"green apple", func(r, g, b float64) bool { return g > r && g > b }},
		{"blue heart", func(r, g, b float64) bool { return b > r+30 && b > g }},
		{"grinning face", func(r, g, b float64) bool { return r > b+80 && g > b+60 }}, // yellow
	} {
		r, g, b, ink := colorMeans(gen(c.prompt))
		t.Logf("%q: mean RGB of the non-white pixels (%.0f%% of them) %.0f %.0f %.0f", c.prompt, 100*ink, r, g, b)
		if !c.check(r, g, b) || ink < 0.1 || ink > 0.9 {
			t.Errorf("%q: mean RGB %.0f %.0f %.0f over %.0f%% non-white pixels: not a %s emoji on white", c.prompt, r, g, b, 100*ink, c.prompt)
		}
	}
}

// TestModelFileRoundTrip saves a pipeline built from a spec as a difftune model file
// and loads it by path: the same spec, the same weights (exactly in F32, rounded to
// BF16 in BF16), and the path is detected as a model.
func TestModelFileRoundTrip(t *testing.T) {
	s, err := emojiSpec()
	if err != nil {
		t.Fatal(err)
	}
	s.Denoiser.NumLayers, s.Text.NumHiddenLayers = 1, 1
	p, err := NewFromSpec(s, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	// The cross-attention mask keeps the start token, the words and the first end token.
	m := p.TextMask([]string{"red apple", ""})
	n := s.Text.MaxPositionEmbeddings
	for j := range n {
		if want := b2i(j < 4); m[j] != want {
			t.Fatalf("mask of \"red apple\" at %d: %d, want %d (%v)", j, m[j], want, m[:n])
		}
		if want := b2i(j < 2); m[n+j] != want {
			t.Fatalf("mask of \"\" at %d: %d, want %d", j, m[n+j], want)
		}
	}
	dir := t.TempDir()
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		path := filepath.Join(dir, dt.String()+".safetensors")
		if err := p.SaveModel(path, dt, map[string]string{"note": "x"}); err != nil {
			t.Fatal(err)
		}
		if !isModelFile(path) {
			t.Fatal("saved file not detected as a difftune model")
		}
		q, err := LoadWith(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(q.Spec.Vocab, s.Vocab) || q.Spec.Denoiser.NumLayers != 1 {
			t.Errorf("%s: spec differs", dt)
		}
		a, b := append(p.Text.Params(""), p.Denoiser.Params("")...), append(q.Text.Params(""), q.Denoiser.Params("")...)
		if len(a) != len(b) {
			t.Fatalf("%d params, reloaded %d", len(a), len(b))
		}
		for i := range a {
			for j, v := range a[i].T().Data() {
				want := v
				if dt == tensor.BF16 {
					want = tensor.BF16ToF32(tensor.F32ToBF16(v))
				}
				if got := b[i].T().Data()[j]; got != want {
					t.Fatalf("%s: %s[%d] = %g, want %g", dt, a[i].Name, j, got, want)
				}
			}
		}
		q.Release()
	}
	// A file without the spec is not a model; a spec that does not fit is refused by name.
	os.WriteFile(filepath.Join(dir, "x.safetensors"), []byte("junk"), 0o644)
	if isModelFile(filepath.Join(dir, "x.safetensors")) {
		t.Error("junk detected as a model file")
	}
	bad := s
	bad.Text.VocabSize++
	if _, err := NewFromSpec(bad, 1); err == nil {
		t.Error("a vocab_size that does not fit the vocabulary was accepted")
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
