package textenc

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Key prefixes of the text encoder inside a single-file Stable Diffusion checkpoint.
const (
	// LDMPrefix precedes Hugging Face CLIPTextModel names ("text_model.*") in SD 1.x
	// files (FrozenCLIPEmbedder wraps a transformers model).
	LDMPrefix = "cond_stage_model.transformer."
	// OpenCLIPPrefix precedes OpenCLIP names ("transformer.resblocks.*") in SD 2.x
	// files (FrozenOpenCLIPEmbedder).
	OpenCLIPPrefix = "cond_stage_model.model."
)

// Part locates one CLIPText parameter in a file: its key and, for a slice of a fused
// tensor (OpenCLIP's in_proj holds q, k and v), the rows [From, To). To == 0 means
// the whole tensor.
type Part struct {
	Key      string
	From, To int
}

// openCLIPAliases is the one table of names between openai/OpenCLIP text towers and
// Hugging Face's CLIPTextModel, per layer ("resblock") and at the top level.
var openCLIPAliases = []struct{ scope, openCLIP, hf string }{
	{"", "token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
	{"", "positional_embedding", "text_model.embeddings.position_embedding.weight"},
	{"", "ln_final.weight", "text_model.final_layer_norm.weight"},
	{"", "ln_final.bias", "text_model.final_layer_norm.bias"},
	{"layer", "ln_1", "layer_norm1"},
	{"layer", "ln_2", "layer_norm2"},
	{"layer", "attn.out_proj", "self_attn.out_proj"},
	{"layer", "mlp.c_fc", "mlp.fc1"},
	{"layer", "mlp.c_proj", "mlp.fc2"},
}

// openCLIPIgnored are keys of the text tower that CLIPText does not use: the
// projection into the joint embedding space (SD conditions on hidden states), the
// contrastive temperature, and the causal mask buffer.
var openCLIPIgnored = []string{"text_projection", "logit_scale", "attn_mask"}

// OpenCLIPToHF maps the parameters of a CLIPText to the keys of an openai/OpenCLIP
// text tower, given its key -> shape map without prefix. q, k and v come from row
// thirds of attn.in_proj_weight and attn.in_proj_bias. dropLast leaves the last
// resblock out, as diffusers converts SD 2.x, which conditions on the penultimate
// layer (followed by ln_final). It also returns the shapes under the Hugging Face names,
// for DetectCLIPConfig. It fails naming a key it cannot place.
func OpenCLIPToHF(shapes map[string][]int, dropLast bool) (map[string]Part, map[string][]int, error) {
	layers := 0
	for k := range shapes {
		if rest, ok := strings.CutPrefix(k, "transformer.resblocks."); ok {
			i, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '.'), 0)])
			if err != nil {
				return nil, nil, fmt.Errorf("text encoder key %q: no layer index", k)
			}
			layers = max(layers, i+1)
		}
	}
	if layers == 0 {
		return nil, nil, fmt.Errorf("no transformer.resblocks.* keys: not an openai/OpenCLIP text tower")
	}
	keep := layers
	if dropLast {
		keep--
	}
	parts, hf := map[string]Part{}, map[string][]int{}
	add := func(name, key string, shape []int, from, to int) {
		parts[name] = Part{Key: key, From: from, To: to}
		hf[name] = shape
	}
	for k, s := range shapes {
		if slices.Contains(openCLIPIgnored, k) {
			continue
		}
		if rest, ok := strings.CutPrefix(k, "transformer.resblocks."); ok {
			dot := strings.IndexByte(rest, '.')
			i, _ := strconv.Atoi(rest[:dot])
			if i >= keep {
				continue
			}
			layer, leaf := "text_model.encoder.layers."+rest[:dot]+".", rest[dot+1:]
			if fused, ok := strings.CutPrefix(leaf, "attn.in_proj_"); ok { // "weight" or "bias"
				if len(s) == 0 || s[0]%3 != 0 {
					return nil, nil, fmt.Errorf("text encoder key %q: shape %v does not split into q, k, v", k, s)
				}
				w := s[0] / 3
				for j, proj := range []string{"q_proj", "k_proj", "v_proj"} {
					add(layer+"self_attn."+proj+"."+fused, k, append([]int{w}, s[1:]...), j*w, (j+1)*w)
				}
				continue
			}
			mod, param, _ := cutLast(leaf)
			found := false
			for _, a := range openCLIPAliases {
				if a.scope == "layer" && a.openCLIP == mod {
					add(layer+a.hf+"."+param, k, s, 0, 0)
					found = true
				}
			}
			if !found {
				return nil, nil, fmt.Errorf("text encoder key %q has no CLIPText counterpart", k)
			}
			continue
		}
		found := false
		for _, a := range openCLIPAliases {
			if a.scope == "" && a.openCLIP == k {
				add(a.hf, k, s, 0, 0)
				found = true
			}
		}
		if !found {
			return nil, nil, fmt.Errorf("text encoder key %q has no CLIPText counterpart", k)
		}
	}
	return parts, hf, nil
}

// cutLast splits "a.b.weight" into "a.b" and "weight".
func cutLast(s string) (string, string, bool) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// DetectCLIPConfig infers a CLIPConfig from Hugging Face key names and shapes (as
// CLIPText.Params names them, without prefix) — what a single-file checkpoint gives
// instead of a config.json. What no shape shows is taken from every released CLIP
// text tower: 64-channel heads, layer norm eps 1e-5, end-token pooling by the largest
// id (eos_token_id 2), and the activation act ("quick_gelu" for openai CLIP ViT-L
// in SD 1.x, "gelu" for OpenCLIP ViT-H in SD 2.x). It fails naming the missing key.
func DetectCLIPConfig(shapes map[string][]int, act string) (CLIPConfig, error) {
	get := func(k string, rank int) ([]int, error) {
		s, ok := shapes[k]
		if !ok {
			return nil, fmt.Errorf("text encoder: no key %q (is this a CLIP text encoder?)", k)
		}
		if len(s) != rank {
			return nil, fmt.Errorf("text encoder: key %q has shape %v, want rank %d", k, s, rank)
		}
		return s, nil
	}
	tok, err := get("text_model.embeddings.token_embedding.weight", 2)
	if err != nil {
		return CLIPConfig{}, err
	}
	pos, err := get("text_model.embeddings.position_embedding.weight", 2)
	if err != nil {
		return CLIPConfig{}, err
	}
	fc1, err := get("text_model.encoder.layers.0.mlp.fc1.weight", 2)
	if err != nil {
		return CLIPConfig{}, err
	}
	layers := 0
	for k := range shapes {
		if rest, ok := strings.CutPrefix(k, "text_model.encoder.layers."); ok {
			if i, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '.'), 0)]); err == nil {
				layers = max(layers, i+1)
			}
		}
	}
	w := tok[1]
	if w%64 != 0 {
		return CLIPConfig{}, fmt.Errorf("text encoder: width %d is not a multiple of 64, so its head count (64 channels per head in every released CLIP) cannot be inferred; use a diffusers folder with text_encoder/config.json", w)
	}
	c := CLIPConfig{VocabSize: tok[0], HiddenSize: w, IntermediateSize: fc1[0], NumHiddenLayers: layers,
		NumAttentionHeads: w / 64, MaxPositionEmbeddings: pos[0], HiddenAct: act, LayerNormEps: 1e-5, EOSTokenID: 2}
	if err := c.Validate(); err != nil {
		return CLIPConfig{}, err
	}
	return c, nil
}
