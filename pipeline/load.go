package pipeline

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/textenc"
	"github.com/difftune/difftune/unet"
	"github.com/difftune/difftune/vae"
)

// LoadWith builds the pipeline of model:
//   - a preset name (Presets);
//   - a diffusers folder: model_index.json with unet/, vae/, text_encoder/, tokenizer/
//     and scheduler/ (config.json or scheduler_config.json, and safetensors weights);
//   - a single-file Stable Diffusion 1.x/2.x checkpoint (.safetensors, F32/F16/BF16
//     weights under the original model.diffusion_model., first_stage_model. and
//     cond_stage_model. names), whose architecture is detected from its keys and
//     shapes. It needs o.Tokenizer.
//
// Frozen weights keep their 16-bit storage (the kernels widen them); norms and biases
// are widened. SDXL, SD3, Flux, inpainting and unrecognised checkpoints are refused
// with an error naming what was found and what is supported.
func LoadWith(model string, o Options) (*Pipeline, error) {
	if _, ok := Presets[model]; ok {
		p, err := loadPreset(model)
		if err == nil {
			p.ClipSkip = o.ClipSkip
		}
		return p, err
	}
	if isModelFile(model) {
		return LoadModelFile(model)
	}
	m, err := detect(model, o)
	if err != nil {
		return nil, err
	}
	tok, err := loadTokenizer(m, o)
	if err != nil {
		return nil, err
	}
	if o.ClipSkip < 0 || o.ClipSkip > m.text.NumHiddenLayers {
		return nil, fmt.Errorf("clip skip %d: want 0..%d (the text encoder's layers)", o.ClipSkip, m.text.NumHiddenLayers)
	}
	info := m.info()
	p := &Pipeline{Name: model, Description: m.describe(), Tokenizer: tok, ClipSkip: o.ClipSkip, Scheduler: m.sched,
		Channels: m.unet.InChannels, Factor: m.vae.Factor(), Size: info.Size, Multiple: info.Multiple}
	if err := p.loadWeights(m); err != nil {
		p.Release()
		return nil, err
	}
	return p, nil
}

// loadTokenizer reads o.Tokenizer, or the folder's tokenizer/. A single file has none:
// the error says where vocab.json and merges.txt come from.
func loadTokenizer(m *sdModel, o Options) (Tokenizer, error) {
	dir := o.Tokenizer
	if dir == "" && m.folder {
		dir = filepath.Join(m.path, "tokenizer")
	}
	if dir == "" {
		repo := "stable-diffusion-v1-5/stable-diffusion-v1-5"
		if m.openCLIP {
			repo = "stabilityai/stable-diffusion-2-1"
		}
		return nil, fmt.Errorf("%s is a single-file checkpoint, which has no tokenizer: pass --tokenizer DIR, a folder with vocab.json and merges.txt "+
			"(the tokenizer/ folder of the model's diffusers release, e.g. %s/tokenizer)", m.path, repo)
	}
	t, err := textenc.LoadCLIPTokenizer(dir)
	if err != nil {
		return nil, err
	}
	if !m.folder && m.openCLIP {
		t.PadID = 0 // OpenCLIP pads with 0 ("!"), whichever CLIP vocabulary folder was given
	}
	t.Length = m.text.MaxPositionEmbeddings
	return clipTokenizer{t}, nil
}

// loadWeights builds the UNet, VAE and text encoder frozen and reads their weights.
func (p *Pipeline) loadWeights(m *sdModel) error {
	u, err := unet.NewForLoading(m.unet)
	if err != nil {
		return err
	}
	p.Denoiser = &unetDenoiser{u}
	if p.VAE, err = vae.NewForLoading(m.vae); err != nil {
		return err
	}
	// NewCLIPText draws placeholder weights; the checkpoint replaces every one.
	if p.Text, err = textenc.NewCLIPText(m.text, rand.New(rand.NewPCG(1, 1)), false); err != nil {
		return err
	}
	for _, mod := range []nn.Module{p.Denoiser, p.VAE, p.Text} {
		nn.SetTrainable(mod, false)
	}
	// Frozen matrices stay 16-bit and are views of the memory-mapped files, which the
	// pipeline keeps open until Release: weights are read lazily, page by page.
	half := nn.LoadOptions{KeepHalf: true, Mapped: true}
	if m.folder {
		for _, c := range []struct {
			mod nn.Module
			rel string
		}{{p.Denoiser, unetWeights}, {p.VAE, vaeWeights}, {p.Text, textWeights}} {
			path, err := weightsFile(m.path, c.rel)
			if err != nil {
				return err
			}
			f, err := safetensors.Open(path)
			if err != nil {
				return err
			}
			p.files = append(p.files, f)
			if err := nn.LoadFrom(c.mod, identity(f), half); err != nil {
				return err
			}
		}
		return nil
	}
	f, err := safetensors.Open(m.path)
	if err != nil {
		return err
	}
	p.files = append(p.files, f)
	views, err := singleFileViews(f, m)
	if err != nil {
		return err
	}
	for i, mod := range []nn.Module{p.Denoiser, p.VAE, p.Text} {
		if err := nn.LoadFrom(mod, views[i], half); err != nil {
			return err
		}
	}
	return nil
}

