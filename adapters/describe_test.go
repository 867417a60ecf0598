package adapters

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// TestDescribe: a kohya LoHa file and a PEFT LoRA file are summarised with their
// format, type, rank, alpha, module count and names, and base model; IsAdapterFile
// tells them from a model file.
func TestDescribe(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		kind   Kind
		format Format
		meta   map[string]string
		want   []string
	}{
		{LoHa, FormatKohya, map[string]string{"ss_base_model_version": "sd_v1"},
			[]string{"kohya adapter file, 7 module(s)", "type:    loha", "rank:    3", "alpha:   1.5", "base:    sd_v1 (ss_base_model_version)", "lora_unet_attn_to_k", "... and 1 more"}},
		{LoRA, FormatPEFT, map[string]string{"modelspec.architecture": "stable-diffusion-v1/lora"},
			[]string{"PEFT/diffusers adapter file, 7 module(s)", "type:    lora", "rank:    3", "alpha:   1.5", "base:    stable-diffusion-v1/lora (modelspec.architecture)", "unet.attn.to_k", "... and 1 more"}},
	} {
		b := newBlock(5)
		s, err := Inject(b, Config{Kind: c.kind, Rank: 3, Alpha: 1.5, Form: Auto, Seed: 3}, Targets{TargetFull})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, string(c.kind)+".safetensors")
		if err := Save(s, path, SaveOptions{Format: c.format, DType: tensor.F16, Metadata: c.meta}); err != nil {
			t.Fatal(err)
		}
		s.Remove()
		nn.ReleaseParams(b)
		got, err := Describe(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", c.kind, got, w)
			}
		}
		h, err := safetensors.ReadHeader(path)
		if err != nil || !IsAdapterFile(h) {
			t.Errorf("%s: IsAdapterFile false (%v)", path, err)
		}
	}
	model := filepath.Join(dir, "model.safetensors")
	b := newBlock(1)
	defer nn.ReleaseParams(b)
	if err := nn.SaveFile(b, model, "", nil); err != nil {
		t.Fatal(err)
	}
	if h, err := safetensors.ReadHeader(model); err != nil || IsAdapterFile(h) {
		t.Errorf("a model file is an adapter file (%v)", err)
	}
}
