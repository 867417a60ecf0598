package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/internal/sdtest"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
	"github.com/difftune/difftune/unet"
	"github.com/difftune/difftune/vae"
)

// TestLoadCheckpoints: the tiny SD model written as a diffusers folder and as a
// single-file checkpoint loads both ways with the detected description, the SD
// geometry and schedule, 16-bit frozen weights and widened norms; the two loads hold
// the same weights, so the same request gives byte-identical images (which checks
// every LDM name mapping, the VAE's reshaped attention and the detected configs).
func TestLoadCheckpoints(t *testing.T) {
	dir := t.TempDir()
	m := sdtest.New(t, "quick_gelu")
	folder := m.Folder(t, filepath.Join(dir, "tiny-sd"))
	file := m.SingleFile(t, filepath.Join(dir, "tiny-sd.safetensors"), nil)
	tok := sdtest.Tokenizer(t, filepath.Join(dir, "tokenizer"))

	for _, model := range []string{folder, file} {
		info, err := Describe(model)
		if err != nil {
			t.Fatal(err)
		}
		// 64 latents (sample_size) × 8 (the VAE); sides divide by 8 × 2 (two UNet levels).
		if info != (Info{Size: 512, Multiple: 16}) {
			t.Errorf("%s: Describe %+v", model, info)
		}
	}
	pf, err := LoadWith(folder, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Release()
	ps, err := LoadWith(file, Options{Tokenizer: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Release()
	for p, want := range map[*Pipeline]string{
		pf: "SD 1.x diffusers folder: UNet 803.2K (F16), VAE, CLIP text encoder (64 wide, 2 layers)",
		ps: "SD 1.x single-file checkpoint: UNet 803.2K (F16), VAE, CLIP text encoder (64 wide, 2 layers)",
	} {
		if p.Description != want {
			t.Errorf("description %q, want %q", p.Description, want)
		}
		if p.Channels != 4 || p.Factor != 8 || p.Size != 512 || p.Multiple != 16 || p.VAE == nil ||
			p.Scheduler.BetaSchedule != "scaled_linear" || p.Scheduler.PredictionType != "epsilon" {
			t.Errorf("%s: geometry or schedule %+v", p.Name, p)
		}
		u := p.Denoiser.(*unetDenoiser)
		if w := u.ConvIn.Weight; w.DType() != tensor.F16 {
			t.Errorf("%s: conv_in weight stored as %v, want F16 (frozen weights stay 16-bit)", p.Name, w.DType())
		}
		if n := u.ConvNormOut.Weight; n.DType() != tensor.F32 {
			t.Errorf("%s: conv_norm_out weight stored as %v, want F32 (norms are widened)", p.Name, n.DType())
		}
	}
	for _, c := range []struct {
		a, b nn.Module
	}{{pf.Denoiser, ps.Denoiser}, {pf.VAE, ps.VAE}, {pf.Text, ps.Text}} {
		pa, pb := c.a.Params(""), c.b.Params("")
		if len(pa) != len(pb) {
			t.Fatalf("%d vs %d parameters", len(pa), len(pb))
		}
		for i := range pa {
			if !slicesEqual(pa[i].T().Float32s(), pb[i].T().Float32s()) {
				t.Fatalf("%s differs between the folder and the single file", pa[i].Name)
			}
		}
	}
	req := Request{Prompt: "a red circle", Negative: "blue", N: 1, Steps: 2, Sampler: "euler_a", CFG: 5, Seed: 3, Width: 64, Height: 48}
	a, err := pf.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ps.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if a[0].Bounds().Dx() != 64 || a[0].Bounds().Dy() != 48 || !bytes.Equal(a[0].Pix, b[0].Pix) {
		t.Fatalf("images %v, folder and single file equal: %v", a[0].Bounds(), bytes.Equal(a[0].Pix, b[0].Pix))
	}
	if err := pf.CheckSize(72, 64); err == nil || !strings.Contains(err.Error(), "multiple of 16") {
		t.Fatalf("72 px: %v", err)
	}
	// Latents round trip through the VAE hooks the trainer can use.
	img := tensor.Zeros(1, 3, 32, 32)
	z := ps.EncodeImages(img)
	back := ps.DecodeLatents(z)
	if z.Dim(1) != 4 || z.Dim(2) != 4 || back.Dim(2) != 32 {
		t.Errorf("latents %v, decoded %v", z.Shape(), back.Shape())
	}
	tensor.Release(img, z, back)
}

func slicesEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLoadOpenCLIPFile: an SD 2.x-style single file (OpenCLIP text names, fused
// in_proj, one extra resblock) loads as SD 2.x with v-prediction at 768 pixels, its
// text encoder equal to the HF-named weights it was written from (the extra layer
// dropped), and zero padding; --prediction epsilon overrides.
func TestLoadOpenCLIPFile(t *testing.T) {
	dir := t.TempDir()
	m := sdtest.New(t, "gelu")
	file := m.OpenCLIPFile(t, filepath.Join(dir, "sd2.safetensors"))
	tok := sdtest.Tokenizer(t, filepath.Join(dir, "tokenizer"))
	p, err := LoadWith(file, Options{Tokenizer: tok, ClipSkip: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	if !strings.HasPrefix(p.Description, "SD 2.x single-file checkpoint") || !strings.HasSuffix(p.Description, "v-prediction") ||
		p.Scheduler.PredictionType != "v_prediction" || p.Size != 768 || len(p.Text.Layers) != 2 || p.Text.Config.HiddenAct != "gelu" || p.ClipSkip != 2 {
		t.Fatalf("%q: %+v", p.Description, p)
	}
	ref := m.Text
	for _, prm := range p.Text.Params("") {
		r := ref[prm.Name]
		got := prm.T().Float32s()
		for i := range got {
			if tensor.F32ToF16(got[i]) != uint16(r.Data[2*i])|uint16(r.Data[2*i+1])<<8 {
				t.Fatalf("%s[%d] = %g differs from the written weight", prm.Name, i, got[i])
			}
		}
	}
	if ids := p.Tokenizer.Encode([]string{"a"}); ids[0][76] != 0 {
		t.Errorf("OpenCLIP pads with 0, got %v", ids[0][70:])
	}
	if _, err := p.Generate(context.Background(), Request{Prompt: "x", N: 1, Steps: 1, Sampler: "ddim", CFG: 1, Width: 32, Height: 32}); err != nil {
		t.Fatal(err)
	}
	info, err := Describe(file)
	if err != nil || info.Size != 768 {
		t.Fatalf("Describe %+v %v", info, err)
	}
	q, err := LoadWith(file, Options{Tokenizer: tok, PredictionType: "epsilon"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Release()
	if q.Scheduler.PredictionType != "epsilon" || q.Size != 768 {
		t.Errorf("override: %s, size %d", q.Scheduler.PredictionType, q.Size)
	}
}

// TestRefusals: a single file without a tokenizer names vocab.json and merges.txt;
// SDXL, SD3, Flux, inpainting, adapter, component and unknown files are refused naming
// what was found and what is supported, from their headers alone.
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	file := sdtest.New(t, "quick_gelu").SingleFile(t, filepath.Join(dir, "sd.safetensors"), nil)
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), "vocab.json and merges.txt") || !strings.Contains(err.Error(), "--tokenizer") {
		t.Fatalf("no tokenizer: %v", err)
	}
	for _, c := range []struct {
		name string
		keys map[string][]int
		want string
	}{
		{"sdxl", map[string][]int{"conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": nil, "model.diffusion_model.label_emb.0.0.weight": nil}, "SDXL checkpoint (found \"conditioner.embedders.0"},
		{"sd3", map[string][]int{"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": nil}, "Stable Diffusion 3 (MMDiT) checkpoint (found \"model.diffusion_model.joint_blocks.0"},
		{"flux", map[string][]int{"double_blocks.0.img_attn.qkv.weight": nil, "single_blocks.0.linear1.weight": nil}, "Flux checkpoint (found \"double_blocks.0"},
		{"inpaint", map[string][]int{"model.diffusion_model.input_blocks.0.0.weight": {8, 9, 3, 3}}, "inpainting UNet"},
		{"lora", map[string][]int{"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": {4, 8}}, "pass it with --lora"},
		{"component", map[string][]int{"conv_in.weight": {8, 4, 3, 3}}, "pass the diffusers folder"},
		{"other", map[string][]int{"encoder.layers.0.weight": nil, "decoder.head.bias": nil}, "not a recognised checkpoint (no model.diffusion_model.* keys; it has decoder.head.bias, encoder.layers.0.weight)"},
	} {
		path := sdtest.Fake(t, filepath.Join(dir, c.name+".safetensors"), c.keys)
		for what, err := range map[string]error{"Load": second(LoadWith(path, Options{Tokenizer: dir})), "Describe": second(Describe(path))} {
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) ||
				c.name != "lora" && !strings.Contains(err.Error(), "Stable Diffusion 1.x/2.x") {
				t.Errorf("%s %s: %v (want %q)", what, c.name, err, c.want)
			}
		}
	}
	if _, err := Load(filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "tiny-unet") {
		t.Errorf("missing model: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

// manifestHeader is a header (F16, no data) with the key -> shape map of a golden
// manifest of a real-size model.
func manifestHeader(t *testing.T, name string) *safetensors.Header {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(golden.Dir(t), "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string][]int
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	h := &safetensors.Header{}
	for k, s := range m {
		dt := safetensors.F16
		if strings.HasSuffix(k, "position_ids") {
			dt = safetensors.I64
		}
		h.Tensors = append(h.Tensors, safetensors.TensorInfo{Name: k, DType: dt, Shape: s})
	}
	return h
}

// TestDetectRealManifests: the real SD 1.5 single-file key set detects as SD 1.5 (the
// sd15 UNet preset up to sample size, the sd VAE, CLIP ViT-L) with the issue's
// description; the real SDXL UNet key set is refused as SDXL.
func TestDetectRealManifests(t *testing.T) {
	m, err := detectHeader("v1-5.safetensors", manifestHeader(t, "sd15_original_ldm.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "SD 1.x single-file checkpoint: UNet 860M (F16), VAE, CLIP ViT-L text encoder"; m.describe() != want {
		t.Errorf("description %q, want %q", m.describe(), want)
	}
	if !reflect.DeepEqual(m.unet, unet.Presets["sd15"].Config) || !reflect.DeepEqual(m.vae, vae.Presets["sd"].Config) {
		t.Errorf("configs:\n%+v\n%+v", m.unet, m.vae)
	}
	if c := m.text; c.HiddenSize != 768 || c.NumHiddenLayers != 12 || c.NumAttentionHeads != 12 || c.VocabSize != 49408 || c.HiddenAct != "quick_gelu" {
		t.Errorf("text config %+v", c)
	}
	if info := m.info(); info != (Info{Size: 512, Multiple: 64}) || m.sched.PredictionType != "epsilon" {
		t.Errorf("geometry %+v, %s", info, m.sched.PredictionType)
	}
	if _, err := detectHeader("xl.safetensors", manifestHeader(t, "sdxl_base_unet.json")); err == nil || !strings.Contains(err.Error(), "SDXL") {
		t.Errorf("SDXL UNet: %v", err)
	}
}