// view is a safetensors file seen under other names: each parameter name maps to a
// file key, with the parameter's shape (the same bytes), or to a block of rows of a
// fused tensor. It is the nn.Source through which a single-file checkpoint loads into
// diffusers-named models.
type view struct {
	f     *safetensors.File
	parts map[string]part
}

type part struct {
	key      string
	shape    []int
	from, to int // rows [from, to) when to > 0
}

func (v *view) Path() string { return v.f.Path() }

func (v *view) Names() []string {
	out := make([]string, 0, len(v.parts))
	for k := range v.parts {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (v *view) Info(name string) (safetensors.TensorInfo, bool) {
	p, ok := v.parts[name]
	if !ok {
		return safetensors.TensorInfo{}, false
	}
	info, ok := v.f.Info(p.key)
	info.Name, info.Shape = name, slices.Clone(p.shape)
	return info, ok
}

func (v *view) Bytes(name string) ([]byte, error) {
	p, ok := v.parts[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", v.f.Path(), name)
	}
	b, err := v.f.Bytes(p.key)
	if err != nil || p.to == 0 {
		return b, err
	}
	info, _ := v.f.Info(p.key)
	row := len(b) / info.Shape[0]
	return b[p.from*row : p.to*row], nil
}

// identity is a diffusers component file as it is, less the position_ids buffer
// that older transformers saves beside CLIP's weights.
func identity(f *safetensors.File) *view {
	v := &view{f: f, parts: map[string]part{}}
	for _, k := range f.Names() {
		if strings.HasSuffix(k, "embeddings.position_ids") {
			continue
		}
		info, _ := f.Info(k)
		v.parts[k] = part{key: k, shape: info.Shape}
	}
	return v
}

// vaeModules are the top-level modules of an LDM first_stage_model; other keys
// under the prefix (a training loss's discriminator) are not part of the VAE.
var vaeModules = []string{"encoder.", "decoder.", "quant_conv.", "post_quant_conv."}

// singleFileViews maps a single-file checkpoint's UNet, VAE and text encoder onto
// diffusers names. Keys outside the three components (alphas_cumprod, model_ema.*,
// ...) are not read.
func singleFileViews(f *safetensors.File, m *sdModel) ([3]*view, error) {
	var out [3]*view
	for i := range out {
		out[i] = &view{f: f, parts: map[string]part{}}
	}
	shape := func(k string) []int { info, _ := f.Info(k); return info.Shape }
	var unetKeys, vaeKeys []string
	text := map[string][]int{}
	for _, k := range f.Names() {
		switch {
		case strings.HasPrefix(k, unet.LDMPrefix):
			unetKeys = append(unetKeys, k)
		case strings.HasPrefix(k, vae.LDMPrefix):
			rest := strings.TrimPrefix(k, vae.LDMPrefix)
			if slices.ContainsFunc(vaeModules, func(p string) bool { return strings.HasPrefix(rest, p) }) {
				vaeKeys = append(vaeKeys, k)
			}
		case !m.openCLIP && strings.HasPrefix(k, textenc.LDMPrefix):
			if rest := strings.TrimPrefix(k, textenc.LDMPrefix); !strings.HasSuffix(rest, "position_ids") {
				out[2].parts[rest] = part{key: k, shape: shape(k)}
			}
		case m.openCLIP && strings.HasPrefix(k, textenc.OpenCLIPPrefix):
			text[strings.TrimPrefix(k, textenc.OpenCLIPPrefix)] = shape(k)
		}
	}
	names, err := unet.LDMToDiffusers(m.unet, unetKeys)
	if err != nil {
		return out, fmt.Errorf("%s: %w", f.Path(), err)
	}
	for ldm, d := range names {
		out[0].parts[d] = part{key: ldm, shape: shape(ldm)}
	}
	if names, err = vae.LDMToDiffusers(m.vae, vaeKeys); err != nil {
		return out, fmt.Errorf("%s: %w", f.Path(), err)
	}
	for ldm, d := range names {
		out[1].parts[d] = part{key: ldm, shape: vae.DiffusersShape(d, shape(ldm))}
	}
	if m.openCLIP {
		parts, hf, err := textenc.OpenCLIPToHF(text, true)
		if err != nil {
			return out, fmt.Errorf("%s: %w", f.Path(), err)
		}
		for name, p := range parts {
			out[2].parts[name] = part{key: textenc.OpenCLIPPrefix + p.Key, shape: hf[name], from: p.From, to: p.To}
		}
	}
	return out, nil
}
