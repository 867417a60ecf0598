package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/internal/sdtest"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/sampler"
)

// TestSampleCheckpoints: `difftune sample` runs end to end on the tiny SD model as a
// diffusers folder and as a single file (with --tokenizer, --clip-skip and an
// adapter), printing the detected description and writing a PNG; without
// --tokenizer a single file is refused naming vocab.json and merges.txt; unsupported
// checkpoints are refused naming what was found. `difftune inspect` describes the
// checkpoint, the folder and the adapter.
func TestSampleCheckpoints(t *testing.T) {
	dir := t.TempDir()
	m := sdtest.New(t, "quick_gelu")
	folder := m.Folder(t, filepath.Join(dir, "tiny-sd"))
	file := m.SingleFile(t, filepath.Join(dir, "tiny-sd.safetensors"), map[string]string{"modelspec.architecture": "stable-diffusion-v1"})
	tok := sdtest.Tokenizer(t, filepath.Join(dir, "tokenizer"))

	// An adapter on the tiny SD UNet's attention, for --lora and inspect.
	lora := filepath.Join(dir, "style.safetensors")
	p, err := pipeline.LoadWith(folder, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := adapters.Inject(p.Denoiser, adapters.Config{Kind: adapters.LoRA, Rank: 2, Alpha: 1, Form: adapters.Auto, Seed: 3}, adapters.Targets{"attn"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range set.Trainable() {
		for i := range w.Data() {
			w.Data()[i] = 0.05
		}
	}
	err = adapters.Save(set, lora, adapters.SaveOptions{Metadata: map[string]string{"ss_base_model_version": "sd_v1"}})
	set.Remove()
	p.Release()
	if err != nil {
		t.Fatal(err)
	}

	for name, extra := range map[string][]string{
		"folder": {"--model", folder},
		"file":   {"--model", file, "--tokenizer", tok, "--clip-skip", "2", "--lora", lora + ":0.5"},
	} {
		out := filepath.Join(dir, name+".png")
		args := append([]string{"sample", "--prompt", "a red circle", "--steps", "2", "--size", "64x64", "--out", out}, extra...)
		code, stdout, msg := run(args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s\n%s", name, code, msg, stdout)
		}
		if !strings.Contains(stdout, "SD 1.x") || !strings.Contains(stdout, "UNet 803.2K (F16), VAE, CLIP text encoder") {
			t.Errorf("%s: no description in %q", name, stdout)
		}
		text, err := sampler.ReadPNGText(out)
		if err != nil {
			t.Fatal(err)
		}
		if pr, err := sampler.ParseParameters(text["parameters"]); err != nil || pr.Width != 64 || pr.Steps != 2 {
			t.Errorf("%s: parameters %+v %v", name, pr, err)
		}
	}

	code, _, msg := run("sample", "--model", file, "--prompt", "x", "--steps", "1", "--size", "64x64", "--out", filepath.Join(dir, "x.png"))
	if code != 2 || !strings.Contains(msg, "vocab.json and merges.txt") || !strings.Contains(msg, "--tokenizer") {
		t.Errorf("no tokenizer: exit %d: %s", code, msg)
	}
	for name, c := range map[string]struct {
		keys map[string][]int
		want string
	}{
		"sdxl.safetensors":    {map[string][]int{"conditioner.embedders.1.model.ln_final.weight": nil}, "SDXL"},
		"sd3.safetensors":     {map[string][]int{"model.diffusion_model.joint_blocks.0.context_block.attn.qkv.weight": nil}, "Stable Diffusion 3"},
		"flux.safetensors":    {map[string][]int{"double_blocks.0.img_mod.lin.weight": nil}, "Flux"},
		"inpaint.safetensors": {map[string][]int{"model.diffusion_model.input_blocks.0.0.weight": {8, 9, 3, 3}}, "inpainting"},
	} {
		path := sdtest.Fake(t, filepath.Join(dir, name), c.keys)
		code, _, msg := run("sample", "--model", path, "--tokenizer", tok, "--prompt", "x", "--out", filepath.Join(dir, "y.png"))
		if code != 2 || !strings.Contains(msg, c.want) || !strings.Contains(msg, "Stable Diffusion 1.x/2.x") {
			t.Errorf("%s: exit %d: %s", name, code, msg)
		}
		if code, out, msg := run("inspect", path); code != 0 || !strings.Contains(out, c.want) || !strings.Contains(out, "not supported") {
			t.Errorf("inspect %s: exit %d: %s %s", name, code, out, msg)
		}
	}

	for _, c := range []struct {
		path string
		want []string
	}{
		{file, []string{"SD 1.x single-file checkpoint", "unet", "803.2K parameters (803204), F16", "vae", "text encoder", "other", "F32 ×1", "I64 ×1",
			"modelspec.architecture: stable-diffusion-v1", "512 px by default, sides multiples of 16"}},
		{folder, []string{"SD 1.x diffusers folder", "unet", "text encoder", "epsilon, scaled_linear schedule"}},
		{lora, []string{"kohya adapter file", "type:    lora", "rank:    2", "alpha:   1", "base:    sd_v1 (ss_base_model_version)", "lora_unet_down_blocks_0_attentions_0"}},
	} {
		code, out, msg := run("inspect", c.path)
		if code != 0 {
			t.Fatalf("inspect %s: exit %d: %s", c.path, code, msg)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("inspect %s: %q lacks %q", c.path, out, w)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.png")); err == nil {
		t.Error("a refused run wrote an image")
	}
}

// TestTrainCheckpoint trains a few steps on the tiny SD model (a single-file
// checkpoint with a tokenizer folder): images go through the VAE into latents, the
// adapter file is written and samples with it.
func TestTrainCheckpoint(t *testing.T) {
	dir := t.TempDir()
	m := sdtest.New(t, "quick_gelu")
	file := m.SingleFile(t, filepath.Join(dir, "tiny-sd.safetensors"), nil)
	tok := sdtest.Tokenizer(t, filepath.Join(dir, "tokenizer"))
	ds := filepath.Join(dir, "shapes")
	os.Mkdir(ds, 0o755)
	writeDataset(t, ds)
	out := filepath.Join(dir, "out")
	code, stdout, msg := run("train", ds, "--model", file, "--tokenizer", tok, "--resolution", "64", "--steps", "3", "--batch", "2",
		"--out", out, "--name", "style")
	if code != 0 {
		t.Fatalf("train: exit %d: %s", code, msg)
	}
	if !strings.Contains(stdout, "style.safetensors") {
		t.Fatalf("output %q", stdout)
	}
	// The latents of the 3 steps × 2 samples were cached, one file per sample, and
	// the captions' text-encoder outputs, one file per distinct caption.
	files, _ := filepath.Glob(filepath.Join(out, "cache", "*", "*.safetensors"))
	more, _ := filepath.Glob(filepath.Join(out, "cache", "*.safetensors"))
	var latents, texts int
	for _, f := range append(files, more...) {
		h, err := safetensors.ReadHeader(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range h.Tensors {
			switch ti.Name {
			case "latent":
				latents++
			case "hidden":
				texts++
			}
		}
	}
	if latents == 0 || latents > 6 || texts == 0 || texts > 4 {
		t.Fatalf("%d cached latents (want 1..6) and %d cached captions (want 1..4)", latents, texts)
	}
	code, _, msg = run("sample", "--model", file, "--tokenizer", tok, "--prompt", "a red circle", "--steps", "2", "--size", "64x64",
		"--lora", filepath.Join(out, "style.safetensors"), "--out", filepath.Join(dir, "s.png"))
	if code != 0 {
		t.Fatalf("sample with the trained adapter: %s", msg)
	}
}
