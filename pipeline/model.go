package pipeline

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/difftune/difftune/dit"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/sampler"
	"github.com/difftune/difftune/tensor"
	"github.com/difftune/difftune/textenc"
)

// SpecKey is the metadata key of a difftune model file: a self-contained text-to-image
// model (a pixel-space PixArt-style transformer and a CLIP-architecture text encoder
// over its own word vocabulary) that difftune pretrain writes and the emoji-base
// preset embeds. Its tensors are the denoiser's under "denoiser." (diffusers
// PixArtTransformer2DModel names) and the text encoder's under "text." (Hugging Face
// CLIPTextModel names).
const SpecKey = "difftune_model"

// ModelSpec describes a difftune model: everything needed to build it before its
// weights are read.
type ModelSpec struct {
	Name        string             `json:"name"`
	Description string             `json:"description"`
	Denoiser    dit.PixArtConfig   `json:"denoiser"`
	Text        textenc.CLIPConfig `json:"text"`
	Vocab       []string           `json:"vocab"`
	Scheduler   sampler.Config     `json:"scheduler"`
	Size        int                `json:"size"` // the side it was trained at, in pixels
}

// Validate reports the first field a model cannot be built from.
func (s ModelSpec) Validate() error {
	if err := s.Denoiser.Validate(); err != nil {
		return fmt.Errorf("denoiser: %w", err)
	}
	if err := s.Text.Validate(); err != nil {
		return fmt.Errorf("text encoder: %w", err)
	}
	switch {
	case s.Denoiser.InChannels != 3:
		return fmt.Errorf("denoiser: in_channels %d: a difftune model works in RGB pixel space (3)", s.Denoiser.InChannels)
	case s.Denoiser.CaptionChannels != s.Text.HiddenSize:
		return fmt.Errorf("denoiser: caption_channels %d differs from the text encoder's hidden_size %d", s.Denoiser.CaptionChannels, s.Text.HiddenSize)
	case s.Denoiser.PooledProjectionDim != 0 && s.Denoiser.PooledProjectionDim != s.Text.HiddenSize:
		return fmt.Errorf("denoiser: pooled_projection_dim %d differs from the text encoder's hidden_size %d", s.Denoiser.PooledProjectionDim, s.Text.HiddenSize)
	case s.Text.VocabSize != textenc.WordFirst+len(s.Vocab):
		return fmt.Errorf("text encoder: vocab_size %d, but the vocabulary has %d words (+%d reserved ids)", s.Text.VocabSize, len(s.Vocab), textenc.WordFirst)
	case s.Text.EOSTokenID != textenc.WordEnd:
		return fmt.Errorf("text encoder: eos_token_id %d, want %d (the word tokenizer's end token)", s.Text.EOSTokenID, textenc.WordEnd)
	case s.Size <= 0 || s.Size%s.Denoiser.PatchSize != 0:
		return fmt.Errorf("size %d: want a positive multiple of the patch size %d", s.Size, s.Denoiser.PatchSize)
	}
	return nil
}

// info is the spec's image geometry: any multiple of the patch size (PixArt's
// positions are computed for the grid).
func (s ModelSpec) info() Info { return Info{Size: s.Size, Multiple: s.Denoiser.PatchSize} }

// NewFromSpec builds the pipeline a spec describes, randomly initialised from seed
// (the start of pretraining). Its weights are frozen; SetTrainable turns them on.
func NewFromSpec(s ModelSpec, seed uint64) (*Pipeline, error) {
	return newFromSpec(s, rand.New(rand.NewPCG(seed, 11)), rand.New(rand.NewPCG(seed, 12)))
}

