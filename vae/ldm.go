package vae

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/difftune/difftune/nn"
)

// LDMPrefix is the key prefix of the VAE inside an original single-file (LDM)
// checkpoint; model.diffusion_model. (the UNet) and cond_stage_model. (the text
// encoder) sit beside it.
const LDMPrefix = "first_stage_model."

// ldmAliases is the one table of name aliases between the original LDM autoencoder
// and diffusers. Each row renames a module path within a scope: "" is the model's top
// level, "coder" the inside of the encoder and of the decoder, "resnet" and
// "attention" the inside of a block that ldmBlocks places from the config.
var ldmAliases = []nn.Alias{
	{Scope: "", LDM: "quant_conv", Diffusers: "quant_conv"},
	{Scope: "", LDM: "post_quant_conv", Diffusers: "post_quant_conv"},
	{Scope: "coder", LDM: "conv_in", Diffusers: "conv_in"},
	{Scope: "coder", LDM: "norm_out", Diffusers: "conv_norm_out"},
	{Scope: "coder", LDM: "conv_out", Diffusers: "conv_out"},
	{Scope: "resnet", LDM: "norm1", Diffusers: "norm1"},
	{Scope: "resnet", LDM: "conv1", Diffusers: "conv1"},
	{Scope: "resnet", LDM: "norm2", Diffusers: "norm2"},
	{Scope: "resnet", LDM: "conv2", Diffusers: "conv2"},
	{Scope: "resnet", LDM: "nin_shortcut", Diffusers: "conv_shortcut"},
	{Scope: "attention", LDM: "norm", Diffusers: "group_norm"},
	{Scope: "attention", LDM: "q", Diffusers: "to_q"},
	{Scope: "attention", LDM: "k", Diffusers: "to_k"},
	{Scope: "attention", LDM: "v", Diffusers: "to_v"},
	{Scope: "attention", LDM: "proj_out", Diffusers: "to_out.0"},
	{Scope: "sampler", LDM: "conv", Diffusers: "conv"},
}

// ldmBlocks lists where each block of a model for c sits in both namings. The LDM
// decoder numbers its up levels by resolution (up.0 is full resolution), diffusers
// in execution order (up_blocks.0 is the lowest resolution), so up.i is
// up_blocks.(levels-1-i).
func ldmBlocks(c Config) []nn.Alias {
	var out []nn.Alias
	add := func(scope, ldm, diffusers string) {
		out = append(out, nn.Alias{Scope: scope, LDM: ldm, Diffusers: diffusers})
	}
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

// LDMToDiffusers maps original single-file VAE keys to diffusers keys for a model of
// config c. When some keys carry LDMPrefix only those are mapped (the UNet and text
// encoder keys of a full checkpoint are left out); otherwise every key is taken as a
// bare VAE key. It fails naming the first key that has no place in c. Weights of the
// mid-block attention also change shape: see DiffusersShape.
func LDMToDiffusers(c Config, keys []string) (map[string]string, error) {
	return convert(c, keys, nn.ModulePaths.FromLDM)
}

// DiffusersToLDM maps diffusers VAE keys to original single-file keys (with
// LDMPrefix) for a model of config c. It fails naming the first key that has no place
// in c. Weights of the mid-block attention also change shape: see LDMShape.
func DiffusersToLDM(c Config, keys []string) (map[string]string, error) {
	return convert(c, keys, nn.ModulePaths.ToLDM)
}

// convert maps keys with conv (FromLDM or ToLDM) over the module paths of a model
// for c, naming the model in its errors.
func convert(c Config, keys []string, conv func(nn.ModulePaths, string, []string) (map[string]string, error)) (map[string]string, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m, err := conv(nn.PlaceAliases(ldmAliases, ldmBlocks(c)), LDMPrefix, keys)
	if err != nil {
		return nil, fmt.Errorf("VAE %w in a %d-level model with layers_per_block %d (is the config right?)", err, c.Levels(), c.LayersPerBlock)
	}
	return m, nil
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
