package unet

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/internal/parity"
	"github.com/difftune/difftune/safetensors"
)

// header turns a key -> shape map into a safetensors header (no data).
func header(m map[string][]int) *safetensors.Header {
	h := &safetensors.Header{}
	for k, s := range m {
		h.Tensors = append(h.Tensors, safetensors.TensorInfo{Name: k, DType: safetensors.F32, Shape: s})
	}
	return h
}

// TestPresetsMatchManifests checks the sd15 and sd21 presets against the real
// models: their diffusers config.json files load to the preset configs, the
// shape-only construction gives the manifests' keys and shapes, and DetectConfig
// recovers the presets from the manifests (less what weights cannot show).
func TestPresetsMatchManifests(t *testing.T) {
	for _, name := range []string{"sd15", "sd21"} {
		t.Run(name, func(t *testing.T) {
			p := Presets[name]
			dir := filepath.Join(golden.Dir(t), "manifests")
			cfg, err := LoadConfig(filepath.Join(dir, name+"_unet.config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg, p.Config) {
				t.Fatalf("config.json gives\n%+v\npreset is\n%+v", cfg, p.Config)
			}
			manifest := parity.Manifest(t, name+"_unet.json")
			shapes, err := ParamShapes(p.Config)
			if err != nil {
				t.Fatal(err)
			}
			parity.SameShapes(t, "ParamShapes", shapes, manifest)

			got, err := DetectConfig(header(manifest))
			if err != nil {
				t.Fatal(err)
			}
			want := p.Config.clone()
			want.SampleSize, want.UpcastAttention = 0, false // not recorded in weights
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("DetectConfig gives\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// TestLDMManifest maps the SD 1.5 single-file checkpoint's UNet keys onto the
// diffusers manifest name for name and shape for shape, maps back, and detects the
// config from the single-file names.
func TestLDMManifest(t *testing.T) {
	ldm := parity.Manifest(t, "sd15_original_ldm.json")
	want := parity.Manifest(t, "sd15_unet.json")
	cfg := Presets["sd15"].Config
	keys := make([]string, 0, len(ldm))
	for k := range ldm {
		keys = append(keys, k)
	}
	names, err := LDMToDiffusers(cfg, keys)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int{}
	for from, to := range names {
		if _, dup := got[to]; dup {
			t.Fatalf("two LDM keys map to %s", to)
		}
		got[to] = ldm[from]
	}
	parity.SameShapes(t, "LDMToDiffusers", got, want)
	if n := len(names); n != 686 { // the UNet's share of the 1131 keys
		t.Fatalf("%d UNet keys mapped, want 686", n)
	}
	for _, pair := range [][2]string{
		{"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"},
		{"model.diffusion_model.time_embed.0.weight", "time_embedding.linear_1.weight"},
		{"model.diffusion_model.input_blocks.0.0.bias", "conv_in.bias"},
		{"model.diffusion_model.out.2.weight", "conv_out.weight"},
		{"model.diffusion_model.input_blocks.4.0.skip_connection.weight", "down_blocks.1.resnets.0.conv_shortcut.weight"},
		{"model.diffusion_model.input_blocks.9.0.op.weight", "down_blocks.2.downsamplers.0.conv.weight"},
		{"model.diffusion_model.middle_block.2.out_layers.3.weight", "mid_block.resnets.1.conv2.weight"},
		{"model.diffusion_model.output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"},
		{"model.diffusion_model.output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"},
		{"model.diffusion_model.output_blocks.11.1.proj_out.weight", "up_blocks.3.attentions.2.proj_out.weight"},
	} {
		if names[pair[0]] != pair[1] {
			t.Errorf("%s -> %q, want %q", pair[0], names[pair[0]], pair[1])
		}
	}

	var dk []string
	for k := range want {
		dk = append(dk, k)
	}
	back, err := DiffusersToLDM(cfg, dk)
	if err != nil {
		t.Fatal(err)
	}
	for from, to := range names {
		if back[to] != from {
			t.Fatalf("round trip: %s -> %s -> %s", from, to, back[to])
		}
	}

	det, err := DetectConfig(header(ldm))
	if err != nil {
		t.Fatal(err)
	}
	wantCfg := cfg.clone()
	wantCfg.SampleSize = 0
	if !reflect.DeepEqual(det, wantCfg) {
		t.Fatalf("DetectConfig on single-file names gives\n%+v\nwant\n%+v", det, wantCfg)
	}
	if _, err := LDMToDiffusers(cfg, []string{"model.diffusion_model.input_blocks.99.0.in_layers.0.weight"}); err == nil ||
		!strings.Contains(err.Error(), "input_blocks.99") {
		t.Fatalf("an unplaceable key gave %v", err)
	}
}

// TestSDXLRecognised checks that SDXL is named as not supported yet, from its
// config.json and from its weights.
func TestSDXLRecognised(t *testing.T) {
	path := filepath.Join(golden.Dir(t), "manifests", "sdxl_base_unet.config.json")
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "addition_embed_type") || !strings.Contains(err.Error(), "SDXL") {
		t.Fatalf("LoadConfig(SDXL) = %v", err)
	}
	_, err = DetectConfig(header(parity.Manifest(t, "sdxl_base_unet.json")))
	if err == nil || !strings.Contains(err.Error(), "SDXL") || !strings.Contains(err.Error(), "add_embedding") {
		t.Fatalf("DetectConfig(SDXL) = %v", err)
	}
}

// TestConfigErrors checks that each refusal names the file and the field.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, json, field string
	}{
		{"class embeddings", `{"class_embed_type": "timestep"}`, "class_embed_type"},
		{"unknown field", `{"in_channels": 4, "fancy_new_thing": 1}`, "fancy_new_thing"},
		{"wrong type", `{"in_channels": "four"}`, "in_channels"},
		{"heads do not divide", `{"attention_head_dim": 7}`, "attention_head_dim"},
		{"list length", `{"attention_head_dim": [5, 10]}`, "attention_head_dim"},
		{"only cross attention", `{"only_cross_attention": [false, true, false, false]}`, "only_cross_attention"},
		{"scale shift", `{"resnet_time_scale_shift": "scale_shift"}`, "resnet_time_scale_shift"},
		{"block type", `{"down_block_types": ["AttnDownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D"]}`, "down_block_types"},
		{"dropout", `{"dropout": 0.1}`, "dropout"},
		{"other class", `{"_class_name": "UNet2DModel"}`, "_class_name"},
		{"null groups", `{"norm_num_groups": null}`, "norm_num_groups"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".json")
			if err := os.WriteFile(path, []byte(c.json), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"`+c.field+`"`) {
				t.Fatalf("LoadConfig = %v, want an error naming %s and %q", err, path, c.field)
			}
		})
	}
	// Defaults alone are SD 1.x's architecture with a 1280-wide context.
	cfg, err := ParseConfig([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Presets["sd15"].Config.clone()
	want.SampleSize, want.CrossAttentionDim = 0, []int{1280, 1280, 1280, 1280}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("defaults give %+v", cfg)
	}
}

// TestParamShapesIsNew checks that the shape-only construction describes exactly
// what New and NewRandom build, and that NewRandom is a function of its seed.
func TestParamShapesIsNew(t *testing.T) {
	for name, p := range map[string]Preset{"tiny-unet": Presets["tiny-unet"]} {
		shapes, err := ParamShapes(p.Config)
		if err != nil {
			t.Fatal(err)
		}
		a, err := p.NewRandom()
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.NewRandom()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]int{}
		pb := b.Params("")
		for i, q := range a.Params("") {
			got[q.Name] = q.T().Shape()
			if !slices.Equal(q.T().Data(), pb[i].T().Data()) {
				t.Fatalf("%s: %s differs between two NewRandom calls with one seed", name, q.Name)
			}
		}
		parity.SameShapes(t, name, got, shapes)
		releaseModels(a, b)
	}
}

// TestLDMFollowsConfig checks that the LDM names are placed from the config, not
// from SD 1.5's layout: on tiny-unet (two levels, one resnet per down block, the
// attention at the second level) and sd21 (linear projections), every diffusers key
// maps to a distinct LDM key and back.
func TestLDMFollowsConfig(t *testing.T) {
	for _, name := range []string{"tiny-unet", "sd21"} {
		cfg := Presets[name].Config
		shapes, err := ParamShapes(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range shapes {
			keys = append(keys, k)
		}
		toLDM, err := DiffusersToLDM(cfg, keys)
		if err != nil {
			t.Fatal(err)
		}
		var ldmKeys []string
		for _, v := range toLDM {
			ldmKeys = append(ldmKeys, v)
		}
		back, err := LDMToDiffusers(cfg, ldmKeys)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(keys) {
			t.Fatalf("%s: %d keys map to %d LDM keys", name, len(keys), len(back))
		}
		for k, v := range toLDM {
			if back[v] != k {
				t.Fatalf("%s: %s -> %s -> %s", name, k, v, back[v])
			}
		}
	}
	tiny := Presets["tiny-unet"].Config
	if got, err := DiffusersToLDM(tiny, []string{"down_blocks.0.resnets.0.in_layers.0.weight"}); err == nil ||
		!strings.Contains(err.Error(), "in_layers") {
		t.Fatalf("an LDM fragment under a diffusers block gave %v, %v", got, err)
	}
	for diffusers, ldm := range map[string]string{
		"down_blocks.0.resnets.0.norm1.weight":                      "input_blocks.1.0.in_layers.0.weight",
		"down_blocks.0.downsamplers.0.conv.weight":                  "input_blocks.2.0.op.weight",
		"down_blocks.1.resnets.0.conv_shortcut.weight":              "input_blocks.3.0.skip_connection.weight",
		"down_blocks.1.attentions.0.proj_in.weight":                 "input_blocks.3.1.proj_in.weight",
		"up_blocks.0.attentions.1.norm.bias":                        "output_blocks.1.1.norm.bias",
		"up_blocks.0.upsamplers.0.conv.weight":                      "output_blocks.1.2.conv.weight",
		"up_blocks.1.resnets.1.time_emb_proj.weight":                "output_blocks.3.0.emb_layers.1.weight",
		"mid_block.attentions.0.transformer_blocks.0.ff.net.2.bias": "middle_block.1.transformer_blocks.0.ff.net.2.bias",
	} {
		got, err := DiffusersToLDM(tiny, []string{diffusers})
		if err != nil || got[diffusers] != LDMPrefix+ldm {
			t.Errorf("%s -> %q (%v), want %q", diffusers, got[diffusers], err, LDMPrefix+ldm)
		}
	}
}
