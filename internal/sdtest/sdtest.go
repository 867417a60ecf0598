// Package sdtest writes tiny Stable Diffusion-style models for tests: the SD 1.x
// layout (a UNet with cross-attention, a four-level VAE, a CLIP text encoder over the
// real CLIP vocabulary) at widths of 32 to 64, with random F16 weights, as a
// diffusers folder, as a single-file checkpoint with the original LDM names, and as
// an SD 2.x-style single file whose text encoder is in OpenCLIP naming. The tokenizer
// folder is copied from the golden folder: the repository ships no vocabulary.
package sdtest

import (
	"encoding/binary"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
	"github.com/difftune/difftune/textenc"
	"github.com/difftune/difftune/unet"
	"github.com/difftune/difftune/vae"
)

// UNet is the tiny UNet: SD 1.x's layout (cross-attention at the upper level, plain
// blocks at the lowest) on two levels of 32 and 64 channels, attending to the 64-wide
// text encoder with one head per level (what unet.DetectConfig assumes, 64 channels
// per head, for a context that is not SD 1.x's 768).
func UNet() unet.Config {
	return unet.Config{
		SampleSize: 64, InChannels: 4, OutChannels: 4, FlipSinToCos: true,
		DownBlockTypes: []string{unet.CrossAttnDownBlock2D, unet.DownBlock2D}, MidBlockType: unet.UNetMidBlock2DCrossAttn,
		UpBlockTypes:     []string{unet.UpBlock2D, unet.CrossAttnUpBlock2D},
		BlockOutChannels: []int{32, 64}, LayersPerBlock: []int{1, 1}, TransformerLayersPerBlock: []int{1, 1},
		AttentionHeads: []int{1, 1}, CrossAttentionDim: []int{64, 64},
		DownsamplePadding: 1, MidBlockScaleFactor: 1, ResnetOutScaleFactor: 1,
		NormNumGroups: 32, NormEps: 1e-5, ConvInKernel: 3, ConvOutKernel: 3, TimeEmbeddingDim: 128,
	}
}

// VAE is the tiny VAE: the SD VAE's four levels (8× downsampling, 4 latent channels,
// scaling 0.18215) at 32 channels with one resnet per down block.
func VAE() vae.Config {
	c := vae.Presets["sd"].Config
	c.BlockOutChannels = []int{32, 32, 32, 32}
	c.LayersPerBlock = 1
	c.DownBlockTypes = slices.Clone(c.DownBlockTypes)
	c.UpBlockTypes = slices.Clone(c.UpBlockTypes)
	return c
}

// CLIP is the tiny text encoder: 64 wide (one 64-channel head), two layers, over
// CLIP's 49408-token vocabulary and 77 positions.
func CLIP(act string) textenc.CLIPConfig {
	return textenc.CLIPConfig{VocabSize: 49408, HiddenSize: 64, IntermediateSize: 128, NumHiddenLayers: 2, NumAttentionHeads: 1,
		MaxPositionEmbeddings: 77, HiddenAct: act, LayerNormEps: 1e-5, EOSTokenID: 2}
}

// Model holds the tiny model's weights under diffusers and Hugging Face names.
type Model struct {
	UNet, VAE, Text map[string]safetensors.Tensor
}

// weights returns m's parameters as F16 safetensors records and releases m.
func weights(t testing.TB, m nn.Module) map[string]safetensors.Tensor {
	t.Helper()
	out := map[string]safetensors.Tensor{}
	for _, p := range m.Params("") {
		v := p.T().Float32s()
		data := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(data[2*i:], tensor.F32ToF16(x))
		}
		out[p.Name] = safetensors.Tensor{Name: p.Name, DType: safetensors.F16, Shape: slices.Clone(p.T().Shape()), Data: data}
	}
	nn.ReleaseParams(m)
	return out
}

// New draws the tiny model's weights (seeded, so every call gives the same model);
// act is the text encoder's activation ("quick_gelu" for SD 1.x, "gelu" for 2.x).
func New(t testing.TB, act string) Model {
	t.Helper()
	u, err := unet.NewRandom(UNet(), 1)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vae.NewRandom(VAE(), 2)
	if err != nil {
		t.Fatal(err)
	}
	c, err := textenc.NewCLIPText(CLIP(act), rand.New(rand.NewPCG(3, 3)), false)
	if err != nil {
		t.Fatal(err)
	}
	return Model{UNet: weights(t, u), VAE: weights(t, v), Text: weights(t, c)}
}

