package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/sampler"
	"github.com/difftune/difftune/textenc"
	"github.com/difftune/difftune/unet"
	"github.com/difftune/difftune/vae"
)

// Options control LoadWith.
type Options struct {
	// Tokenizer is a folder holding vocab.json and merges.txt (the tokenizer/ folder of
	// the model's diffusers release). A single-file checkpoint needs it; for a
	// diffusers folder it replaces the folder's own tokenizer/.
	Tokenizer string
	// ClipSkip selects the text encoder layer that conditions the model: 0 or 1 the
	// last, 2 the penultimate (A1111's "clip skip").
	ClipSkip int
	// PredictionType overrides what the model predicts ("epsilon", "v_prediction"):
	// an SD 2.x single file does not record whether it is a 768-v model (the default)
	// or a 512-base one (epsilon).
	PredictionType string
}

// supported is appended to every refusal.
var supported = "difftune loads Stable Diffusion 1.x/2.x text-to-image models (a diffusers folder or a single .safetensors checkpoint) and the presets " +
	strings.Join(PresetNames(), ", ")

// sdModel is a Stable Diffusion 1.x/2.x model found in a folder or file: what was
// detected, before any weight is read.
type sdModel struct {
	path     string
	folder   bool // a diffusers folder (else a single file)
	version  string
	unet     unet.Config
	vae      vae.Config
	text     textenc.CLIPConfig
	openCLIP bool // single file: the text encoder is in OpenCLIP naming
	sched    sampler.Config
	// Parameter counts and dominant dtype per component, from headers.
	params map[string]int64
	dtypes map[string]safetensors.DType
}

// sdScheduler is the noise schedule every SD 1.x/2.x release trains with (the
// scheduler_config.json of runwayml/stable-diffusion-v1-5 and
// stabilityai/stable-diffusion-2-1, whose PNDM and DDIM specifics the samplers here
// ignore), predicting pred.
func sdScheduler(pred string) sampler.Config {
	return sampler.Config{NumTrainTimesteps: 1000, BetaStart: 0.00085, BetaEnd: 0.012, BetaSchedule: "scaled_linear",
		PredictionType: pred, StepsOffset: 1, ClipSample: sampler.Bool(false), SetAlphaToOne: sampler.Bool(false)}
}

// describe is the line the CLI prints after loading.
func (m *sdModel) describe() string {
	kind := "single-file checkpoint"
	if m.folder {
		kind = "diffusers folder"
	}
	text := fmt.Sprintf("CLIP text encoder (%d wide, %d layers)", m.text.HiddenSize, m.text.NumHiddenLayers)
	switch {
	case m.text.HiddenSize == 768 && m.text.NumHiddenLayers == 12:
		text = "CLIP ViT-L text encoder"
	case m.text.HiddenSize == 1024:
		text = "OpenCLIP ViT-H text encoder"
	}
	s := fmt.Sprintf("%s %s: UNet %s (%s), VAE, %s", m.version, kind, count(m.params["unet"]), m.dtypes["unet"], text)
	if m.sched.PredictionType == "v_prediction" {
		s += ", v-prediction"
	}
	return s
}

// info is the image geometry: sample_size latents times the VAE factor; sides must
// divide into the UNet's levels after the VAE's downsampling.
func (m *sdModel) info() Info {
	f := m.vae.Factor()
	return Info{Size: m.unet.SampleSize * f, Multiple: f << (m.unet.Levels() - 1)}
}

// count formats a parameter count as 860M, 1.2B, 12K.
func count(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fB", float64(n)/1e9)
	case n >= 100e6:
		return fmt.Sprintf("%.0fM", float64(n)/1e6)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// detect finds the model at path (a diffusers folder or a single file) and reads its
// architecture, refusing what difftune cannot run.
func detect(model string, o Options) (*sdModel, error) {
	fi, err := os.Stat(model)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("--model %q: not a preset, folder or file; the presets are %s (or give a diffusers folder or a .safetensors checkpoint)",
				model, strings.Join(PresetNames(), ", "))
		}
		return nil, fmt.Errorf("--model: %w", err)
	}
	var m *sdModel
	if fi.IsDir() {
		m, err = detectFolder(model)
	} else {
		m, err = detectFile(model)
	}
	if err != nil {
		return nil, err
	}
	switch o.PredictionType {
	case "":
	case "epsilon", "v_prediction":
		m.sched.PredictionType = o.PredictionType
	default:
		return nil, fmt.Errorf("prediction type %q: want epsilon or v_prediction", o.PredictionType)
	}
	return m, nil
}

