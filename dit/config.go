package dit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
)

// Config is a DiTConfig or a PixArtConfig.
type Config interface {
	// Arch returns "dit" or "pixart".
	Arch() string
	// Validate reports the first unusable field, naming it.
	Validate() error
	// NumParams returns the parameter count the config builds.
	NumParams() int64
}

// Model is a *DiT or a *PixArt.
type Model interface {
	nn.Module
	// Load reads the model's tensors from a safetensors checkpoint.
	Load(path string, o nn.LoadOptions) error
	// Save writes them (atomically).
	Save(path, prefix string, metadata map[string]string) error
	// Release releases every parameter and buffer.
	Release()
}

// New builds the model a config describes, randomly initialised from seed.
func New(c Config, seed uint64) (Model, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	switch c := c.(type) {
	case DiTConfig:
		return NewDiT(c, rng)
	case PixArtConfig:
		return NewPixArt(c, rng)
	}
	return nil, fmt.Errorf("dit.New: unknown config type %T", c)
}

// Presets maps preset names to configs: the DiT paper's models (dit-s-2 ... dit-xl-8,
// dit-xl-2-512), PixArt-α (pixart-alpha-512, pixart-alpha-1024) and the small
// pixel-space test models tiny-dit and tiny-pixart.
var Presets = func() map[string]Config {
	ps := ditPresets()
	for k, v := range pixArtPresets() {
		ps[k] = v
	}
	return ps
}()

// LoadConfig reads a config file: a diffusers config.json (it has "_class_name":
// Transformer2DModel or PixArtTransformer2DModel; absent keys take that class's
// defaults) or a JSON object of DiT's constructor arguments (absent keys take
// models.DiT's defaults; unknown keys are an error, as Python would raise). Errors name
// the file and the field.
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := parseConfig(raw, "")
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// parseConfig decodes a DiT or diffusers config; class is the diffusers class to
// assume when the JSON names none ("" = decide from the keys).
func parseConfig(raw []byte, class string) (Config, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if name, ok := keys["_class_name"]; ok {
		if err := json.Unmarshal(name, &class); err != nil {
			return nil, fmt.Errorf("field \"_class_name\": %w", err)
		}
	}
	var c Config
	switch {
	case class == "Transformer2DModel" || class == "PixArtTransformer2DModel":
		p := transformer2DDefaults()
		if class == "PixArtTransformer2DModel" {
			p = pixArtDefaults()
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fieldError(err)
		}
		p.ClassName = class
		c = p
	case class != "":
		return nil, fmt.Errorf("field \"_class_name\" = %q: want Transformer2DModel or PixArtTransformer2DModel (PixArt-α)", class)
	case hasDiTKey(keys):
		d := defaultDiTConfig()
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			return nil, fieldError(err)
		}
		c = d
	default:
		return nil, fmt.Errorf("neither a diffusers config (no \"_class_name\") nor DiT constructor arguments (no \"hidden_size\", \"depth\", ...)")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// hasDiTKey reports whether a JSON object has any of models.DiT's keyword arguments.
func hasDiTKey(keys map[string]json.RawMessage) bool {
	for _, k := range []string{"input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads",
		"mlp_ratio", "class_dropout_prob", "num_classes", "learn_sigma"} {
		if keys[k] != nil {
			return true
		}
	}
	return false
}

// fieldError rewords encoding/json's errors to name the field.
func fieldError(err error) error {
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		return fmt.Errorf("field %q: a JSON %s cannot be a %v", te.Field, te.Value, te.Type)
	}
	return err
}

var blockIndex = regexp.MustCompile(`^(blocks|transformer_blocks)\.(\d+)\.`)

