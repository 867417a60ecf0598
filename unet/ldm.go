package unet

import (
	"fmt"
	"strings"
)

// LDMPrefix is the key prefix of the UNet inside an original single-file (LDM)
// checkpoint; first_stage_model. (the VAE) and cond_stage_model. (the text encoder)
// sit beside it.
const LDMPrefix = "model.diffusion_model."

// ldmAliases is the one table of name aliases between the original LDM UNet and
// diffusers. Each row renames a fragment within a scope: "" is the model's top level;
// "resnet", "downsample" and "upsample" are the inside of a block that ldmBlocks places
// from the config ("attention" blocks keep their inner names: transformer_blocks.0.
// attn1.to_q and friends are the same on both sides).
var ldmAliases = []struct{ scope, ldm, diffusers string }{
	{"", "time_embed.0", "time_embedding.linear_1"},
	{"", "time_embed.2", "time_embedding.linear_2"},
	{"", "input_blocks.0.0", "conv_in"},
	{"", "out.0", "conv_norm_out"},
	{"", "out.2", "conv_out"},
	{"resnet", "in_layers.0", "norm1"},
	{"resnet", "in_layers.2", "conv1"},
	{"resnet", "emb_layers.1", "time_emb_proj"},
	{"resnet", "out_layers.0", "norm2"},
	{"resnet", "out_layers.3", "conv2"},
	{"resnet", "skip_connection", "conv_shortcut"},
	{"downsample", "op", "conv"},
	{"upsample", "conv", "conv"},
	{"attention", "", ""},
}

// blockAlias places one block: its LDM and diffusers module paths.
type blockAlias struct{ scope, ldm, diffusers string }

// ldmBlocks lists where each block of a model for c sits in both namings. LDM numbers
// input_blocks from 1 (0 is conv_in): per level, LayersPerBlock entries of [ResBlock,
// SpatialTransformer?], then a [Downsample] entry except at the last level;
// middle_block is [ResBlock, SpatialTransformer, ResBlock]; output_blocks count from 0
// over the up blocks' LayersPerBlock+1 entries of [ResBlock, SpatialTransformer?,
// Upsample?], the Upsample closing each up block but the last.
func ldmBlocks(c Config) []blockAlias {
	var out []blockAlias
	add := func(scope, ldm, diffusers string, args ...any) {
		n := strings.Count(ldm, "%d")
		out = append(out, blockAlias{scope, fmt.Sprintf(ldm, args[:n]...), fmt.Sprintf(diffusers, args[n:]...)})
	}
	k := 1
	for l, typ := range c.DownBlockTypes {
		for j := range c.LayersPerBlock[l] {
			add("resnet", "input_blocks.%d.0", "down_blocks.%d.resnets.%d", k, l, j)
			if typ == CrossAttnDownBlock2D {
				add("attention", "input_blocks.%d.1", "down_blocks.%d.attentions.%d", k, l, j)
			}
			k++
		}
		if l < c.Levels()-1 {
			add("downsample", "input_blocks.%d.0", "down_blocks.%d.downsamplers.0", k, l)
			k++
		}
	}
	add("resnet", "middle_block.0", "mid_block.resnets.0")
	add("attention", "middle_block.1", "mid_block.attentions.0")
	add("resnet", "middle_block.2", "mid_block.resnets.1")
	k = 0
	for i, typ := range c.UpBlockTypes {
		n := c.LayersPerBlock[c.Levels()-1-i] + 1
		for j := range n {
			add("resnet", "output_blocks.%d.0", "up_blocks.%d.resnets.%d", k, i, j)
			next := 1
			if typ == CrossAttnUpBlock2D {
				add("attention", "output_blocks.%d.1", "up_blocks.%d.attentions.%d", k, i, j)
				next = 2
			}
			if j == n-1 && i < c.Levels()-1 {
				add("upsample", "output_blocks.%d.%d", "up_blocks.%d.upsamplers.0", k, next, i)
			}
			k++
		}
	}
	return out
}

// ldmModules returns every module path alias of a model for c: the top-level rows of
// the table, and each block's rows under its placed paths.
func ldmModules(c Config) [][2]string {
	var out [][2]string
	join := func(a, b string) string {
		if b == "" {
			return a
		}
		return a + "." + b
	}
	for _, b := range append([]blockAlias{{scope: ""}}, ldmBlocks(c)...) {
		for _, a := range ldmAliases {
			if a.scope == b.scope {
				if b.scope == "" {
					out = append(out, [2]string{a.ldm, a.diffusers})
				} else {
					out = append(out, [2]string{join(b.ldm, a.ldm), join(b.diffusers, a.diffusers)})
				}
			}
		}
	}
	return out
}

// LDMToDiffusers maps original single-file UNet keys to diffusers keys for a model of
// config c. When some keys carry LDMPrefix only those are mapped (the VAE and text
// encoder keys of a full checkpoint are left out); otherwise every key is taken as a
// bare UNet key. It fails naming the first key that has no place in c.
func LDMToDiffusers(c Config, keys []string) (map[string]string, error) {
	var unet []string
	for _, k := range keys {
		if rest, ok := strings.CutPrefix(k, LDMPrefix); ok {
			unet = append(unet, rest)
		}
	}
	prefix := LDMPrefix
	if len(unet) == 0 {
		unet, prefix = keys, ""
	}
	return convert(c, unet, prefix, 0, 1)
}

// DiffusersToLDM maps diffusers UNet keys to original single-file keys (with
// LDMPrefix) for a model of config c. It fails naming the first key that has no
// place in c.
func DiffusersToLDM(c Config, keys []string) (map[string]string, error) {
	m, err := convert(c, keys, "", 1, 0)
	if err != nil {
		return nil, err
	}
	for k, v := range m {
		m[k] = LDMPrefix + v
	}
	return m, nil
}

// convert maps each key (given without prefix, returned with it) by its longest
// module path found in column from of ldmModules, to column to.
func convert(c Config, keys []string, prefix string, from, to int) (map[string]string, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, m := range ldmModules(c) {
		paths[m[from]] = m[to]
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		mod, rest := k, ""
		for {
			if v, ok := paths[mod]; ok {
				out[prefix+k] = v + rest
				break
			}
			i := strings.LastIndexByte(mod, '.')
			if i < 0 {
				return nil, fmt.Errorf("UNet key %q has no counterpart in a %d-level model with layers_per_block %v (is the config right?)",
					prefix+k, c.Levels(), c.LayersPerBlock)
			}
			mod, rest = mod[:i], mod[i:]+rest
		}
	}
	return out, nil
}
