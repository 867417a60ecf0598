package unet

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/difftune/difftune/safetensors"
)

// DetectConfig infers the Config of the UNet in a checkpoint from its key names and
// shapes alone (no tensor data is read). Diffusers keys (conv_in.weight, ...) and
// original single-file keys (model.diffusion_model.input_blocks.0.0.weight, ...) are
// both recognised. Weights do not record everything, so DetectConfig assumes what
// every published SD 1.x/2.x checkpoint has: 32 norm groups, eps 1e-5, flipped
// sinusoids without shift, downsample padding 1, output scales 1; and the head count,
// which no shape shows: 8 heads at every level when the context is 768 wide (SD 1.x),
// 64-channel heads otherwise (SD 2.x). SampleSize and UpcastAttention stay zero. The
// result is checked by building the parameter shapes it implies and comparing them
// with the header, so a wrong guess fails naming the key instead of loading wrongly.
// SDXL (add_embedding.*) is recognised and refused as not supported yet.
func DetectConfig(h *safetensors.Header) (Config, error) {
	shapes := map[string][]int{}
	ldm := false
	for _, t := range h.Tensors {
		shapes[t.Name] = t.Shape
		ldm = ldm || strings.HasPrefix(t.Name, LDMPrefix)
	}
	if ldm {
		var err error
		if shapes, err = ldmShapes(shapes); err != nil {
			return Config{}, err
		}
	}
	c, err := detectDiffusers(shapes)
	if err != nil {
		return Config{}, err
	}
	want, err := ParamShapes(c)
	if err != nil {
		return Config{}, fmt.Errorf("detected UNet config: %w", err)
	}
	for name, s := range want {
		got, ok := shapes[name]
		if !ok {
			return Config{}, fmt.Errorf("detected UNet config implies key %q, which the checkpoint lacks", name)
		}
		if !slices.Equal(got, s) {
			return Config{}, fmt.Errorf("detected UNet config implies %q of shape %v, the checkpoint has %v", name, s, got)
		}
	}
	return c, nil
}

