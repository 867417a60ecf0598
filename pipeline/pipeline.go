package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/dit"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/sampler"
	"github.com/difftune/difftune/tensor"
	"github.com/difftune/difftune/textenc"
	"github.com/difftune/difftune/unet"
	"github.com/difftune/difftune/vae"
)

// Cond is the conditioning of a batch, produced by Pipeline.Encode.
type Cond struct {
	Hidden *tensor.Tensor // [N, S, W]: the text encoder's last hidden states
	Pooled *tensor.Tensor // [N, W]: pooled at the end token
	// Mask [N·S] marks the tokens a cross-attention denoiser reads (1) and the padding
	// it skips (0); nil reads all of them, as SD's UNet reads CLIP's padded sequence.
	// difftune's own models mask the padding after the first end token (see TextMask).
	Mask []int
}

// Release releases the conditioning tensors.
func (c Cond) Release() { tensor.Release(c.Hidden, c.Pooled) }

// concat stacks two conditionings along the batch (for batched guidance).
func concat(a, b Cond) Cond {
	c := Cond{Hidden: tensor.Concat(0, a.Hidden, b.Hidden), Pooled: tensor.Concat(0, a.Pooled, b.Pooled)}
	if a.Mask != nil {
		c.Mask = append(slices.Clone(a.Mask), b.Mask...)
	}
	return c
}

// Denoiser is a noise-prediction network under a pipeline's conditioning.
type Denoiser interface {
	nn.Module
	// Predict returns the model output [N, C, H, W] (ε, v or x₀ by the pipeline's
	// prediction type) for x [N, C, H, W] at timesteps t (one per sample).
	Predict(x *tensor.Tensor, t []float32, c Cond) (*tensor.Tensor, error)
}

// Tokenizer turns prompts into token id rows of one fixed length.
type Tokenizer interface {
	Encode(prompts []string) [][]int
}

// clipTokenizer drops CLIPTokenizer's truncation report.
type clipTokenizer struct{ *textenc.CLIPTokenizer }

func (t clipTokenizer) Encode(prompts []string) [][]int {
	ids, _ := t.CLIPTokenizer.Encode(prompts)
	return ids
}

// Pipeline is a loaded text-to-image model.
type Pipeline struct {
	Name string
	// files are the memory-mapped checkpoints the frozen weights alias; Release
	// closes them.
	files []io.Closer
	// Description says what was loaded, for the CLI to print ("SD 1.x single-file
	// checkpoint: UNet 860M (F16), VAE, CLIP ViT-L text encoder").
	Description string
	Denoiser    Denoiser
	Tokenizer   Tokenizer
	Text        *textenc.CLIPText
	// VAE maps images to the denoiser's latents and back; nil in pixel space.
	VAE *vae.AutoencoderKL
	// ClipSkip selects the text encoder layer (0 or 1: the last).
	ClipSkip int
	// Scheduler is the noise schedule the model was trained with.
	Scheduler sampler.Config
	// Channels is the image (or latent) channel count; Factor the pixels per latent
	// (1 in pixel space); Size the default image side in pixels; Multiple the step
	// image sides must be multiples of.
	Channels, Factor, Size, Multiple int
	// Spec describes a difftune model (built by NewFromSpec or read from a model file);
	// nil for the other pipelines.
	Spec *ModelSpec
}

// Presets lists the pipelines Load builds by name.
var Presets = map[string]string{
	"emoji-base":  "difftune's built-in 32×32 text-to-image model, trained on Noto Emoji (the default model)",
	"tiny-unet":   "pixel-space UNet (32×32 RGB), byte tokenizer, tiny CLIP, random weights (seed 1)",
	"tiny-dit":    "pixel-space DiT (32×32 RGB), pooled tiny-CLIP text projected into its class embedding, random weights (seed 1)",
	"tiny-pixart": "pixel-space PixArt-α (32×32 RGB), tiny-CLIP captions, random weights (seed 1)",
}

// Info describes a preset's image geometry without building it.
type Info struct {
	Size, Multiple int  // default side in pixels; sides must be multiples of Multiple
	Fixed          bool // only Size×Size images (DiT's learned grid)
}

