package unet

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"github.com/difftune/difftune/internal/diffusersconfig"
)

// LoadConfig reads a diffusers UNet2DConditionModel config.json (unet/config.json of a
// diffusers checkpoint folder). Absent fields take diffusers v0.27's defaults.
// Errors name the file and the field: an unknown field, a wrong type, or a setting
// this package does not implement (class embeddings, SDXL's addition_embed_type
// "text_time", dual or only-cross attention, scale-shift time norm, ...).
func LoadConfig(path string) (Config, error) {
	return diffusersconfig.Load(path, "unet config", ParseConfig)
}

// ParseConfig is LoadConfig on the bytes of a config.json.
func ParseConfig(data []byte) (Config, error) {
	f, err := diffusersconfig.Parse(data)
	if err != nil {
		return Config{}, err
	}
	isKnown := func(k string) bool {
		return slices.Contains(known, k) || slices.ContainsFunc(unsupported, func(r refusal) bool { return r.field == k })
	}
	if err := f.Unknown("UNet2DConditionModel", isKnown); err != nil {
		return Config{}, err
	}
	var class string
	if err := f.Get("_class_name", &class); err != nil {
		return Config{}, err
	}
	if class != "" && class != "UNet2DConditionModel" {
		return Config{}, fmt.Errorf("field \"_class_name\": %q is not UNet2DConditionModel (is this the unet/ folder's config?)", class)
	}
	for _, r := range unsupported {
		if err := refuse(f, r); err != nil {
			return Config{}, err
		}
	}

	c := Config{
		InChannels: 4, OutChannels: 4, FlipSinToCos: true,
		DownBlockTypes:   []string{CrossAttnDownBlock2D, CrossAttnDownBlock2D, CrossAttnDownBlock2D, DownBlock2D},
		MidBlockType:     UNetMidBlock2DCrossAttn,
		UpBlockTypes:     []string{UpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D},
		BlockOutChannels: []int{320, 640, 1280, 1280}, DownsamplePadding: 1, MidBlockScaleFactor: 1,
		ResnetOutScaleFactor: 1, NormNumGroups: 32, NormEps: 1e-5, ConvInKernel: 3, ConvOutKernel: 3,
	}
	var timeDim *int
	for _, g := range []struct {
		key string
		dst any
	}{
		{"sample_size", &c.SampleSize}, {"in_channels", &c.InChannels}, {"out_channels", &c.OutChannels},
		{"center_input_sample", &c.CenterInputSample}, {"flip_sin_to_cos", &c.FlipSinToCos}, {"freq_shift", &c.FreqShift},
		{"down_block_types", &c.DownBlockTypes}, {"up_block_types", &c.UpBlockTypes}, {"block_out_channels", &c.BlockOutChannels},
		{"downsample_padding", &c.DownsamplePadding}, {"mid_block_scale_factor", &c.MidBlockScaleFactor},
		{"resnet_out_scale_factor", &c.ResnetOutScaleFactor}, {"norm_eps", &c.NormEps},
		{"use_linear_projection", &c.UseLinearProjection}, {"upcast_attention", &c.UpcastAttention},
		{"conv_in_kernel", &c.ConvInKernel}, {"conv_out_kernel", &c.ConvOutKernel}, {"time_embedding_dim", &timeDim},
	} {
		if err := f.Get(g.key, g.dst); err != nil {
			return Config{}, err
		}
	}
	// Null is meaningful for these two: no mid block, no output norm.
	for _, k := range []string{"mid_block_type", "norm_num_groups"} {
		if _, ok := f[k]; ok && f.IsNull(k) {
			return Config{}, fmt.Errorf("field %q: null is not supported (set %s)", k, map[string]string{
				"mid_block_type": `"UNetMidBlock2DCrossAttn"`, "norm_num_groups": "a group count such as 32"}[k])
		}
	}
	if err := f.Get("mid_block_type", &c.MidBlockType); err != nil {
		return Config{}, err
	}
	if err := f.Get("norm_num_groups", &c.NormNumGroups); err != nil {
		return Config{}, err
	}
	levels := len(c.BlockOutChannels)
	c.TimeEmbeddingDim = 4 * first(c.BlockOutChannels)
	if timeDim != nil {
		c.TimeEmbeddingDim = *timeDim
	}
	if c.LayersPerBlock, err = perLevel(f, "layers_per_block", 2, levels); err != nil {
		return Config{}, err
	}
	if c.TransformerLayersPerBlock, err = perLevel(f, "transformer_layers_per_block", 1, levels); err != nil {
		return Config{}, err
	}
	if c.CrossAttentionDim, err = perLevel(f, "cross_attention_dim", 1280, levels); err != nil {
		return Config{}, err
	}
	// diffusers v0.27: num_attention_heads = num_attention_heads or attention_head_dim.
	heads := "attention_head_dim"
	if !f.IsNull("num_attention_heads") {
		heads = "num_attention_heads"
	}
	if c.AttentionHeads, err = perLevel(f, heads, 8, levels); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks that the config describes a model this package can build, naming
// the diffusers field that is wrong.
func (c Config) Validate() error {
	levels := c.Levels()
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("field %q: %s", field, fmt.Sprintf(format, args...))
	}
	if levels == 0 {
		return bad("block_out_channels", "empty")
	}
	for _, l := range []struct {
		field string
		n     int
	}{
		{"down_block_types", len(c.DownBlockTypes)}, {"up_block_types", len(c.UpBlockTypes)},
		{"layers_per_block", len(c.LayersPerBlock)}, {"transformer_layers_per_block", len(c.TransformerLayersPerBlock)},
		{"attention_head_dim", len(c.AttentionHeads)}, {"cross_attention_dim", len(c.CrossAttentionDim)},
	} {
		if l.n != levels {
			return bad(l.field, "%d entries for %d levels of block_out_channels", l.n, levels)
		}
	}
	for i, t := range c.DownBlockTypes {
		if t != CrossAttnDownBlock2D && t != DownBlock2D {
			return bad("down_block_types", "%q at level %d is not supported (want %s or %s)", t, i, CrossAttnDownBlock2D, DownBlock2D)
		}
	}
	for i, t := range c.UpBlockTypes {
		if t != CrossAttnUpBlock2D && t != UpBlock2D {
			return bad("up_block_types", "%q at position %d is not supported (want %s or %s)", t, i, CrossAttnUpBlock2D, UpBlock2D)
		}
	}
	if c.MidBlockType != UNetMidBlock2DCrossAttn {
		return bad("mid_block_type", "%q is not supported (want %s)", c.MidBlockType, UNetMidBlock2DCrossAttn)
	}
	if c.InChannels <= 0 || c.OutChannels <= 0 {
		return bad("in_channels", "in_channels %d, out_channels %d must be positive", c.InChannels, c.OutChannels)
	}
	if c.NormNumGroups <= 0 || c.NormEps <= 0 {
		return bad("norm_num_groups", "%d groups with norm_eps %g", c.NormNumGroups, c.NormEps)
	}
	for i, ch := range c.BlockOutChannels {
		switch {
		case ch <= 0 || ch%c.NormNumGroups != 0:
			return bad("block_out_channels", "%d channels at level %d do not divide into %d norm groups", ch, i, c.NormNumGroups)
		case c.AttentionHeads[i] <= 0 || ch%c.AttentionHeads[i] != 0:
			return bad("attention_head_dim", "%d heads at level %d do not divide %d channels (for these UNets attention_head_dim is the number of heads)", c.AttentionHeads[i], i, ch)
		case c.LayersPerBlock[i] <= 0:
			return bad("layers_per_block", "%d at level %d", c.LayersPerBlock[i], i)
		case c.TransformerLayersPerBlock[i] <= 0:
			return bad("transformer_layers_per_block", "%d at level %d", c.TransformerLayersPerBlock[i], i)
		case c.CrossAttentionDim[i] <= 0:
			return bad("cross_attention_dim", "%d at level %d", c.CrossAttentionDim[i], i)
		}
	}
	if c.DownsamplePadding != 1 {
		return bad("downsample_padding", "%d is not supported (want 1; 0 needs an asymmetric pad)", c.DownsamplePadding)
	}
	if c.ConvInKernel <= 0 || c.ConvInKernel%2 == 0 || c.ConvOutKernel <= 0 || c.ConvOutKernel%2 == 0 {
		return bad("conv_in_kernel", "kernels %d and %d (conv_out_kernel) must be odd", c.ConvInKernel, c.ConvOutKernel)
	}
	if c.TimeEmbeddingDim <= 0 {
		return bad("time_embedding_dim", "%d", c.TimeEmbeddingDim)
	}
	if c.MidBlockScaleFactor <= 0 || c.ResnetOutScaleFactor <= 0 {
		return bad("mid_block_scale_factor", "%g and resnet_out_scale_factor %g must be positive", c.MidBlockScaleFactor, c.ResnetOutScaleFactor)
	}
	return nil
}