func write(t testing.TB, path string, recs map[string]safetensors.Tensor, meta map[string]string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(path, slices.Collect(maps.Values(recs)), meta); err != nil {
		t.Fatal(err)
	}
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Tokenizer copies the golden CLIP vocab.json and merges.txt into dir and returns it.
func Tokenizer(t testing.TB, dir string) string {
	t.Helper()
	src := filepath.Join(golden.Dir(t), "clip_text", "tokenizer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vocab.json", "merges.txt"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Folder writes m as a diffusers folder at dir (model_index.json, unet/, vae/,
// text_encoder/, tokenizer/, scheduler/) and returns dir.
func (m Model) Folder(t testing.TB, dir string) string {
	t.Helper()
	u, v, c := UNet(), VAE(), CLIP("quick_gelu")
	writeJSON(t, filepath.Join(dir, "model_index.json"), map[string]any{"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.27.2"})
	writeJSON(t, filepath.Join(dir, "unet", "config.json"), map[string]any{
		"_class_name": "UNet2DConditionModel", "sample_size": u.SampleSize, "in_channels": u.InChannels, "out_channels": u.OutChannels,
		"down_block_types": u.DownBlockTypes, "up_block_types": u.UpBlockTypes, "block_out_channels": u.BlockOutChannels,
		"layers_per_block": 1, "cross_attention_dim": 64, "attention_head_dim": u.AttentionHeads, "norm_num_groups": 32,
		"act_fn": "silu", "flip_sin_to_cos": true, "freq_shift": 0, "downsample_padding": 1, "mid_block_scale_factor": 1,
	})
	writeJSON(t, filepath.Join(dir, "vae", "config.json"), map[string]any{
		"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "down_block_types": v.DownBlockTypes,
		"up_block_types": v.UpBlockTypes, "block_out_channels": v.BlockOutChannels, "layers_per_block": v.LayersPerBlock,
		"latent_channels": 4, "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215, "act_fn": "silu",
	})
	writeJSON(t, filepath.Join(dir, "text_encoder", "config.json"), map[string]any{
		"architectures": []string{"CLIPTextModel"}, "vocab_size": c.VocabSize, "hidden_size": c.HiddenSize,
		"intermediate_size": c.IntermediateSize, "num_hidden_layers": c.NumHiddenLayers, "num_attention_heads": c.NumAttentionHeads,
		"max_position_embeddings": c.MaxPositionEmbeddings, "hidden_act": c.HiddenAct, "layer_norm_eps": c.LayerNormEps,
		"eos_token_id": c.EOSTokenID, "bos_token_id": 0, "pad_token_id": 1, "projection_dim": 64,
	})
	// SD 1.5's scheduler/scheduler_config.json.
	writeJSON(t, filepath.Join(dir, "scheduler", "scheduler_config.json"), map[string]any{
		"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
		"num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
		"clip_sample": false, "prediction_type": "epsilon",
	})
	write(t, filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors"), m.UNet, nil)
	write(t, filepath.Join(dir, "vae", "diffusion_pytorch_model.safetensors"), m.VAE, nil)
	write(t, filepath.Join(dir, "text_encoder", "model.safetensors"), m.Text, nil)
	Tokenizer(t, filepath.Join(dir, "tokenizer"))
	return dir
}

// ldm renames the UNet and VAE records to their single-file keys.
func (m Model) ldm(t testing.TB) map[string]safetensors.Tensor {
	t.Helper()
	out := map[string]safetensors.Tensor{}
	un, err := unet.DiffusersToLDM(UNet(), slices.Collect(maps.Keys(m.UNet)))
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range m.UNet {
		r.Name = un[k]
		out[r.Name] = r
	}
	vn, err := vae.DiffusersToLDM(VAE(), slices.Collect(maps.Keys(m.VAE)))
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range m.VAE {
		r.Name, r.Shape = vn[k], vae.LDMShape(k, r.Shape)
		out[r.Name] = r
	}
	// What real single files carry besides the weights: the schedule buffers.
	out["alphas_cumprod"] = safetensors.Tensor{Name: "alphas_cumprod", DType: safetensors.F32, Shape: []int{1000}, Data: make([]byte, 4000)}
	return out
}

// SingleFile writes m as an SD 1.x single-file checkpoint at path: LDM names for the
// UNet and VAE, the text encoder under cond_stage_model.transformer. with its
// position_ids buffer, and the schedule buffers.
func (m Model) SingleFile(t testing.TB, path string, meta map[string]string) string {
	t.Helper()
	out := m.ldm(t)
	for k, r := range m.Text {
		r.Name = textenc.LDMPrefix + k
		out[r.Name] = r
	}
	ids := make([]byte, 8*77)
	for i := range 77 {
		binary.LittleEndian.PutUint64(ids[8*i:], uint64(i))
	}
	pos := textenc.LDMPrefix + "text_model.embeddings.position_ids"
	out[pos] = safetensors.Tensor{Name: pos, DType: safetensors.I64, Shape: []int{1, 77}, Data: ids}
	write(t, path, out, meta)
	return path
}

// OpenCLIPFile writes m (drawn with act "gelu") as an SD 2.x-style single file: the
// text encoder under cond_stage_model.model. in OpenCLIP naming (q, k, v fused into
// in_proj), with one more resblock than the model uses (SD 2.x conditions on the
// penultimate layer; the extra one is a copy of the last), a text projection and a
// logit scale.
func (m Model) OpenCLIPFile(t testing.TB, path string) string {
	t.Helper()
	out := m.ldm(t)
	c := CLIP("gelu")
	put := func(name string, r safetensors.Tensor) {
		r.Name = textenc.OpenCLIPPrefix + name
		out[r.Name] = r
	}
	top := map[string]string{
		"text_model.embeddings.token_embedding.weight":    "token_embedding.weight",
		"text_model.embeddings.position_embedding.weight": "positional_embedding",
		"text_model.final_layer_norm.weight":              "ln_final.weight",
		"text_model.final_layer_norm.bias":                "ln_final.bias",
	}
	leaf := map[string]string{"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
	for l := range c.NumHiddenLayers + 1 {
		src := min(l, c.NumHiddenLayers-1)
		hf := "text_model.encoder.layers." + strconv.Itoa(src) + "."
		oc := "transformer.resblocks." + strconv.Itoa(l) + "."
		for from, to := range leaf {
			for _, p := range []string{".weight", ".bias"} {
				put(oc+to+p, m.Text[hf+from+p])
			}
		}
		for _, p := range []string{"weight", "bias"} {
			q, k, v := m.Text[hf+"self_attn.q_proj."+p], m.Text[hf+"self_attn.k_proj."+p], m.Text[hf+"self_attn.v_proj."+p]
			shape := slices.Clone(q.Shape)
			shape[0] *= 3
			put(oc+"attn.in_proj_"+p, safetensors.Tensor{DType: q.DType, Shape: shape, Data: slices.Concat(q.Data, k.Data, v.Data)})
		}
	}
	for from, to := range top {
		put(to, m.Text[from])
	}
	put("text_projection", safetensors.Tensor{DType: safetensors.F16, Shape: []int{64, 64}, Data: make([]byte, 2*64*64)})
	put("logit_scale", safetensors.Tensor{DType: safetensors.F32, Shape: []int{}, Data: make([]byte, 4)})
	write(t, path, out, nil)
	return path
}

// Fake writes a header-only stand-in for a checkpoint: each key a tiny F16 tensor of
// the given shape (1 element when nil), zero data.
func Fake(t testing.TB, path string, keys map[string][]int) string {
	t.Helper()
	recs := map[string]safetensors.Tensor{}
	for k, s := range keys {
		if s == nil {
			s = []int{1}
		}
		n := 1
		for _, d := range s {
			n *= d
		}
		recs[k] = safetensors.Tensor{Name: k, DType: safetensors.F16, Shape: s, Data: make([]byte, 2*n)}
	}
	write(t, path, recs, nil)
	return path
}