// detectDiffusers reads a Config from diffusers key names and shapes.
func detectDiffusers(shapes map[string][]int) (Config, error) {
	for _, k := range []string{"add_embedding.linear_1.weight", "class_embedding.linear_1.weight", "class_embedding.weight"} {
		if _, ok := shapes[k]; ok {
			if strings.HasPrefix(k, "add_") {
				return Config{}, fmt.Errorf("checkpoint has %q: an SDXL UNet, which is not supported yet", k)
			}
			return Config{}, fmt.Errorf("checkpoint has %q: class embeddings are not supported", k)
		}
	}
	shape := func(k string, rank int) ([]int, error) {
		s, ok := shapes[k]
		if !ok {
			return nil, fmt.Errorf("no UNet key %q (is this a UNet2DConditionModel checkpoint?)", k)
		}
		if len(s) != rank {
			return nil, fmt.Errorf("UNet key %q has shape %v, want rank %d", k, s, rank)
		}
		return s, nil
	}
	convIn, err := shape("conv_in.weight", 4)
	if err != nil {
		return Config{}, err
	}
	convOut, err := shape("conv_out.weight", 4)
	if err != nil {
		return Config{}, err
	}
	temb, err := shape("time_embedding.linear_1.weight", 2)
	if err != nil {
		return Config{}, err
	}
	c := Config{
		InChannels: convIn[1], OutChannels: convOut[0], ConvInKernel: convIn[2], ConvOutKernel: convOut[2],
		FlipSinToCos: true, MidBlockType: UNetMidBlock2DCrossAttn, DownsamplePadding: 1,
		MidBlockScaleFactor: 1, ResnetOutScaleFactor: 1, NormNumGroups: 32, NormEps: 1e-5, TimeEmbeddingDim: temb[0],
	}
	levels := count(shapes, "down_blocks.")
	if levels == 0 {
		return Config{}, fmt.Errorf("no down_blocks.* keys (is this a UNet2DConditionModel checkpoint?)")
	}
	if n := count(shapes, "up_blocks."); n != levels {
		return Config{}, fmt.Errorf("%d down_blocks but %d up_blocks", levels, n)
	}
	depth := func(attn string) int { return count(shapes, attn+".transformer_blocks.") }
	for i := range levels {
		d, u := "down_blocks."+strconv.Itoa(i), "up_blocks."+strconv.Itoa(levels-1-i)
		conv1, err := shape(d+".resnets.0.conv1.weight", 4)
		if err != nil {
			return Config{}, err
		}
		c.BlockOutChannels = append(c.BlockOutChannels, conv1[0])
		c.LayersPerBlock = append(c.LayersPerBlock, count(shapes, d+".resnets."))
		downAttn, upAttn := has(shapes, d+".attentions.0."), has(shapes, u+".attentions.0.")
		c.DownBlockTypes = append(c.DownBlockTypes, downType(downAttn))
		layers := 1 // diffusers' default where a level has no attention
		switch {
		case downAttn:
			layers = depth(d + ".attentions.0")
		case upAttn:
			layers = depth(u + ".attentions.0")
		case i == levels-1:
			layers = depth("mid_block.attentions.0")
		}
		c.TransformerLayersPerBlock = append(c.TransformerLayersPerBlock, layers)
	}
	for i := range levels {
		u := "up_blocks." + strconv.Itoa(i)
		c.UpBlockTypes = append(c.UpBlockTypes, upType(has(shapes, u+".attentions.0.")))
	}
	toK, err := shape("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", 2)
	if err != nil {
		return Config{}, err
	}
	cross := toK[1]
	projIn, ok := shapes["mid_block.attentions.0.proj_in.weight"]
	c.UseLinearProjection = ok && len(projIn) == 2 // a 1×1 conv otherwise
	for _, ch := range c.BlockOutChannels {
		c.CrossAttentionDim = append(c.CrossAttentionDim, cross)
		if cross == 768 {
			c.AttentionHeads = append(c.AttentionHeads, 8) // SD 1.x: attention_head_dim 8
		} else {
			c.AttentionHeads = append(c.AttentionHeads, max(ch/64, 1)) // SD 2.x: 64 channels per head
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("detected UNet config: %w", err)
	}
	return c, nil
}

// ldmShapes renames the UNet keys of an original single-file checkpoint to diffusers
// names, placing its blocks from the input_blocks / output_blocks structure.
func ldmShapes(shapes map[string][]int) (map[string][]int, error) {
	var skel Config
	level, layers, attn := 0, 0, false
	closeLevel := func() {
		skel.LayersPerBlock = append(skel.LayersPerBlock, layers)
		skel.DownBlockTypes = append(skel.DownBlockTypes, downType(attn))
		skel.BlockOutChannels = append(skel.BlockOutChannels, 32) // placeholder: only the structure matters here
		level, layers, attn = level+1, 0, false
	}
	n := count(shapes, LDMPrefix+"input_blocks.")
	for k := 1; k < n; k++ {
		b := LDMPrefix + "input_blocks." + strconv.Itoa(k)
		if has(shapes, b+".0.op.") {
			closeLevel()
			continue
		}
		layers++
		attn = attn || has(shapes, b+".1.")
	}
	closeLevel()
	levels := level
	k := 0
	for i := range levels {
		b := LDMPrefix + "output_blocks." + strconv.Itoa(k)
		skel.UpBlockTypes = append(skel.UpBlockTypes, upType(has(shapes, b+".1.norm.")))
		k += skel.LayersPerBlock[levels-1-i] + 1
	}
	for range levels {
		skel.TransformerLayersPerBlock = append(skel.TransformerLayersPerBlock, 1)
		skel.AttentionHeads = append(skel.AttentionHeads, 1)
		skel.CrossAttentionDim = append(skel.CrossAttentionDim, 1)
	}
	skel.MidBlockType, skel.NormNumGroups, skel.NormEps = UNetMidBlock2DCrossAttn, 32, 1e-5
	skel.InChannels, skel.OutChannels, skel.ConvInKernel, skel.ConvOutKernel = 1, 1, 3, 3
	skel.DownsamplePadding, skel.TimeEmbeddingDim, skel.MidBlockScaleFactor, skel.ResnetOutScaleFactor = 1, 1, 1, 1
	var keys []string
	for k := range shapes {
		keys = append(keys, k)
	}
	names, err := LDMToDiffusers(skel, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]int, len(names))
	for from, to := range names {
		out[to] = shapes[from]
	}
	return out, nil
}

// count returns 1 + the largest index i of keys prefix+"i.…", or 0.
func count(shapes map[string][]int, prefix string) int {
	n := 0
	for k := range shapes {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		i, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '.'), 0)])
		if err == nil {
			n = max(n, i+1)
		}
	}
	return n
}

// has reports whether some key starts with prefix.
func has(shapes map[string][]int, prefix string) bool {
	for k := range shapes {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// downType and upType name the block with or without cross-attention.
func downType(attn bool) string {
	if attn {
		return CrossAttnDownBlock2D
	}
	return DownBlock2D
}

func upType(attn bool) string {
	if attn {
		return CrossAttnUpBlock2D
	}
	return UpBlock2D
}
