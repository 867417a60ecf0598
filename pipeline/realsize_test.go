package pipeline

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/internal/sdtest"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// TestRealSizeSD15 writes a single-file SD1.5 checkpoint with the real key set and
// shapes (../shared/golden/manifests/sd15_original_ldm.json) and random F16 weights,
// loads it and samples one step at 512×512, logging the time and peak memory of each.
// It needs about 10 GB and minutes, so it runs only with DIFFTUNE_SD15=1:
//
//	DIFFTUNE_SD15=1 go test ./pipeline -run TestRealSizeSD15 -v -timeout 30m
func TestRealSizeSD15(t *testing.T) {
	if os.Getenv("DIFFTUNE_SD15") != "1" {
		t.Skip("set DIFFTUNE_SD15=1 to run the real-size SD1.5 load and step")
	}
	raw, err := os.ReadFile(filepath.Join(golden.Dir(t), "manifests", "sd15_original_ldm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var shapes map[string][]int
	if err := json.Unmarshal(raw, &shapes); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	var recs []safetensors.Tensor
	for name, shape := range shapes {
		n := 1
		for _, d := range shape {
			n *= d
		}
		b := make([]byte, 2*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint16(b[2*i:], tensor.F32ToF16(float32(rng.NormFloat64()*0.02)))
		}
		recs = append(recs, safetensors.Tensor{Name: name, DType: safetensors.F16, Shape: shape, Data: b})
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "sd15.safetensors")
	if err := safetensors.Write(path, recs, nil); err != nil {
		t.Fatal(err)
	}
	recs = nil
	runtime.GC()
	tok := sdtest.Tokenizer(t, filepath.Join(dir, "tokenizer"))

	tensor.CPU.ResetPeak()
	t0 := time.Now()
	p, err := LoadWith(path, Options{Tokenizer: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	st := tensor.CPU.Stats()
	t.Logf("%s: load %.1f s, live %.2f GiB, peak %.2f GiB", p.Description, time.Since(t0).Seconds(), gib(st.Live), gib(st.Peak))
	tensor.CPU.ResetPeak()
	t0 = time.Now()
	imgs, err := p.Generate(context.Background(), Request{Prompt: "a photo of a cat", N: 1, Steps: 1, Sampler: "euler", CFG: 7, Seed: 1, Width: 512, Height: 512})
	if err != nil {
		t.Fatal(err)
	}
	st = tensor.CPU.Stats()
	t.Logf("one step at 512×512 with guidance (UNet batch 2) and the VAE decode: %.1f s, peak %.2f GiB", time.Since(t0).Seconds(), gib(st.Peak))
	if imgs[0].Bounds().Dx() != 512 {
		t.Fatalf("image %v", imgs[0].Bounds())
	}
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }
