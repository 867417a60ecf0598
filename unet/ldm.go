package unet

import (
	"fmt"
	"strings"

	"github.com/difftune/difftune/nn"
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
var ldmAliases = []nn.Alias{
	{Scope: "", LDM: "time_embed.0", Diffusers: "time_embedding.linear_1"},
	{Scope: "", LDM: "time_embed.2", Diffusers: "time_embedding.linear_2"},
	{Scope: "", LDM: "input_blocks.0.0", Diffusers: "conv_in"},
	{Scope: "", LDM: "out.0", Diffusers: "conv_norm_out"},
	{Scope: "", LDM: "out.2", Diffusers: "conv_out"},
	{Scope: "resnet", LDM: "in_layers.0", Diffusers: "norm1"},
	{Scope: "resnet", LDM: "in_layers.2", Diffusers: "conv1"},
	{Scope: "resnet", LDM: "emb_layers.1", Diffusers: "time_emb_proj"},
	{Scope: "resnet", LDM: "out_layers.0", Diffusers: "norm2"},
	{Scope: "resnet", LDM: "out_layers.3", Diffusers: "conv2"},
	{Scope: "resnet", LDM: "skip_connection", Diffusers: "conv_shortcut"},
	{Scope: "downsample", LDM: "op", Diffusers: "conv"},
	{Scope: "upsample", LDM: "conv", Diffusers: "conv"},
	{Scope: "attention", LDM: "", Diffusers: ""},
}

// ldmBlocks lists where each block of a model for c sits in both namings. LDM numbers
// input_blocks from 1 (0 is conv_in): per level, LayersPerBlock entries of [ResBlock,
// SpatialTransformer?], then a [Downsample] entry except at the last level;
// middle_block is [ResBlock, SpatialTransformer, ResBlock]; output_blocks count from 0
// over the up blocks' LayersPerBlock+1 entries of [ResBlock, SpatialTransformer?,
// Upsample?], the Upsample closing each up block but the last.
func ldmBlocks(c Config) []nn.Alias {
	var out []nn.Alias
	add := func(scope, ldm, diffusers string, args ...any) {
		n := strings.Count(ldm, "%d")
		out = append(out, nn.Alias{Scope: scope, LDM: fmt.Sprintf(ldm, args[:n]...), Diffusers: fmt.Sprintf(diffusers, args[n:]...)})
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

// LDMToDiffusers maps original single-file UNet keys to diffusers keys for a model of
// config c. When some keys carry LDMPrefix only those are mapped (the VAE and text
// encoder keys of a full checkpoint are left out); otherwise every key is taken as a
// bare UNet key. It fails naming the first key that has no place in c.
func LDMToDiffusers(c Config, keys []string) (map[string]string, error) {
	return convert(c, keys, nn.ModulePaths.FromLDM)
}

// DiffusersToLDM maps diffusers UNet keys to original single-file keys (with
// LDMPrefix) for a model of config c. It fails naming the first key that has no
// place in c.
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
		return nil, fmt.Errorf("UNet %w in a %d-level model with layers_per_block %v (is the config right?)", err, c.Levels(), c.LayersPerBlock)
	}
	return m, nil
}
