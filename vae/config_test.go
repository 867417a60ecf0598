package vae

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/internal/parity"
)

// TestPresetMatchesManifest checks the sd preset against the real SD VAE: its
// config.json loads to the preset, and the preset's parameters are the real key set
// with the real shapes (shapes only: nothing is allocated).
func TestPresetMatchesManifest(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join(golden.Dir(t), "manifests", "sd_vae.config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if p := Presets["sd"].Config; !reflect.DeepEqual(cfg, p) {
		t.Fatalf("sd_vae.config.json loads to\n%+v\nthe sd preset is\n%+v", cfg, p)
	}
	got, err := ParamShapes(cfg)
	if err != nil {
		t.Fatal(err)
	}
	parity.SameShapes(t, "sd preset", got, parity.Manifest(t, "sd_vae.json"))
}

// TestLDMNames maps the SD 1.5 single-file VAE keys (first_stage_model.*) onto the
// diffusers SD VAE name for name and shape for shape, and back.
func TestLDMNames(t *testing.T) {
	cfg := Presets["sd"].Config
	ldm := parity.Manifest(t, "sd15_original_ldm.json") // UNet, VAE and text encoder keys
	want := parity.Manifest(t, "sd_vae.json")
	var keys []string
	for k := range ldm {
		keys = append(keys, k)
	}
	toDiffusers, err := LDMToDiffusers(cfg, keys)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int{}
	for k, d := range toDiffusers {
		if _, dup := got[d]; dup {
			t.Fatalf("two LDM keys map to %s", d)
		}
		got[d] = DiffusersShape(d, ldm[k])
	}
	parity.SameShapes(t, "first_stage_model.* mapped to diffusers", got, want)

	var names []string
	for k := range want {
		names = append(names, k)
	}
	back, err := DiffusersToLDM(cfg, names)
	if err != nil {
		t.Fatal(err)
	}
	for d, l := range back {
		if s, ok := ldm[l]; !ok {
			t.Errorf("%s maps to %s, which the LDM file lacks", d, l)
		} else if !slices.Equal(LDMShape(d, want[d]), s) {
			t.Errorf("%s: LDM shape %v, file has %v", d, LDMShape(d, want[d]), s)
		}
	}
	// Spot checks of the renames that matter: reversed up levels, 1×1 attention, shortcut.
	for ldmKey, d := range map[string]string{
		"first_stage_model.decoder.up.3.upsample.conv.weight":        "decoder.up_blocks.0.upsamplers.0.conv.weight",
		"first_stage_model.decoder.up.0.block.2.conv2.bias":          "decoder.up_blocks.3.resnets.2.conv2.bias",
		"first_stage_model.encoder.mid.attn_1.proj_out.weight":       "encoder.mid_block.attentions.0.to_out.0.weight",
		"first_stage_model.encoder.down.1.block.0.nin_shortcut.bias": "encoder.down_blocks.1.resnets.0.conv_shortcut.bias",
		"first_stage_model.decoder.norm_out.weight":                  "decoder.conv_norm_out.weight",
	} {
		if toDiffusers[ldmKey] != d {
			t.Errorf("%s -> %q, want %q", ldmKey, toDiffusers[ldmKey], d)
		}
	}
	if _, err := LDMToDiffusers(cfg, []string{"first_stage_model.encoder.down.4.block.0.conv1.weight"}); err == nil ||
		!strings.Contains(err.Error(), "encoder.down.4") {
		t.Fatalf("a fifth level: error %v, want one naming the key", err)
	}
}

// TestLoadConfigErrors checks that bad configs fail naming the field.
func TestLoadConfigErrors(t *testing.T) {
	base := `"_class_name": "AutoencoderKL", "block_out_channels": [32, 64], "norm_num_groups": 8,
		"down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]`
	for _, c := range []struct{ name, extra, want string }{
		{"unknown field", `"use_tiling": true`, `unknown field(s) ["use_tiling"]`},
		{"other class", `"_class_name": "VQModel"`, `"_class_name"`},
		{"activation", `"act_fn": "gelu"`, `"act_fn"`},
		{"latent statistics", `"latents_mean": [0.1, 0.2, 0.3, 0.4]`, `"latents_mean"`},
		{"wrong type", `"layers_per_block": "two"`, `"layers_per_block"`},
		{"groups", `"norm_num_groups": 5`, `"block_out_channels"`},
		{"block type", `"down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]`, `"AttnDownEncoderBlock2D"`},
		{"levels", `"up_block_types": ["UpDecoderBlock2D"]`, `"up_block_types"`},
		{"sample size", `"sample_size": "big"`, `"sample_size"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A later duplicate key wins in encoding/json, so extra overrides base.
			path := filepath.Join(t.TempDir(), "config.json")
			if err := os.WriteFile(path, []byte("{"+base+", "+c.extra+"}"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v, want one naming %s and %s", err, path, c.want)
			}
		})
	}
	t.Run("defaults and options", func(t *testing.T) {
		c, err := ParseConfig([]byte("{" + base + `, "shift_factor": 0.1159, "sample_size": [512, 768], "use_quant_conv": false}`))
		if err != nil {
			t.Fatal(err)
		}
		if c.ShiftFactor != 0.1159 || c.SampleSize != 768 || c.UseQuantConv || !c.UsePostQuantConv || c.LayersPerBlock != 1 || c.ScalingFactor != 0.18215 {
			t.Fatalf("%+v", c)
		}
		shapes, err := ParamShapes(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := shapes["quant_conv.weight"]; ok {
			t.Fatal("quant_conv built although use_quant_conv is false")
		}
	})
}

// TestDetectLDMConfig: the SD 1.5 single-file VAE keys (first_stage_model.* of the
// golden manifest) detect to the sd preset; a two-level variant detects with its own
// channels and depth; a missing key is named.
func TestDetectLDMConfig(t *testing.T) {
	ldm := map[string][]int{}
	for k, s := range parity.Manifest(t, "sd15_original_ldm.json") {
		if strings.HasPrefix(k, LDMPrefix) {
			ldm[k] = s
		}
	}
	got, err := DetectLDMConfig(ldm)
	if err != nil {
		t.Fatal(err)
	}
	if want := Presets["sd"].Config; !reflect.DeepEqual(got, want) {
		t.Fatalf("detected\n%+v\nwant the sd preset\n%+v", got, want)
	}
	small := Presets["sd"].Config.clone()
	small.BlockOutChannels, small.LayersPerBlock = []int{32, 64}, 1
	small.DownBlockTypes, small.UpBlockTypes = small.DownBlockTypes[:2], small.UpBlockTypes[:2]
	shapes, err := ParamShapes(small)
	if err != nil {
		t.Fatal(err)
	}
	names, err := DiffusersToLDM(small, keysOf(shapes))
	if err != nil {
		t.Fatal(err)
	}
	file := map[string][]int{}
	for k, s := range shapes {
		file[names[k]] = LDMShape(k, s)
	}
	if got, err := DetectLDMConfig(file); err != nil || !reflect.DeepEqual(got, small) {
		t.Fatalf("two levels: %+v, %v", got, err)
	}
	delete(file, LDMPrefix+"decoder.up.1.block.1.conv2.weight")
	if _, err := DetectLDMConfig(file); err == nil || !strings.Contains(err.Error(), "decoder.up.1.block.1.conv2.weight") {
		t.Fatalf("missing key: %v", err)
	}
}