// component names the part of a single-file checkpoint a key belongs to.
func component(key string) string {
	switch {
	case strings.HasPrefix(key, unet.LDMPrefix):
		return "unet"
	case strings.HasPrefix(key, vae.LDMPrefix):
		return "vae"
	case strings.HasPrefix(key, "cond_stage_model."), strings.HasPrefix(key, "conditioner."):
		return "text encoder"
	}
	return "other"
}

// tally counts the elements per component and each component's dominant dtype.
func tally(h *safetensors.Header, of func(string) string) (map[string]int64, map[string]safetensors.DType) {
	params := map[string]int64{}
	byType := map[string]map[safetensors.DType]int64{}
	for _, t := range h.Tensors {
		c := of(t.Name)
		params[c] += t.NumElements()
		if byType[c] == nil {
			byType[c] = map[safetensors.DType]int64{}
		}
		byType[c][t.DType] += t.NumElements()
	}
	dtypes := map[string]safetensors.DType{}
	for c, m := range byType {
		var best int64 = -1
		for dt, n := range m {
			if n > best || n == best && dt < dtypes[c] {
				dtypes[c], best = dt, n
			}
		}
	}
	return params, dtypes
}

// recognise names the family of a checkpoint difftune does not run, from its
// telltale keys and shapes, or returns "" for a Stable Diffusion 1.x/2.x layout.
func recognise(shapes map[string][]int) string {
	find := func(subs ...string) string {
		keys := make([]string, 0, len(shapes))
		for k := range shapes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			for _, s := range subs {
				if strings.Contains(k, s) {
					return k
				}
			}
		}
		return ""
	}
	if k := find("joint_blocks.", "context_embedder."); k != "" {
		return fmt.Sprintf("a Stable Diffusion 3 (MMDiT) checkpoint (found %q)", k)
	}
	if k := find("double_blocks.", "single_blocks.", "single_transformer_blocks.", "transformer_blocks.0.attn.add_q_proj"); k != "" {
		return fmt.Sprintf("a Flux checkpoint (found %q)", k)
	}
	if k := find("conditioner.embedders.", "label_emb.", "add_embedding.", "text_model_2.", "add_time_proj"); k != "" {
		return fmt.Sprintf("an SDXL checkpoint (found %q)", k)
	}
	for _, k := range []string{unet.LDMPrefix + "input_blocks.0.0.weight", "conv_in.weight"} {
		if s, ok := shapes[k]; ok && len(s) == 4 && s[1] != 4 {
			if s[1] == 9 {
				return fmt.Sprintf("an inpainting UNet (%q has shape %v: 9 input channels)", k, s)
			}
			return fmt.Sprintf("a UNet with %d input channels (%q has shape %v; depth, pix2pix and upscaler models are not text-to-image SD 1.x/2.x)", s[1], k, s)
		}
	}
	if k := find(".lora_down.weight", ".lora_A.weight", ".hada_w1_a", ".lokr_w1", ".on_input"); k != "" {
		return fmt.Sprintf("an adapter file (found %q): pass it with --lora, not --model", k)
	}
	return ""
}

// someKeys lists the first few sorted keys.
func someKeys(shapes map[string][]int) string {
	keys := make([]string, 0, len(shapes))
	for k := range shapes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) > 5 {
		return strings.Join(keys[:5], ", ") + fmt.Sprintf(", ... (%d keys)", len(keys))
	}
	return strings.Join(keys, ", ")
}