// newFromSpec builds the pipeline from the given random streams; nil streams build
// zeros, for a model whose weights are loaded next.
func newFromSpec(s ModelSpec, textRNG, denoiserRNG *rand.Rand) (*Pipeline, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("model %q: %w", s.Name, err)
	}
	tok, err := textenc.NewWordTokenizer(s.Vocab, s.Text.MaxPositionEmbeddings)
	if err != nil {
		return nil, err
	}
	text, err := textenc.NewCLIPText(s.Text, textRNG, false)
	if err != nil {
		return nil, err
	}
	m, err := dit.NewPixArt(s.Denoiser, denoiserRNG)
	if err != nil {
		nn.ReleaseParams(text)
		return nil, err
	}
	spec := s
	p := &Pipeline{Name: s.Name, Description: s.Name + ": " + s.Description, Tokenizer: tok, Text: text,
		Denoiser: &pixartDenoiser{m}, Scheduler: s.Scheduler, Channels: 3, Factor: 1, Size: s.Size,
		Multiple: s.Denoiser.PatchSize, Spec: &spec}
	nn.SetTrainable(p.Text, false)
	nn.SetTrainable(p.Denoiser, false)
	return p, nil
}

// LoadModelFile loads a difftune model file (see SpecKey) from path.
func LoadModelFile(path string) (*Pipeline, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return loadModel(f)
}

// LoadModelBytes loads a difftune model file held in memory; name stands in for its
// path in errors.
func LoadModelBytes(name string, data []byte) (*Pipeline, error) {
	f, err := safetensors.OpenBytes(name, data)
	if err != nil {
		return nil, err
	}
	return loadModel(f)
}

// isModelFile reports whether path is a safetensors file carrying a difftune spec.
func isModelFile(path string) bool {
	if !strings.HasSuffix(path, ".safetensors") {
		return false
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return false
	}
	h, err := safetensors.ReadHeader(path)
	return err == nil && h.Metadata[SpecKey] != ""
}

func loadModel(f *safetensors.File) (*Pipeline, error) {
	raw := f.Metadata()[SpecKey]
	if raw == "" {
		return nil, fmt.Errorf("%s: no %q metadata: not a difftune model file", f.Path(), SpecKey)
	}
	var s ModelSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return nil, fmt.Errorf("%s: metadata %q: %w", f.Path(), SpecKey, err)
	}
	p, err := newFromSpec(s, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path(), err)
	}
	if err := nn.LoadFrom(p.Text, f, nn.LoadOptions{Prefix: "text."}); err != nil {
		p.Release()
		return nil, err
	}
	if err := nn.LoadFrom(p.Denoiser, f, nn.LoadOptions{Prefix: "denoiser."}); err != nil {
		p.Release()
		return nil, err
	}
	return p, nil
}

// SaveModel writes a pipeline built by NewFromSpec (or loaded from a model file) as a
// difftune model file, atomically: its weights in dtype (F32, or BF16 to halve the
// file), the spec, and metadata.
func (p *Pipeline) SaveModel(path string, dtype tensor.DType, metadata map[string]string) error {
	if p.Spec == nil {
		return fmt.Errorf("save model %s: %s is not a difftune model (only pretrained difftune models are saved whole)", path, p.Name)
	}
	spec, err := json.Marshal(p.Spec)
	if err != nil {
		return err
	}
	meta := map[string]string{SpecKey: string(spec)}
	for k, v := range metadata {
		meta[k] = v
	}
	var recs []safetensors.Tensor
	for _, part := range []struct {
		m      nn.Module
		prefix string
	}{{p.Text, "text."}, {p.Denoiser, "denoiser."}} {
		for _, prm := range part.m.Params(part.prefix) {
			t := prm.T()
			if dtype == tensor.BF16 && t.DType() == tensor.F32 {
				bits := make([]uint16, t.Len())
				for i, v := range t.Data() {
					bits[i] = tensor.F32ToBF16(v)
				}
				h := tensor.FromBits(tensor.BF16, bits, t.Shape()...)
				recs = append(recs, nn.Record(prm.Name, h))
				h.Release()
				continue
			}
			recs = append(recs, nn.Record(prm.Name, t))
		}
	}
	if err := safetensors.Write(path, recs, meta); err != nil {
		return fmt.Errorf("save model %s: %w", path, err)
	}
	return nil
}
