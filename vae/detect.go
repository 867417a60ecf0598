package vae

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// DetectLDMConfig infers the Config of the VAE in an original single-file checkpoint
// from its key names and shapes (first_stage_model.* keys, or the same without the
// prefix); no tensor data is read. What the weights do not record is taken from the
// Stable Diffusion 1.x/2.x VAE (the "sd" preset): 32 norm groups, scaling factor
// 0.18215, no shift, 512-pixel tiles. The result is checked by building the parameter
// shapes it implies and comparing them with the file's, so a wrong guess fails naming
// the key instead of loading wrongly.
func DetectLDMConfig(shapes map[string][]int) (Config, error) {
	own := map[string][]int{}
	for k, s := range shapes {
		if rest, ok := strings.CutPrefix(k, LDMPrefix); ok {
			own[rest] = s
		}
	}
	if len(own) == 0 {
		own = shapes
	}
	get := func(k string, rank int) ([]int, error) {
		s, ok := own[k]
		if !ok {
			return nil, fmt.Errorf("no VAE key %q (is this a Stable Diffusion autoencoder?)", LDMPrefix+k)
		}
		if len(s) != rank {
			return nil, fmt.Errorf("VAE key %q has shape %v, want rank %d", LDMPrefix+k, s, rank)
		}
		return s, nil
	}
	sd := Presets["sd"].Config
	c := Config{NormNumGroups: sd.NormNumGroups, SampleSize: sd.SampleSize, ScalingFactor: sd.ScalingFactor, ForceUpcast: true}
	convIn, err := get("encoder.conv_in.weight", 4)
	if err != nil {
		return Config{}, err
	}
	convOut, err := get("decoder.conv_out.weight", 4)
	if err != nil {
		return Config{}, err
	}
	decIn, err := get("decoder.conv_in.weight", 4)
	if err != nil {
		return Config{}, err
	}
	c.InChannels, c.OutChannels, c.LatentChannels = convIn[1], convOut[0], decIn[1]
	levels := count(own, "encoder.down.")
	if levels == 0 {
		return Config{}, fmt.Errorf("no VAE keys %q (is this a Stable Diffusion autoencoder?)", LDMPrefix+"encoder.down.*")
	}
	for i := range levels {
		conv1, err := get("encoder.down."+strconv.Itoa(i)+".block.0.conv1.weight", 4)
		if err != nil {
			return Config{}, err
		}
		c.BlockOutChannels = append(c.BlockOutChannels, conv1[0])
		c.DownBlockTypes = append(c.DownBlockTypes, DownEncoderBlock2D)
		c.UpBlockTypes = append(c.UpBlockTypes, UpDecoderBlock2D)
	}
	c.LayersPerBlock = count(own, "encoder.down.0.block.")
	_, c.MidBlockAddAttention = own["encoder.mid.attn_1.q.weight"]
	_, c.UseQuantConv = own["quant_conv.weight"]
	_, c.UsePostQuantConv = own["post_quant_conv.weight"]
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("detected VAE config: %w", err)
	}
	want, err := ParamShapes(c)
	if err != nil {
		return Config{}, fmt.Errorf("detected VAE config: %w", err)
	}
	toLDM, err := DiffusersToLDM(c, keysOf(want))
	if err != nil {
		return Config{}, fmt.Errorf("detected VAE config: %w", err)
	}
	for name, s := range want {
		key := strings.TrimPrefix(toLDM[name], LDMPrefix)
		got, ok := own[key]
		if !ok {
			return Config{}, fmt.Errorf("detected VAE config implies key %q, which the checkpoint lacks", LDMPrefix+key)
		}
		if !slices.Equal(DiffusersShape(name, got), s) {
			return Config{}, fmt.Errorf("detected VAE config implies %q of shape %v, the checkpoint has %v", LDMPrefix+key, LDMShape(name, s), got)
		}
	}
	return c, nil
}

func keysOf(m map[string][]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// count returns 1 + the largest index i of keys prefix+"i.…", or 0.
func count(shapes map[string][]int, prefix string) int {
	n := 0
	for k := range shapes {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			if i, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '.'), 0)]); err == nil {
				n = max(n, i+1)
			}
		}
	}
	return n
}