// detectFile reads a single-file checkpoint's architecture from its header.
func detectFile(path string) (*sdModel, error) {
	h, err := safetensors.ReadHeader(path)
	if err != nil {
		return nil, fmt.Errorf("--model %s: %w", path, err)
	}
	return detectHeader(path, h)
}

// detectHeader is detectFile on a header already read.
func detectHeader(path string, h *safetensors.Header) (*sdModel, error) {
	var err error
	shapes := map[string][]int{}
	for _, t := range h.Tensors {
		shapes[t.Name] = t.Shape
	}
	if what := recognise(shapes); what != "" {
		return nil, fmt.Errorf("%s is %s, which is not supported; %s", path, what, supported)
	}
	sub := func(prefix string) map[string][]int {
		out := map[string][]int{}
		for k, s := range shapes {
			if rest, ok := strings.CutPrefix(k, prefix); ok {
				out[rest] = s
			}
		}
		return out
	}
	unetShapes, vaeShapes := sub(unet.LDMPrefix), sub(vae.LDMPrefix)
	hfText, openCLIP := sub(textenc.LDMPrefix), sub(textenc.OpenCLIPPrefix)
	if len(unetShapes) == 0 {
		if _, ok := shapes["conv_in.weight"]; ok {
			return nil, fmt.Errorf("%s holds one diffusers component (conv_in.weight, ...), not a whole model: pass the diffusers folder that contains it; %s", path, supported)
		}
		return nil, fmt.Errorf("%s is not a recognised checkpoint (no %s* keys; it has %s); %s", path, unet.LDMPrefix, someKeys(shapes), supported)
	}
	if len(vaeShapes) == 0 || len(hfText)+len(openCLIP) == 0 {
		return nil, fmt.Errorf("%s has a UNet but no VAE (%s*) or no text encoder (%s* or %s*): a UNet-only file cannot run alone; use the model's diffusers folder",
			path, vae.LDMPrefix, textenc.LDMPrefix, textenc.OpenCLIPPrefix)
	}
	m := &sdModel{path: path}
	if m.unet, err = unet.DetectConfig(h); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if m.vae, err = vae.DetectLDMConfig(vaeShapes); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pred := "epsilon"
	if len(hfText) > 0 {
		delete(hfText, "text_model.embeddings.position_ids") // a buffer, not a weight
		m.version = "SD 1.x"
		m.text, err = textenc.DetectCLIPConfig(hfText, "quick_gelu")
	} else {
		m.version, m.openCLIP, pred = "SD 2.x", true, "v_prediction"
		var hf map[string][]int
		if _, hf, err = textenc.OpenCLIPToHF(openCLIP, true); err == nil {
			m.text, err = textenc.DetectCLIPConfig(hf, "gelu")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// modelspec (Stability's model metadata) may say what the model predicts.
	switch p := strings.ToLower(h.Metadata["modelspec.prediction_type"]); p {
	case "v", "v_prediction", "v-prediction":
		pred = "v_prediction"
	case "epsilon", "eps":
		pred = "epsilon"
	}
	m.sched = sdScheduler(pred)
	m.unet.SampleSize = 64 // 512 pixels
	if pred == "v_prediction" {
		m.unet.SampleSize = 96 // the 768-v models
	}
	if err := checkContext(m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.params, m.dtypes = tally(h, component)
	return m, nil
}

// checkContext verifies that the text encoder's width is what the UNet attends to.
func checkContext(m *sdModel) error {
	if d := m.unet.CrossAttentionDim[0]; d != m.text.HiddenSize {
		return fmt.Errorf("the UNet attends to %d-wide text features, the text encoder is %d wide (mismatched components?)", d, m.text.HiddenSize)
	}
	if m.vae.LatentChannels != m.unet.InChannels {
		return fmt.Errorf("the VAE has %d latent channels, the UNet takes %d", m.vae.LatentChannels, m.unet.InChannels)
	}
	return nil
}

// Files of a diffusers folder.
const (
	unetWeights = "unet/diffusion_pytorch_model.safetensors"
	vaeWeights  = "vae/diffusion_pytorch_model.safetensors"
	textWeights = "text_encoder/model.safetensors"
)

// weightsFile returns the folder's safetensors file for rel, accepting the fp16
// variant (diffusion_pytorch_model.fp16.safetensors) when the plain one is absent.
func weightsFile(dir, rel string) (string, error) {
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	v := strings.TrimSuffix(p, ".safetensors") + ".fp16.safetensors"
	if _, err := os.Stat(v); err == nil {
		return v, nil
	}
	bin := strings.TrimSuffix(p, ".safetensors") + ".bin"
	if strings.HasPrefix(rel, "text_encoder/") {
		bin = filepath.Join(dir, "text_encoder", "pytorch_model.bin")
	}
	if _, err := os.Stat(bin); err == nil {
		return "", fmt.Errorf("%s: only PyTorch pickle weights (%s); difftune reads safetensors only (download the .safetensors files of the release)", filepath.Dir(p), filepath.Base(bin))
	}
	return "", fmt.Errorf("diffusers folder %s: no %s", dir, rel)
}

// detectFolder reads a diffusers folder's configs and weight headers.
func detectFolder(dir string) (*sdModel, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "model_index.json"))
	if err != nil {
		return nil, fmt.Errorf("--model %s: a folder must be a diffusers pipeline with model_index.json: %w", dir, err)
	}
	var index struct {
		Class string `json:"_class_name"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "model_index.json"), err)
	}
	switch c := index.Class; {
	case c == "StableDiffusionPipeline" || c == "":
	case strings.Contains(c, "XL"):
		return nil, fmt.Errorf("%s is an SDXL pipeline (%s), which is not supported; %s", dir, c, supported)
	case strings.Contains(c, "StableDiffusion3"):
		return nil, fmt.Errorf("%s is a Stable Diffusion 3 pipeline (%s), which is not supported; %s", dir, c, supported)
	case strings.Contains(c, "Flux"):
		return nil, fmt.Errorf("%s is a Flux pipeline (%s), which is not supported; %s", dir, c, supported)
	default:
		return nil, fmt.Errorf("%s is a %s, which is not supported (want StableDiffusionPipeline); %s", dir, c, supported)
	}
	m := &sdModel{path: dir, folder: true, params: map[string]int64{}, dtypes: map[string]safetensors.DType{}}
	if m.unet, err = unet.LoadConfig(filepath.Join(dir, "unet", "config.json")); err != nil {
		return nil, err
	}
	if m.unet.InChannels != 4 {
		what := fmt.Sprintf("a UNet with %d input channels", m.unet.InChannels)
		if m.unet.InChannels == 9 {
			what = "an inpainting UNet (9 input channels)"
		}
		return nil, fmt.Errorf("%s has %s, which is not supported; %s", dir, what, supported)
	}
	if m.unet.SampleSize == 0 {
		m.unet.SampleSize = 64
	}
	if m.vae, err = vae.LoadConfig(filepath.Join(dir, "vae", "config.json")); err != nil {
		return nil, err
	}
	if m.text, err = textenc.LoadCLIPConfig(filepath.Join(dir, "text_encoder", "config.json")); err != nil {
		return nil, err
	}
	m.version = "SD 1.x"
	if m.text.HiddenAct == "gelu" {
		m.version = "SD 2.x"
	}
	m.sched = sdScheduler("epsilon")
	if p := filepath.Join(dir, "scheduler", "scheduler_config.json"); exists(p) {
		if m.sched, err = sampler.LoadConfig(p); err != nil {
			return nil, err
		}
	}
	for name, rel := range map[string]string{"unet": unetWeights, "vae": vaeWeights, "text encoder": textWeights} {
		p, err := weightsFile(dir, rel)
		if err != nil {
			return nil, err
		}
		h, err := safetensors.ReadHeader(p)
		if err != nil {
			return nil, err
		}
		params, dtypes := tally(h, func(string) string { return name })
		m.params[name], m.dtypes[name] = params[name], dtypes[name]
	}
	if err := checkContext(m); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
