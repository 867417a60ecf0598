package vae

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/difftune/difftune/internal/diffusersconfig"
)

// LoadConfig reads a diffusers AutoencoderKL config.json (vae/config.json of a
// diffusers checkpoint folder). Absent fields take diffusers v0.27's defaults. Errors
// name the file and the field.
func LoadConfig(path string) (Config, error) {
	return diffusersconfig.Load(path, "vae config", ParseConfig)
}

// known are the fields ParseConfig reads, with the address each decodes into.
func (c *Config) known() map[string]any {
	return map[string]any{
		"in_channels": &c.InChannels, "out_channels": &c.OutChannels,
		"down_block_types": &c.DownBlockTypes, "up_block_types": &c.UpBlockTypes,
		"block_out_channels": &c.BlockOutChannels, "layers_per_block": &c.LayersPerBlock,
		"latent_channels": &c.LatentChannels, "norm_num_groups": &c.NormNumGroups,
		"scaling_factor": &c.ScalingFactor, "shift_factor": &c.ShiftFactor, "force_upcast": &c.ForceUpcast,
		"mid_block_add_attention": &c.MidBlockAddAttention,
		"use_quant_conv":          &c.UseQuantConv, "use_post_quant_conv": &c.UsePostQuantConv,
	}
}

// ParseConfig is LoadConfig on the bytes of a config.json.
func ParseConfig(data []byte) (Config, error) {
	f, err := diffusersconfig.Parse(data)
	if err != nil {
		return Config{}, err
	}
	c := Config{ // diffusers v0.27 AutoencoderKL defaults
		InChannels: 3, OutChannels: 3, DownBlockTypes: []string{DownEncoderBlock2D}, UpBlockTypes: []string{UpDecoderBlock2D},
		BlockOutChannels: []int{64}, LayersPerBlock: 1, LatentChannels: 4, NormNumGroups: 32, SampleSize: 32,
		ScalingFactor: 0.18215, ForceUpcast: true, MidBlockAddAttention: true, UseQuantConv: true, UsePostQuantConv: true,
	}
	known := c.known()
	isKnown := func(k string) bool {
		_, ok := known[k]
		return ok || k == "act_fn" || k == "sample_size" || k == "latents_mean" || k == "latents_std"
	}
	if err := f.Unknown("AutoencoderKL", isKnown); err != nil {
		return Config{}, err
	}
	var class, act string
	for _, g := range []struct {
		key string
		dst *string
	}{{"_class_name", &class}, {"act_fn", &act}} {
		if err := f.Get(g.key, g.dst); err != nil {
			return Config{}, err
		}
	}
	if class != "" && class != "AutoencoderKL" {
		return Config{}, fmt.Errorf("field \"_class_name\": %q is not AutoencoderKL (is this the vae/ folder's config?)", class)
	}
	if act != "" && act != "silu" {
		return Config{}, fmt.Errorf("field \"act_fn\": %q is not supported (only silu is implemented)", act)
	}
	for _, k := range []string{"latents_mean", "latents_std"} {
		if !f.IsNull(k) {
			return Config{}, fmt.Errorf("field %q: per-channel latent statistics are not supported (set it to null)", k)
		}
	}
	for k, dst := range known {
		if err := f.Get(k, dst); err != nil {
			return Config{}, err
		}
	}
	// sample_size is an int, or [height, width] in some configs: the tile is square,
	// so take the larger side.
	if !f.IsNull("sample_size") {
		var side int
		var hw []int
		if err := json.Unmarshal(f["sample_size"], &side); err != nil {
			if err := json.Unmarshal(f["sample_size"], &hw); err != nil || len(hw) != 2 {
				return Config{}, fmt.Errorf("field \"sample_size\": %s is neither an integer nor [height, width]", f["sample_size"])
			}
			side = max(hw[0], hw[1])
		}
		c.SampleSize = side
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks that the config describes a model this package can build, naming
// the diffusers field that is wrong.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("field %q: %s", field, fmt.Sprintf(format, args...))
	}
	levels := c.Levels()
	switch {
	case levels == 0:
		return bad("block_out_channels", "empty")
	case len(c.DownBlockTypes) != levels:
		return bad("down_block_types", "%d entries for %d levels of block_out_channels", len(c.DownBlockTypes), levels)
	case len(c.UpBlockTypes) != levels:
		return bad("up_block_types", "%d entries for %d levels of block_out_channels", len(c.UpBlockTypes), levels)
	case c.InChannels <= 0:
		return bad("in_channels", "%d must be positive", c.InChannels)
	case c.OutChannels <= 0:
		return bad("out_channels", "%d must be positive", c.OutChannels)
	case c.LatentChannels <= 0:
		return bad("latent_channels", "%d must be positive", c.LatentChannels)
	case c.LayersPerBlock <= 0:
		return bad("layers_per_block", "%d must be positive", c.LayersPerBlock)
	case c.NormNumGroups <= 0:
		return bad("norm_num_groups", "%d must be positive", c.NormNumGroups)
	case c.ScalingFactor <= 0:
		return bad("scaling_factor", "%g must be positive", c.ScalingFactor)
	case c.SampleSize < 0:
		return bad("sample_size", "%d is negative", c.SampleSize)
	}
	if i := slices.IndexFunc(c.DownBlockTypes, func(s string) bool { return s != DownEncoderBlock2D }); i >= 0 {
		return bad("down_block_types", "%q at level %d is not supported (want %s)", c.DownBlockTypes[i], i, DownEncoderBlock2D)
	}
	if i := slices.IndexFunc(c.UpBlockTypes, func(s string) bool { return s != UpDecoderBlock2D }); i >= 0 {
		return bad("up_block_types", "%q at position %d is not supported (want %s)", c.UpBlockTypes[i], i, UpDecoderBlock2D)
	}
	for i, ch := range c.BlockOutChannels {
		if ch <= 0 || ch%c.NormNumGroups != 0 {
			return bad("block_out_channels", "%d channels at level %d do not divide into %d norm groups (norm_num_groups)", ch, i, c.NormNumGroups)
		}
	}
	return nil
}

// clone returns a deep copy, so a model's Config does not alias the caller's slices.
func (c Config) clone() Config {
	c.DownBlockTypes, c.UpBlockTypes = slices.Clone(c.DownBlockTypes), slices.Clone(c.UpBlockTypes)
	c.BlockOutChannels = slices.Clone(c.BlockOutChannels)
	return c
}