// DetectConfig infers the config of a DiT or PixArt-α checkpoint from its tensor names
// and shapes alone (no tensor data is read). Shapes fix the depth, width, patch size,
// channels, classes, learned sigma, MLP ratio, DiT's input size (from pos_embed),
// PixArt's caption width, attention biases and additional conditions. They cannot
// fix these, which come from the header's "config" metadata when it holds one (as
// difftune writes and the golden files have), and otherwise from documented defaults:
//
//   - DiT num_heads: the paper's count for its widths (384: 6, 768: 12, 1024: 16,
//     1152: 16), else hidden_size/64.
//   - DiT class_dropout_prob: 0.1 (the table's last row is taken to be the null class).
//   - PixArt attention_head_dim: 72 (PixArt-α's), so heads = width/72.
//   - PixArt sample_size: 128 when the resolution/aspect-ratio embedders are present
//     (the 1024 px model), else 64; interpolation_scale: null (derived from it).
//
// When metadata is used, every shape-derived field must agree with it; a mismatch is
// an error naming the field.
func DetectConfig(h *safetensors.Header) (Config, error) {
	shapes := map[string][]int{}
	depth := 0
	for _, t := range h.Tensors {
		shapes[t.Name] = t.Shape
		if m := blockIndex.FindStringSubmatch(t.Name); m != nil {
			i, _ := strconv.Atoi(m[2])
			depth = max(depth, i+1)
		}
	}
	shape := func(name string, rank int) ([]int, error) {
		s, ok := shapes[name]
		if !ok || len(s) != rank {
			return nil, fmt.Errorf("detect config: tensor %q missing or not rank %d (is this a DiT or PixArt-α checkpoint? pass its config.json)", name, rank)
		}
		return s, nil
	}
	var meta []byte
	if s, ok := h.Metadata["config"]; ok {
		meta = []byte(s)
	}
	switch {
	case shapes["x_embedder.proj.weight"] != nil:
		return detectDiT(shape, depth, meta)
	case shapes["pos_embed.proj.weight"] != nil && shapes["adaln_single.linear.weight"] != nil:
		return detectPixArt(shape, shapes, depth, meta)
	}
	return nil, fmt.Errorf("detect config: neither x_embedder.proj.weight (DiT) nor pos_embed.proj.weight + adaln_single.linear.weight (PixArt-α) found (pass the model's config.json)")
}

type shapeFn func(name string, rank int) ([]int, error)

func detectDiT(shape shapeFn, depth int, meta []byte) (Config, error) {
	var s [5][]int
	var err error
	for i, k := range []struct {
		name string
		rank int
	}{{"x_embedder.proj.weight", 4}, {"pos_embed", 3}, {"y_embedder.embedding_table.weight", 2},
		{"final_layer.linear.weight", 2}, {"blocks.0.mlp.fc1.weight", 2}} {
		if k.name == "blocks.0.mlp.fc1.weight" && depth == 0 {
			s[i] = []int{4, 1}
			continue
		}
		if s[i], err = shape(k.name, k.rank); err != nil {
			return nil, err
		}
	}
	d, ch, p := s[0][0], s[0][1], s[0][2]
	grid := int(math.Round(math.Sqrt(float64(s[1][1]))))
	found := DiTConfig{InputSize: grid * p, PatchSize: p, InChannels: ch, HiddenSize: d, Depth: depth,
		MLPRatio: float64(s[4][0]) / float64(s[4][1]), ClassDropoutProb: 0.1, NumClasses: s[2][0] - 1,
		LearnSigma: s[3][0] == p*p*2*ch}
	found.NumHeads = map[int]int{384: 6, 768: 12, 1024: 16, 1152: 16}[d]
	if found.NumHeads == 0 {
		found.NumHeads = max(d/64, 1)
	}
	if meta == nil {
		if err := found.Validate(); err != nil {
			return nil, fmt.Errorf("detect config: %w (pass the model's config.json)", err)
		}
		return found, nil
	}
	c, err := parseConfig(meta, "")
	if err != nil {
		return nil, fmt.Errorf("detect config: metadata \"config\": %w", err)
	}
	given, ok := c.(DiTConfig)
	if !ok {
		return nil, fmt.Errorf("detect config: metadata \"config\" describes a %s model, the tensors a DiT", c.Arch())
	}
	found.NumHeads = given.NumHeads
	if given.ClassDropoutProb == 0 { // no null row: every row is a class
		found.NumClasses, found.ClassDropoutProb = s[2][0], 0
	} else {
		found.ClassDropoutProb = given.ClassDropoutProb
	}
	return agree(given, found)
}