// clone returns a deep copy, so a model's Config does not alias the caller's slices.
func (c Config) clone() Config {
	c.DownBlockTypes, c.UpBlockTypes = slices.Clone(c.DownBlockTypes), slices.Clone(c.UpBlockTypes)
	c.BlockOutChannels, c.LayersPerBlock = slices.Clone(c.BlockOutChannels), slices.Clone(c.LayersPerBlock)
	c.TransformerLayersPerBlock, c.AttentionHeads = slices.Clone(c.TransformerLayersPerBlock), slices.Clone(c.AttentionHeads)
	c.CrossAttentionDim = slices.Clone(c.CrossAttentionDim)
	return c
}

// refusal is a diffusers field whose other values this package does not implement.
type refusal struct {
	field string
	ok    []any // the accepted decoded values (nil: null); absent is always fine
	why   string
}

// unsupported lists the refused settings.
var unsupported = []refusal{
	{"act_fn", []any{"silu"}, "only SiLU is implemented"},
	{"addition_embed_type", []any{nil}, "SDXL-style added conditioning is not supported yet"},
	{"addition_time_embed_dim", []any{nil}, "added time conditioning (SDXL) is not supported yet"},
	{"projection_class_embeddings_input_dim", []any{nil}, "class or added embeddings (SDXL) are not supported yet"},
	{"class_embed_type", []any{nil}, "class embeddings are not supported"},
	{"num_class_embeds", []any{nil}, "class embeddings are not supported"},
	{"class_embeddings_concat", []any{false}, "class embeddings are not supported"},
	{"encoder_hid_dim", []any{nil}, "an encoder_hid_proj is not supported"},
	{"encoder_hid_dim_type", []any{nil}, "an encoder_hid_proj is not supported"},
	{"time_cond_proj_dim", []any{nil}, "timestep conditioning (LCM) is not supported"},
	{"time_embedding_type", []any{"positional"}, "only the sinusoidal (positional) time embedding is implemented"},
	{"time_embedding_act_fn", []any{nil}, "an activation after the time embedding is not supported"},
	{"timestep_post_act", []any{nil}, "an activation after the time embedding is not supported"},
	{"resnet_time_scale_shift", []any{"default"}, "scale-shift time conditioning is not supported"},
	{"resnet_skip_time_act", []any{false}, "skipping the time activation is not supported"},
	{"dual_cross_attention", []any{false}, "dual cross-attention is not supported"},
	{"only_cross_attention", []any{false}, "only_cross_attention is not supported"},
	{"mid_block_only_cross_attention", []any{nil, false}, "only_cross_attention is not supported"},
	{"cross_attention_norm", []any{nil}, "a norm on encoder_hidden_states is not supported"},
	{"attention_type", []any{"default"}, "gated (GLIGEN) attention is not supported"},
	{"reverse_transformer_layers_per_block", []any{nil}, "separate up-block transformer depths are not supported"},
	{"dropout", []any{0.0}, "difftune runs the UNet without dropout; set 0"},
}