// Describe returns the image geometry of a preset, a diffusers folder or a single-file
// checkpoint without loading weights (configs and safetensors headers only). It
// fails as Load does for a model it cannot load, naming what it found.
func Describe(model string) (Info, error) {
	if model == DefaultModel {
		s, err := emojiSpec()
		return s.info(), err
	}
	if _, ok := Presets[model]; ok {
		return Info{Size: 32, Multiple: 8, Fixed: model == "tiny-dit"}, nil
	}
	if isModelFile(model) {
		h, err := safetensors.ReadHeader(model)
		if err != nil {
			return Info{}, err
		}
		var s ModelSpec
		if err := json.Unmarshal([]byte(h.Metadata[SpecKey]), &s); err != nil {
			return Info{}, fmt.Errorf("%s: metadata %q: %w", model, SpecKey, err)
		}
		return s.info(), nil
	}
	m, err := detect(model, Options{})
	if err != nil {
		return Info{}, err
	}
	return m.info(), nil
}

// PresetNames returns the preset names, sorted.
func PresetNames() []string {
	var out []string
	for k := range Presets {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Load builds the pipeline of model: a preset name, a diffusers folder, or a
// single-file Stable Diffusion 1.x/2.x checkpoint (see LoadWith).
func Load(model string) (*Pipeline, error) { return LoadWith(model, Options{}) }

// loadPreset builds a tiny pixel-space pipeline, or loads the embedded emoji-base.
func loadPreset(model string) (*Pipeline, error) {
	if model == DefaultModel {
		return loadEmojiBase()
	}
	const seed = 1
	text, err := textenc.NewCLIPText(textenc.TinyCLIPConfig(), rand.New(rand.NewPCG(seed, 7)), false)
	if err != nil {
		return nil, err
	}
	nn.SetTrainable(text, false)
	p := &Pipeline{Name: model, Description: model + ": " + Presets[model], Tokenizer: textenc.ByteTokenizer{Length: textenc.TinyCLIPConfig().MaxPositionEmbeddings}, Text: text,
		Channels: 3, Factor: 1, Size: 32, Multiple: 8,
		Scheduler: sampler.Config{NumTrainTimesteps: 1000, BetaStart: 1e-4, BetaEnd: 0.02, BetaSchedule: "linear", PredictionType: "epsilon"}}
	switch model {
	case "tiny-unet":
		m, err := unet.Presets[model].NewRandom()
		if err != nil {
			return nil, err
		}
		p.Denoiser = &unetDenoiser{m}
	case "tiny-dit":
		m, err := dit.New(dit.Presets[model], seed)
		if err != nil {
			return nil, err
		}
		d := m.(*dit.DiT)
		proj := nn.NewLinear(rand.New(rand.NewPCG(seed, 8)), textenc.TinyCLIPConfig().HiddenSize, d.Config.HiddenSize, true)
		p.Denoiser = &ditDenoiser{DiT: d, TextProj: proj}
	case "tiny-pixart":
		m, err := dit.New(dit.Presets[model], seed)
		if err != nil {
			return nil, err
		}
		p.Denoiser = &pixartDenoiser{m.(*dit.PixArt)}
	}
	fillZeroWeights(p.Denoiser, rand.New(rand.NewPCG(seed, 9)))
	nn.SetTrainable(p.Denoiser, false)
	return p, nil
}

// fillZeroWeights gives every all-zero weight matrix of a randomly initialised model
// small random values (N(0, 0.02²)). DiT's adaLN-Zero and PixArt's zero-initialised
// gates and output layers make a fresh model the identity with a zero output, through
// which no adapter receives a gradient; a pretrained model has no such zeros, and the
// tiny pipelines stand in for one.
func fillZeroWeights(m nn.Module, rng *rand.Rand) {
	for _, p := range m.Params("") {
		t := p.T()
		if t.Rank() < 2 || t.DType() != tensor.F32 || slices.ContainsFunc(t.Data(), func(v float32) bool { return v != 0 }) {
			continue
		}
		for i := range t.Data() {
			t.Data()[i] = float32(rng.NormFloat64() * 0.02)
		}
	}
}

// Release frees the pipeline's weights.
// It accepts a partly built pipeline (a failed load).
func (p *Pipeline) Release() {
	if r, ok := p.Denoiser.(interface{ Release() }); ok {
		r.Release() // models with buffers outside Params (position tables)
	} else if p.Denoiser != nil {
		nn.ReleaseParams(p.Denoiser)
	}
	if p.Text != nil {
		nn.ReleaseParams(p.Text)
	}
	if p.VAE != nil {
		nn.ReleaseParams(p.VAE)
	}
	for _, f := range p.files { // after the weights that alias them
		f.Close()
	}
	p.files = nil
}

// Encode turns prompts into conditioning, without recording gradients.
func (p *Pipeline) Encode(prompts []string) (c Cond, err error) {
	tensor.NoGrad(func() { c, err = p.EncodeGrad(prompts) })
	return c, err
}

// EncodeGrad turns prompts into conditioning, recording gradients to the text
// encoder's trainable weights (pretraining trains it with the denoiser).
func (p *Pipeline) EncodeGrad(prompts []string) (Cond, error) {
	ids := p.Tokenizer.Encode(prompts)
	out, err := p.Text.Forward(ids, p.ClipSkip)
	if err != nil {
		return Cond{}, err
	}
	tensor.Release(out.TextEmbeds)
	return Cond{Hidden: out.LastHidden, Pooled: out.Pooled, Mask: p.mask(ids)}, nil
}

// TextMask returns the cross-attention mask of prompts' conditioning (see Cond.Mask):
// for difftune's own models, the start token, the words and the first end token; nil
// for the other pipelines, whose denoisers read every token.
func (p *Pipeline) TextMask(prompts []string) []int {
	if p.Spec == nil {
		return nil
	}
	return p.mask(p.Tokenizer.Encode(prompts))
}

func (p *Pipeline) mask(ids [][]int) []int {
	if p.Spec == nil {
		return nil
	}
	var m []int
	for _, row := range ids {
		end := slices.Index(row, textenc.WordEnd)
		for j := range row {
			keep := 0
			if end < 0 || j <= end {
				keep = 1
			}
			m = append(m, keep)
		}
	}
	return m
}

// Request is one generation.
type Request struct {
	Prompt, Negative string
	N                int     // images
	Steps            int     // sampler steps
	Sampler          string  // a sampler.New name
	CFG              float64 // guidance scale; 1 runs the conditional branch only
	Seed             uint64
	Width, Height    int                   // pixels; 0 means the pipeline's Size
	Progress         func(done, total int) // called after each model evaluation
}

// CheckSize validates a width or height, suggesting the nearest valid value.
func (p *Pipeline) CheckSize(w, h int) error {
	for _, v := range []int{w, h} {
		if v <= 0 || v%p.Multiple != 0 {
			near := max(p.Multiple, (v+p.Multiple/2)/p.Multiple*p.Multiple)
			return fmt.Errorf("size %dx%d: each side must be a positive multiple of %d (nearest valid: %d)", w, h, p.Multiple, near)
		}
	}
	return nil
}

// Generate samples req.N images. The same request gives the same images on any
// machine: the initial noise and every ancestral draw come from sampler.RNG(seed),
// the initial latents first, as one [N, C, H, W] draw.
func (p *Pipeline) Generate(ctx context.Context, req Request) ([]*image.RGBA, error) {
	if req.Width == 0 {
		req.Width = p.Size
	}
	if req.Height == 0 {
		req.Height = p.Size
	}
	if err := p.CheckSize(req.Width, req.Height); err != nil {
		return nil, err
	}
	if req.N <= 0 || req.Steps <= 0 {
		return nil, fmt.Errorf("%d images, %d steps: both must be positive", req.N, req.Steps)
	}
	s, err := sampler.New(req.Sampler, p.Scheduler)
	if err != nil {
		return nil, err
	}
	prompts, negs := make([]string, req.N), make([]string, req.N)
	for i := range prompts {
		prompts[i], negs[i] = req.Prompt, req.Negative
	}
	cond, err := p.Encode(prompts)
	if err != nil {
		return nil, err
	}
	defer cond.Release()
	guided := req.CFG != 1
	both := cond
	if guided {
		uncond, err := p.Encode(negs)
		if err != nil {
			return nil, err
		}
		both = concat(uncond, cond) // unconditional half first, as diffusers batches it
		uncond.Release()
		defer both.Release()
	}
	model := func(x *tensor.Tensor, t float32) (*tensor.Tensor, error) {
		ts := make([]float32, x.Dim(0))
		for i := range ts {
			ts[i] = t
		}
		var out *tensor.Tensor
		var err error
		tensor.NoGrad(func() { out, err = p.predict(x, ts, both) })
		return out, err
	}
	if guided {
		model = sampler.Guidance{Scale: float32(req.CFG)}.Batched(model)
	}
	rng := sampler.NewRNG(req.Seed)
	x0 := rng.Randn(req.N, p.Channels, req.Height/p.Factor, req.Width/p.Factor)
	defer x0.Release()
	x, err := sampler.Sample(ctx, s, model, x0, req.Steps, rng, req.Progress)
	if err != nil {
		return nil, err
	}
	img := p.DecodeLatents(x)
	x.Release()
	defer img.Release()
	return sampler.ToImages(img)
}

// EncodeImages maps images [N, 3, H, W] in [-1, 1] to the denoiser's input space:
// the VAE's scaled latents (the distribution's mean) [N, 4, H/8, W/8], or a copy of
// the images in pixel space. The result carries no graph.
func (p *Pipeline) EncodeImages(img *tensor.Tensor) *tensor.Tensor {
	if p.VAE == nil {
		return img.Clone()
	}
	return p.VAE.EncodeLatents(img, nil)
}

// DecodeLatents maps the denoiser's latents back to images in [-1, 1] (a copy in
// pixel space), without recording gradients.
func (p *Pipeline) DecodeLatents(x *tensor.Tensor) *tensor.Tensor {
	if p.VAE == nil {
		return x.Clone()
	}
	var out *tensor.Tensor
	tensor.NoGrad(func() { out = p.VAE.DecodeLatents(x) })
	return out
}

// predict runs the denoiser and keeps the first Channels output channels (learned-
// sigma models also predict a variance).
func (p *Pipeline) predict(x *tensor.Tensor, t []float32, c Cond) (*tensor.Tensor, error) {
	out, err := p.Denoiser.Predict(x, t, c)
	if err != nil || out.Dim(1) == p.Channels {
		return out, err
	}
	defer out.Release()
	// Slice copies (or, for one sample, views storage it keeps alive): no second copy.
	return tensor.Slice(out, 1, 0, p.Channels), nil
}

// AdapterSpec is an adapter file with its strength, as "file.safetensors:0.8" gives it.
type AdapterSpec struct {
	Path   string
	Weight float64
	// IgnoreUnknown skips keys that are not adapter tensors (with a warning)
	// instead of refusing the file.
	IgnoreUnknown bool
}

// ParseAdapterSpec reads "file.safetensors[:weight]" (weight 1 when absent).
func ParseAdapterSpec(s string) (AdapterSpec, error) {
	spec := AdapterSpec{Path: s, Weight: 1}
	if i := strings.LastIndex(s, ":"); i > 0 {
		if w, err := strconv.ParseFloat(s[i+1:], 64); err == nil {
			spec.Path, spec.Weight = s[:i], w
		}
	}
	if spec.Path == "" {
		return spec, fmt.Errorf("--lora %q: want FILE[:WEIGHT]", s)
	}
	return spec, nil
}

// Merge loads adapter files and merges them into the denoiser's weights; Unmerge on
// the result restores the weights exactly. Errors name the file and what does not fit.
func (p *Pipeline) Merge(specs []AdapterSpec) (*adapters.Merged, error) {
	var files []adapters.Weighted
	defer func() {
		for _, f := range files {
			f.File.Release()
		}
	}()
	for _, s := range specs {
		load := adapters.Load
		if s.IgnoreUnknown {
			load = adapters.LoadIgnoringUnknown
		}
		f, skipped, err := load(s.Path)
		if err != nil {
			return nil, err
		}
		if len(skipped) > 0 {
			fmt.Fprintf(os.Stderr, "difftune: %s: %d tensors skipped (text-encoder adapters are not applied; unknown keys with --ignore-unknown)\n", s.Path, len(skipped))
		}
		files = append(files, adapters.Weighted{File: f, Weight: s.Weight})
	}
	if len(files) == 0 {
		return nil, nil
	}
	return adapters.Merge(p.Denoiser, files)
}

// WriteImages writes images with their parameters chunk. out ending in ".png" names
// the file (with n > 1: out is the grid and the images are out-1.png, out-2.png, ...);
// otherwise out is a folder receiving <seed>-<i>.png and, with n > 1, <seed>-grid.png.
// It returns the paths written.
func WriteImages(out string, imgs []*image.RGBA, params sampler.Parameters) ([]string, error) {
	text := map[string]string{"parameters": params.String(), "Software": "difftune"}
	var paths []string
	write := func(path string, img image.Image) error {
		paths = append(paths, path)
		return sampler.WritePNG(path, img, text)
	}
	if strings.HasSuffix(strings.ToLower(out), ".png") {
		if len(imgs) == 1 {
			return paths, write(out, imgs[0])
		}
		stem := out[:len(out)-4]
		for i, img := range imgs {
			if err := write(fmt.Sprintf("%s-%d.png", stem, i+1), img); err != nil {
				return paths, err
			}
		}
		return paths, write(out, sampler.Grid(imgs))
	}
	for i, img := range imgs {
		if err := write(filepath.Join(out, fmt.Sprintf("%d-%d.png", params.Seed, i+1)), img); err != nil {
			return paths, err
		}
	}
	if len(imgs) > 1 {
		return paths, write(filepath.Join(out, fmt.Sprintf("%d-grid.png", params.Seed)), sampler.Grid(imgs))
	}
	return paths, nil
}