func detectPixArt(shape shapeFn, shapes map[string][]int, depth int, meta []byte) (Config, error) {
	var s [4][]int
	var err error
	for i, name := range []string{"pos_embed.proj.weight", "caption_projection.linear_1.weight", "proj_out.weight", "transformer_blocks.0.attn2.to_k.weight"} {
		if name == "transformer_blocks.0.attn2.to_k.weight" && depth == 0 {
			s[i] = []int{0, s[0][0]}
			continue
		}
		if s[i], err = shape(name, []int{4, 2, 2, 2}[i]); err != nil {
			return nil, err
		}
	}
	d, ch, p := s[0][0], s[0][1], s[0][2]
	out := s[2][0] / (p * p)
	found := pixArtPreset(64)
	found.InChannels, found.OutChannels, found.PatchSize, found.NumLayers = ch, &out, p, depth
	found.CaptionChannels, found.CrossAttentionDim = s[1][1], s[3][1]
	found.AttentionBias = depth == 0 || shapes["transformer_blocks.0.attn1.to_q.bias"] != nil
	found.AttentionHeadDim, found.NumAttentionHeads = 72, d/72
	extra := shapes["adaln_single.emb.resolution_embedder.linear_1.weight"] != nil
	if extra {
		found.SampleSize = 128
	}
	if meta == nil {
		if d%72 != 0 {
			return nil, fmt.Errorf("detect config: width %d is not a multiple of PixArt-α's head dim 72 (pass the model's config.json)", d)
		}
		if err := found.Validate(); err != nil {
			return nil, fmt.Errorf("detect config: %w (pass the model's config.json)", err)
		}
		return found, nil
	}
	c, err := parseConfig(meta, "Transformer2DModel")
	if err != nil {
		return nil, fmt.Errorf("detect config: metadata \"config\": %w", err)
	}
	given, ok := c.(PixArtConfig)
	if !ok {
		return nil, fmt.Errorf("detect config: metadata \"config\" describes a %s model, the tensors PixArt-α", c.Arch())
	}
	if given.Inner() != d {
		return nil, fmt.Errorf("detect config: metadata heads·head_dim = %d, tensors say width %d", given.Inner(), d)
	}
	if given.AdditionalConditions() != extra {
		return nil, fmt.Errorf("detect config: metadata says use_additional_conditions = %v, the tensors %v", given.AdditionalConditions(), extra)
	}
	found.NumAttentionHeads, found.AttentionHeadDim = given.NumAttentionHeads, given.AttentionHeadDim
	found.SampleSize, found.InterpolationScale, found.UseAdditionalConditions = given.SampleSize, given.InterpolationScale, given.UseAdditionalConditions
	found.ActivationFn, found.NormEps, found.ClassName = given.ActivationFn, given.NormEps, given.ClassName
	found.NumEmbedsAdaNorm, found.UpcastAttention, found.NormNumGroups = given.NumEmbedsAdaNorm, given.UpcastAttention, given.NormNumGroups
	found.UseLinearProjection = given.UseLinearProjection
	return agree(given, found)
}

// agree returns given when it equals found (the shape-derived config), else an error
// naming the first field that differs.
func agree[C DiTConfig | PixArtConfig](given, found C) (Config, error) {
	a, _ := json.Marshal(given)
	b, _ := json.Marshal(found)
	var ma, mb map[string]any
	_ = json.Unmarshal(a, &ma)
	_ = json.Unmarshal(b, &mb)
	keys := make([]string, 0, len(ma))
	for k := range ma {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if fmt.Sprint(ma[k]) != fmt.Sprint(mb[k]) {
			return nil, fmt.Errorf("detect config: metadata field %q = %v, but the tensor shapes say %v", k, ma[k], mb[k])
		}
	}
	return Config(any(given).(Config)), nil
}

// ParseConfig decodes a config from JSON as LoadConfig does from a file; class is the
// diffusers class to assume when the JSON names none ("" decides from the keys).
func ParseConfig(raw []byte, class string) (Config, error) { return parseConfig(raw, class) }