// known are the other fields a v0.27 config may hold.
var known = []string{
	"sample_size", "in_channels", "out_channels", "center_input_sample", "flip_sin_to_cos", "freq_shift",
	"down_block_types", "mid_block_type", "up_block_types", "block_out_channels", "layers_per_block",
	"downsample_padding", "mid_block_scale_factor", "norm_num_groups", "norm_eps", "cross_attention_dim",
	"transformer_layers_per_block", "attention_head_dim", "num_attention_heads", "use_linear_projection",
	"upcast_attention", "resnet_out_scale_factor", "conv_in_kernel", "conv_out_kernel", "time_embedding_dim",
	"addition_embed_type_num_heads", // used only with addition_embed_type, which is refused
}

// refuse fails when the refused field is present with a value outside r.ok. A list
// (per-level settings such as only_cross_attention) passes when every entry does.
func refuse(f diffusersconfig.Fields, r refusal) error {
	v, ok := f[r.field]
	if !ok {
		return nil
	}
	var got any
	if err := json.Unmarshal(v, &got); err != nil {
		return fmt.Errorf("field %q: %v", r.field, err)
	}
	items, isList := got.([]any)
	if !isList {
		items = []any{got}
	}
	for _, it := range items {
		if !slices.ContainsFunc(r.ok, func(want any) bool { return reflect.DeepEqual(it, want) }) {
			if r.field == "addition_embed_type" && it == "text_time" {
				return fmt.Errorf("field %q: \"text_time\" is SDXL, which is not supported yet", r.field)
			}
			return fmt.Errorf("field %q: %s is not supported (%s)", r.field, v, r.why)
		}
	}
	return nil
}

// perLevel decodes an int-or-list field into one value per level.
func perLevel(f diffusersconfig.Fields, key string, def, levels int) ([]int, error) {
	out := make([]int, levels)
	for i := range out {
		out[i] = def
	}
	if f.IsNull(key) {
		return out, nil
	}
	v := f[key]
	var one int
	if err := json.Unmarshal(v, &one); err == nil {
		for i := range out {
			out[i] = one
		}
		return out, nil
	}
	var list []int
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, fmt.Errorf("field %q: %s is neither an integer nor a list of integers", key, v)
	}
	if len(list) != levels {
		return nil, fmt.Errorf("field %q: %d entries for %d levels of block_out_channels", key, len(list), levels)
	}
	return list, nil
}

func first(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	return xs[0]
}
