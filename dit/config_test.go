package dit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
)

func loadConfig(t *testing.T, path string) Config {
	t.Helper()
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readHeader(t *testing.T, path string) *safetensors.Header {
	t.Helper()
	h, err := safetensors.ReadHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestDetectConfigGolden detects the golden models' configs from their weight headers:
// with the "config" metadata the result is the golden config.json exactly; without it
// every shape-derived field still is, and the rest take the documented defaults.
func TestDetectConfigGolden(t *testing.T) {
	dir := golden.Dir(t)
	for _, model := range []string{"dit", "pixart"} {
		t.Run(model, func(t *testing.T) {
			want := loadConfig(t, filepath.Join(dir, model, "config.json"))
			h := readHeader(t, filepath.Join(dir, model, "weights.safetensors"))
			if h.Metadata["config"] == "" {
				t.Fatal("golden weights have no config metadata: the metadata path would go untested")
			}
			got, err := DetectConfig(h)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("DetectConfig = %+v\nwant %+v", got, want)
			}

			bare := *h
			bare.Metadata = nil
			got, err = DetectConfig(&bare)
			switch want := want.(type) {
			case DiTConfig:
				if err != nil {
					t.Fatal(err)
				}
				d := got.(DiTConfig)
				if d.NumHeads != max(want.HiddenSize/64, 1) { // the documented default for a width outside the paper's
					t.Errorf("heads without metadata = %d, want hidden/64", d.NumHeads)
				}
				d.NumHeads = want.NumHeads
				if !reflect.DeepEqual(d, want) {
					t.Fatalf("shape-derived DiT config %+v\nwant %+v", d, want)
				}
			case PixArtConfig:
				// The golden width (32) is no multiple of PixArt-α's head dim 72: without
				// metadata the head count is unknowable and detection must say so.
				if want.Inner()%72 == 0 || err == nil || !strings.Contains(err.Error(), "config.json") {
					t.Fatalf("DetectConfig without metadata: %v, %v; want an error asking for config.json", got, err)
				}
			}

			// Metadata that contradicts the shapes is an error naming the field.
			var meta map[string]any
			if err := json.Unmarshal([]byte(h.Metadata["config"]), &meta); err != nil {
				t.Fatal(err)
			}
			field := map[string]string{"dit": "depth", "pixart": "num_layers"}[model]
			meta[field] = meta[field].(float64) + 1
			raw, _ := json.Marshal(meta)
			bad := *h
			bad.Metadata = map[string]string{"config": string(raw)}
			if _, err := DetectConfig(&bad); err == nil || !strings.Contains(err.Error(), field) {
				t.Fatalf("contradicting metadata: err = %v, want one naming %q", err, field)
			}
		})
	}
}

// TestDetectConfigRoundTrip saves randomly initialised models without metadata and
// detects their configs from the headers alone: tiny-dit, a small PixArt-α with the
// 1024 px model's additional conditions (head dim 72, sample_size 128), and one
// without them at sample_size 64.
func TestDetectConfigRoundTrip(t *testing.T) {
	pixart := func(sample int) PixArtConfig {
		c := Presets["pixart-alpha-512"].(PixArtConfig)
		c.SampleSize, c.NumLayers, c.NumAttentionHeads, c.CrossAttentionDim, c.CaptionChannels = sample, 1, 1, 72, 16
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"tiny-dit", Presets["tiny-dit"]}, {"pixart-1024-like", pixart(128)}, {"pixart-512-like", pixart(64)}} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.cfg, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Release()
			path := filepath.Join(t.TempDir(), "model.safetensors")
			if err := m.Save(path, "", nil); err != nil {
				t.Fatal(err)
			}
			got, err := DetectConfig(readHeader(t, path))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.cfg) {
				t.Fatalf("DetectConfig = %+v\nwant %+v", got, tc.cfg)
			}
			// The saved file loads back into a fresh model of the detected config.
			m2, err := New(got, 2)
			if err != nil {
				t.Fatal(err)
			}
			defer m2.Release()
			if err := m2.Load(path, nn.LoadOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLoadConfigV031 loads the same golden PixArt-α as diffusers v0.31's
// PixArtTransformer2DModel writes it: only the class name may differ.
func TestLoadConfigV031(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "pixart")
	old := loadConfig(t, filepath.Join(dir, "config.json")).(PixArtConfig)
	nu := loadConfig(t, filepath.Join(dir, "config_PixArtTransformer2DModel_v0.31.0.json")).(PixArtConfig)
	if nu.ClassName != "PixArtTransformer2DModel" {
		t.Fatalf("class %q", nu.ClassName)
	}
	nu.ClassName = old.ClassName
	if !reflect.DeepEqual(old, nu) {
		t.Fatalf("v0.31 config %+v\ndiffers from v0.27 %+v", nu, old)
	}
}

