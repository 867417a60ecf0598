package nn

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// TestTimestepParityUNet checks SinusoidalEmbedding (diffusers Timesteps) and
// TimestepMLP (diffusers TimestepEmbedding) against the UNet reference activations,
// with every setting read from the golden config.json.
func TestTimestepParityUNet(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "unet")
	var cfg struct {
		BlockOutChannels []int   `json:"block_out_channels"`
		FlipSinToCos     bool    `json:"flip_sin_to_cos"`
		FreqShift        float64 `json:"freq_shift"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	io := openGolden(t, filepath.Join(dir, "io.safetensors"))
	acts := openGolden(t, filepath.Join(dir, "activations.safetensors"))
	ts := readGolden(t, io, "timestep")
	defer ts.Release()

	emb := SinusoidalEmbedding(ts.Data(), TimestepEmbeddingConfig{Dim: cfg.BlockOutChannels[0], FlipSinToCos: cfg.FlipSinToCos, DownscaleFreqShift: cfg.FreqShift})
	defer emb.Release()
	// float32 sin/cos of arguments up to ~1000 carry ~1e-7·|arg| error in PyTorch
	// itself, so 1e-5 of max|value| is the bound the golden README gives for outputs.
	expectClose(t, "time_proj", emb, readGolden(t, acts, "time_proj.out0"), 1e-5)

	ch := cfg.BlockOutChannels[0]
	mlp := &TimestepMLP{Linear1: &Linear{Weight: tensor.Zeros(4*ch, ch), Bias: tensor.Zeros(4 * ch)},
		Linear2: &Linear{Weight: tensor.Zeros(4*ch, 4*ch), Bias: tensor.Zeros(4 * ch)}}
	defer ReleaseParams(mlp)
	if err := LoadFile(mlp, filepath.Join(dir, "weights.safetensors"), LoadOptions{Prefix: "time_embedding."}); err != nil {
		t.Fatal(err)
	}
	out := mlp.Forward(emb)
	defer out.Release()
	expectClose(t, "time_embedding", out, readGolden(t, acts, "time_embedding.out0"), 1e-5)
}

func openGolden(t *testing.T, path string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readGolden(t *testing.T, f *safetensors.File, name string) *tensor.Tensor {
	t.Helper()
	x, err := ReadTensor(f, name)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// expectClose fails when got differs from want by more than tol relative to max|want|;
// it releases want.
func expectClose(t *testing.T, name string, got, want *tensor.Tensor, tol float64) {
	t.Helper()
	defer want.Release()
	d := golden.Compare(got.Float32s(), want.Float32s())
	t.Logf("%s: %v", name, d)
	if d.MaxRel > tol {
		t.Fatalf("%s: %v exceeds %.0e", name, d, tol)
	}
}

// TestReadInts reads the DiT reference labels (I64) and refuses a float tensor.
func TestReadInts(t *testing.T) {
	io := openGolden(t, filepath.Join(golden.Dir(t), "dit", "io.safetensors"))
	info, _ := io.Info("y")
	ys, shape, err := ReadInts(io, "y")
	if err != nil || len(ys) != int(info.NumElements()) || len(shape) != 1 {
		t.Fatalf("ReadInts(y) = %v, %v, %v", ys, shape, err)
	}
	if _, _, err := ReadInts(io, "x"); err == nil {
		t.Fatal("ReadInts accepted a float tensor")
	}
}
