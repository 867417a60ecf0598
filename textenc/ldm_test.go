package textenc

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
)

// TestOpenCLIPToHF: the golden text tower saved in openai naming maps onto the same
// model saved in Hugging Face naming — every HF tensor equals its openai part exactly
// (q, k, v as row thirds of in_proj), no HF key is left out and none is invented;
// dropLast removes exactly the last layer; the detected config matches config.json
// except for what shapes cannot show.
func TestOpenCLIPToHF(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "clip_text")
	oa, err := safetensors.Open(filepath.Join(dir, "weights_openai.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer oa.Close()
	hf, err := safetensors.Open(filepath.Join(dir, "weights_hf.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	shapes := map[string][]int{}
	for _, n := range oa.Names() {
		if strings.HasPrefix(n, "visual.") { // the image tower of the full CLIP
			continue
		}
		info, _ := oa.Info(n)
		shapes[n] = info.Shape
	}
	parts, hfShapes, err := OpenCLIPToHF(shapes, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != len(hf.Names()) {
		t.Fatalf("%d mapped parameters, the HF file has %d", len(parts), len(hf.Names()))
	}
	for _, name := range hf.Names() {
		p, ok := parts[name]
		if !ok {
			t.Fatalf("HF key %q not mapped", name)
		}
		want, err := nn.ReadTensor(hf, name)
		if err != nil {
			t.Fatal(err)
		}
		src, err := nn.ReadTensor(oa, p.Key)
		if err != nil {
			t.Fatal(err)
		}
		got := src.Float32s()
		if p.To > 0 {
			row := src.Len() / src.Dim(0)
			got = got[p.From*row : p.To*row]
		}
		if !slices.Equal(want.Shape(), hfShapes[name]) || !slices.Equal(got, want.Float32s()) {
			t.Errorf("%s <- %+v: shape %v vs %v, values differ: %v", name, p, hfShapes[name], want.Shape(), !slices.Equal(got, want.Float32s()))
		}
		want.Release()
		src.Release()
	}
	cfg, err := DetectCLIPConfig(map[string][]int{
		"text_model.embeddings.token_embedding.weight":    {49408, 768},
		"text_model.embeddings.position_embedding.weight": {77, 768},
		"text_model.encoder.layers.0.mlp.fc1.weight":      {3072, 768},
		"text_model.encoder.layers.11.mlp.fc1.weight":     {3072, 768},
	}, "quick_gelu")
	if err != nil || cfg.NumHiddenLayers != 12 || cfg.NumAttentionHeads != 12 || cfg.IntermediateSize != 3072 || cfg.MaxPositionEmbeddings != 77 {
		t.Fatalf("CLIP ViT-L from shapes: %+v, %v", cfg, err)
	}
	// The golden tower is 32 wide with 4 heads: no shape shows that, and 32 is not a
	// multiple of 64, so detection refuses rather than guessing.
	if _, err := DetectCLIPConfig(hfShapes, "quick_gelu"); err == nil || !strings.Contains(err.Error(), "multiple of 64") {
		t.Fatalf("width 32: %v", err)
	}
	dropped, _, err := OpenCLIPToHF(shapes, true)
	if err != nil {
		t.Fatal(err)
	}
	for name := range parts {
		_, ok := dropped[name]
		if last := strings.HasPrefix(name, "text_model.encoder.layers.1."); ok == last {
			t.Errorf("dropLast: %s kept %v", name, ok)
		}
	}
	shapes["transformer.resblocks.0.attn.bogus.weight"] = []int{1}
	if _, _, err := OpenCLIPToHF(shapes, false); err == nil || !strings.Contains(err.Error(), "attn.bogus") {
		t.Fatalf("unknown key: %v", err)
	}
}
