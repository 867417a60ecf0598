package vae

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// LDMPrefix is the key prefix of the VAE inside an original single-file (LDM)
// checkpoint; model.diffusion_model. (the UNet) and cond_stage_model. (the text
// encoder) sit beside it.
const LDMPrefix = "first_stage_model."

// ldmAliases is the one table of name aliases between the original LDM autoencoder
// and diffusers. Each row renames a module path within a scope: "" is the model's top
// level, "coder" the inside of the encoder and of the decoder, "resnet" and
// "attention" the inside of a block that ldmBlocks places from the config.
var ldmAliases = []struct{ scope, ldm, diffusers string }{
	{"", "quant_conv", "quant_conv"},
	{"", "post_quant_conv", "post_quant_conv"},
	{"coder", "conv_in", "conv_in"},
	{"coder", "norm_out", "conv_norm_out"},
	{"coder", "conv_out", "conv_out"},
	{"resnet", "norm1", "norm1"},
	{"resnet", "conv1", "conv1"},
	{"resnet", "norm2", "norm2"},
	{"resnet", "conv2", "conv2"},
	{"resnet", "nin_shortcut", "conv_shortcut"},
	{"attention", "norm", "group_norm"},
	{"attention", "q", "to_q"},
	{"attention", "k", "to_k"},
	{"attention", "v", "to_v"},
	{"attention", "proj_out", "to_out.0"},
	{"sampler", "conv", "conv"},
}

// blockAlias places one block: its LDM and diffusers module paths.
type blockAlias struct{ scope, ldm, diffusers string }

// ldmBlocks lists where each block of a model for c sits in both namings. The LDM
// decoder numbers its up levels by resolution (up.0 is full resolution), diffusers
// in execution order (up_blocks.0 is the lowest resolution), so up.i is
// up_blocks.(levels-1-i).
func ldmBlocks(c Config) []blockAlias {
	var out []blockAlias
	add := func(scope, ldm, diffusers string) { out = append(out, blockAlias{scope, ldm, diffusers}) }
	levels := c.Levels()
	for _, side := range []string{"encoder", "decoder"} {
		add("coder", side, side)
		add("resnet", side+".mid.block_1", side+".mid_block.resnets.0")
		if c.MidBlockAddAttention {
			add("attention", side+".mid.attn_1", side+".mid_block.attentions.0")
		}
		add("resnet", side+".mid.block_2", side+".mid_block.resnets.1")
	}
	for i := range levels {
		d := "encoder.down." + strconv.Itoa(i)
		for j := range c.LayersPerBlock {
			add("resnet", d+".block."+strconv.Itoa(j), fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", i, j))
		}
		if i < levels-1 {
			add("sampler", d+".downsample", fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0", i))
		}
		k := levels - 1 - i // diffusers' index of LDM's up.i
		u := "decoder.up." + strconv.Itoa(i)
		for j := range c.LayersPerBlock + 1 {
			add("resnet", u+".block."+strconv.Itoa(j), fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", k, j))
		}
		if i > 0 {
			add("sampler", u+".upsample", fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0", k))
		}
	}
	return out
}

// ldmModules returns every module path alias of a model for c: the top-level rows of
// the table, and each block's rows under its placed paths.
func ldmModules(c Config) [][2]string {
	var out [][2]string
	for _, b := range append([]blockAlias{{scope: ""}}, ldmBlocks(c)...) {
		for _, a := range ldmAliases {
			switch {
			case a.scope != b.scope:
			case b.scope == "":
				out = append(out, [2]string{a.ldm, a.diffusers})
			default:
				out = append(out, [2]string{b.ldm + "." + a.ldm, b.diffusers + "." + a.diffusers})
			}
		}
	}
	return out
}

// LDMToDiffusers maps original single-file VAE keys to diffusers keys for a model of
// config c. When some keys carry LDMPrefix only those are mapped (the UNet and text
// encoder keys of a full checkpoint are left out); otherwise every key is taken as a
// bare VAE key. It fails naming the first key that has no place in c. Weights of the
// mid-block attention also change shape: see DiffusersShape.
func LDMToDiffusers(c Config, keys []string) (map[string]string, error) {
	var vae []string
	for _, k := range keys {
		if rest, ok := strings.CutPrefix(k, LDMPrefix); ok {
			vae = append(vae, rest)
		}
	}
	prefix := LDMPrefix
	if len(vae) == 0 {
		vae, prefix = keys, ""
	}
	return convert(c, vae, prefix, 0, 1)
}

// DiffusersToLDM maps diffusers VAE keys to original single-file keys (with
// LDMPrefix) for a model of config c. It fails naming the first key that has no place
// in c. Weights of the mid-block attention also change shape: see LDMShape.
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
				return nil, fmt.Errorf("VAE key %q has no counterpart in a %d-level model with layers_per_block %d (is the config right?)",
					prefix+k, c.Levels(), c.LayersPerBlock)
			}
			mod, rest = mod[:i], mod[i:]+rest
		}
	}
	return out, nil
}

// isAttentionWeight reports whether a diffusers key is a weight of a mid-block
// attention projection: a Linear [C, C] here, a 1×1 convolution [C, C, 1, 1] in LDM.
func isAttentionWeight(diffusersKey string) bool {
	mod, ok := strings.CutSuffix(diffusersKey, ".weight")
	if !ok || !strings.Contains(mod, "mid_block.attentions.") {
		return false
	}
	return slices.ContainsFunc([]string{".to_q", ".to_k", ".to_v", ".to_out.0"}, func(s string) bool { return strings.HasSuffix(mod, s) })
}

// LDMShape returns the shape a tensor of diffusers key has in an LDM file: [C, C, 1, 1]
// for the mid-block attention's projection weights, the same shape otherwise. The
// data are the same bytes.
func LDMShape(diffusersKey string, shape []int) []int {
	if isAttentionWeight(diffusersKey) && len(shape) == 2 {
		return append(slices.Clone(shape), 1, 1)
	}
	return slices.Clone(shape)
}

// DiffusersShape returns the shape an LDM tensor has under its diffusers key (as
// LDMToDiffusers maps it): [C, C] for the mid-block attention's projection weights
// stored as [C, C, 1, 1], the same shape otherwise.
func DiffusersShape(diffusersKey string, ldmShape []int) []int {
	if isAttentionWeight(diffusersKey) && len(ldmShape) == 4 && ldmShape[2] == 1 && ldmShape[3] == 1 {
		return slices.Clone(ldmShape[:2])
	}
	return slices.Clone(ldmShape)
}