// TestLoadConfigErrors checks that a bad config fails with an error naming the file
// and the field.
func TestLoadConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, json, field string
	}{
		{"not json", `{"depth": `, "JSON"},
		{"neither format", `{"foo": 1}`, "hidden_size"},
		{"dit unknown key", `{"depth": 2, "hidden": 64}`, "hidden"},
		{"dit heads", `{"hidden_size": 64, "num_heads": 5}`, "num_heads"},
		{"dit patch", `{"input_size": 15, "patch_size": 2}`, "input_size"},
		{"dit type", `{"depth": "two"}`, "depth"},
		{"diffusers class", `{"_class_name": "UNet2DConditionModel"}`, "_class_name"},
		{"pixart norm", `{"_class_name": "PixArtTransformer2DModel", "norm_type": "layer_norm", "caption_channels": 8}`, "norm_type"},
		{"pixart caption", `{"_class_name": "PixArtTransformer2DModel"}`, "caption_channels"},
		{"pixart cross dim", `{"_class_name": "PixArtTransformer2DModel", "caption_channels": 8, "cross_attention_dim": 64}`, "cross_attention_dim"},
		{"pixart dropout", `{"_class_name": "PixArtTransformer2DModel", "caption_channels": 8, "dropout": 0.1}`, "dropout"},
		{"pixart act", `{"_class_name": "PixArtTransformer2DModel", "caption_channels": 8, "activation_fn": "relu"}`, "activation_fn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			if err := os.WriteFile(path, []byte(tc.json), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("LoadConfig(%s) error %v: want one naming the file and %q", tc.json, err, tc.field)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestNumParams checks NumParams against the models the constructors build, against
// the golden MANIFEST's n_params (PyTorch's count, which includes DiT's frozen
// pos_embed), and for the paper-size presets against an independent per-layer
// formula and the papers' figures.
func TestNumParams(t *testing.T) {
	dir := golden.Dir(t)
	raw, err := os.ReadFile(filepath.Join(dir, "MANIFEST.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		DiT, PixArt struct {
			NParams int64 `json:"n_params"`
		}
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	nParams := map[string]int64{"dit": manifest.DiT.NParams, "pixart": manifest.PixArt.NParams}
	built := func(c Config) int64 {
		m, err := New(c, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Release()
		n, _ := nn.CountParams(m)
		if d, ok := m.(*DiT); ok {
			n += int64(d.PosEmbed.Len()) // PyTorch counts the frozen nn.Parameter
		}
		return n
	}
	for _, model := range []string{"dit", "pixart"} {
		c := loadConfig(t, filepath.Join(dir, model, "config.json"))
		if got, b, want := c.NumParams(), built(c), nParams[model]; got != want || b != want {
			t.Errorf("%s: NumParams %d, built %d, MANIFEST n_params %d", model, got, b, want)
		}
	}
	for _, name := range []string{"tiny-dit", "tiny-pixart"} {
		if got, b := Presets[name].NumParams(), built(Presets[name]); got != b {
			t.Errorf("%s: NumParams %d, built %d", name, got, b)
		}
	}

	// DiT per block: qkv 3D²+3D, proj D²+D, fc1 4D²+4D, fc2 4D²+D, adaLN 6D²+6D.
	ditFormula := func(d, depth, p, latent int64) int64 {
		return depth*(18*d*d+15*d) + (4*p*p*d + d) + (latent/p)*(latent/p)*d +
			(256*d + d + d*d + d) + 1001*d + (2*d*d + 2*d) + (d*p*p*8 + p*p*8)
	}
	// The DiT paper's Table 4 (Gflops/params): S 33M, B 130M, L 458M, XL 675M.
	for _, tc := range []struct {
		name       string
		d, depth   int64
		paperMilli float64
	}{{"dit-s-2", 384, 12, 33}, {"dit-b-2", 768, 12, 130}, {"dit-l-2", 1024, 24, 458}, {"dit-xl-2", 1152, 28, 675}} {
		got := Presets[tc.name].NumParams()
		if want := ditFormula(tc.d, tc.depth, 2, 32); got != want {
			t.Errorf("%s: NumParams %d, formula %d", tc.name, got, want)
		}
		if m := float64(got) / 1e6; m < tc.paperMilli*0.99 || m > tc.paperMilli*1.01 {
			t.Errorf("%s: %.1fM parameters, the paper says %.0fM", tc.name, m, tc.paperMilli)
		}
	}
	if got := Presets["dit-xl-2"].NumParams(); got != 675_129_632 {
		t.Errorf("dit-xl-2: %d parameters, want 675,129,632", got)
	}
	// PixArt-α XL/2: per block attn1 4(D²+D), attn2 4(D²+D) (cross dim = D), ff 8D²+5D,
	// table 6D; 0.6B in the paper. The 1024 px model adds two (256→D/3→D/3) MLPs.
	d := int64(1152)
	pix := 28*(8*(d*d+d)+8*d*d+5*d+6*d) + (16*d + d) + (256*d + d + d*d + d + 6*d*d + 6*d) +
		(4096*d + d + d*d + d) + 2*d + (d*32 + 32)
	s := d / 3
	if got := Presets["pixart-alpha-512"].NumParams(); got != pix {
		t.Errorf("pixart-alpha-512: %d parameters, formula %d", got, pix)
	}
	if got, want := Presets["pixart-alpha-1024"].NumParams(), pix+2*(256*s+s+s*s+s); got != want {
		t.Errorf("pixart-alpha-1024: %d parameters, formula %d", got, want)
	}
	t.Logf("dit-xl-2 %d, pixart-alpha-512 %d, pixart-alpha-1024 %d parameters",
		Presets["dit-xl-2"].NumParams(), Presets["pixart-alpha-512"].NumParams(), Presets["pixart-alpha-1024"].NumParams())
}

// TestPresetsValid checks every preset validates and the PixArt-α presets carry the
// diffusers values.
func TestPresetsValid(t *testing.T) {
	for name, c := range Presets {
		if err := c.Validate(); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
	}
	for name, sample := range map[string]int{"pixart-alpha-512": 64, "pixart-alpha-1024": 128} {
		c := Presets[name].(PixArtConfig)
		if c.SampleSize != sample || c.PatchSize != 2 || c.InChannels != 4 || c.Out() != 8 || c.NumLayers != 28 ||
			c.NumAttentionHeads != 16 || c.AttentionHeadDim != 72 || c.CrossAttentionDim != 1152 || c.CaptionChannels != 4096 ||
			c.NormEps != 1e-6 || c.AdditionalConditions() != (sample == 128) || c.Interpolation() != float64(sample/64) {
			t.Errorf("preset %s = %+v", name, c)
		}
	}
}
