package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeNightStyle makes a small style dataset: coloured discs on a black background,
// captioned with words the emoji-base vocabulary knows. emoji-base draws on white, so
// the background's brightness measures how far samples moved toward the style.
func writeNightStyle(t *testing.T, dir string) {
	t.Helper()
	colors := []struct {
		name string
		rgb  color.RGBA
	}{{"red", color.RGBA{220, 40, 40, 255}}, {"blue", color.RGBA{40, 80, 230, 255}}, {"green", color.RGBA{40, 190, 60, 255}},
		{"yellow", color.RGBA{250, 210, 40, 255}}, {"orange", color.RGBA{250, 140, 30, 255}}, {"purple", color.RGBA{150, 60, 200, 255}}}
	for i, c := range colors {
		for k := range 2 {
			img := image.NewRGBA(image.Rect(0, 0, 32, 32))
			r := 10 + 2*k
			for y := range 32 {
				for x := range 32 {
					px := color.RGBA{8, 8, 12, 255}
					if (x-16)*(x-16)+(y-16)*(y-16) < r*r {
						px = c.rgb
					}
					img.SetRGBA(x, y, px)
				}
			}
			stem := filepath.Join(dir, fmt.Sprintf("%d%d", i, k))
			f, err := os.Create(stem + ".png")
			if err != nil {
				t.Fatal(err)
			}
			png.Encode(f, img)
			f.Close()
			os.WriteFile(stem+".txt", []byte("large "+c.name+" circle, geometric"), 0o644)
		}
	}
}

// borderBrightness returns the mean of R, G and B over the 4-pixel frame of every
// tile of a sample grid (or single image) of side×side tiles.
func borderBrightness(t *testing.T, path string, side int) float64 {
	t.Helper()
	img := readPNG(t, path)
	var s, n float64
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			tx, ty := (x-b.Min.X)%side, (y-b.Min.Y)%side
			if tx >= 4 && tx < side-4 && ty >= 4 && ty < side-4 {
				continue
			}
			r, g, bl, _ := img.At(x, y).RGBA()
			s += float64(r>>8+g>>8+bl>>8) / 3
			n++
		}
	}
	return s / n
}

// TestEmojiBaseAdapter trains a LoRA on the built-in model (no --model) for a few
// dozen seconds on the generated night style, and checks that samples move toward it:
// the background of "large red circle" samples darkens. Sampling without --model uses
// emoji-base too.
func TestEmojiBaseAdapter(t *testing.T) {
	dir := t.TempDir()
	ds := filepath.Join(dir, "night")
	os.Mkdir(ds, 0o755)
	writeNightStyle(t, ds)
	out := filepath.Join(dir, "out")
	code, stdout, msg := run("train", ds, "--steps", "120", "--batch", "4", "--lr", "1e-3", "--targets", "attn-mlp", "--rank", "8", "--out", out)
	if code != 0 {
		t.Fatalf("train: exit %d: %s", code, msg)
	}
	if !strings.Contains(stdout, "emoji-base") || !strings.Contains(stdout, "night.safetensors") {
		t.Fatalf("train did not use emoji-base or write night.safetensors: %s", stdout)
	}
	gen := func(name string, lora bool) float64 {
		path := filepath.Join(dir, name)
		args := []string{"sample", "--prompt", "large red circle", "--n", "4", "--steps", "20", "--seed", "5", "--cfg", "4", "--out", path}
		if lora {
			args = append(args, "--lora", filepath.Join(out, "night.safetensors"))
		}
		if code, _, msg := run(args...); code != 0 {
			t.Fatalf("sample: %s", msg)
		}
		return borderBrightness(t, path, 32)
	}
	base, tuned := gen("base.png", false), gen("night.png", true)
	t.Logf("mean background brightness of 'large red circle' samples: base %.1f, with the night adapter %.1f (12 style images, 120 steps)", base, tuned)
	if base < 180 || tuned > base-80 {
		t.Fatalf("samples did not move toward the dark style: background %.1f → %.1f (want a white base, darker by 80 levels)", base, tuned)
	}
}

// TestTrainFullResumeIsExact trains a small difftune model from scratch (train --full)
// for 4 steps in one go, and for 2 steps then 2 more with --resume: the two model files
// are byte-identical. The file loads by path for sampling, and resuming with other
// architecture flags keeps the recorded spec.
func TestTrainFullResumeIsExact(t *testing.T) {
	dir := t.TempDir()
	ds := filepath.Join(dir, "night")
	os.Mkdir(ds, 0o755)
	writeNightStyle(t, ds)
	arch := []string{"--full", "--width", "64", "--head-dim", "32", "--depth", "2", "--patch", "4", "--text-width", "32", "--text-layers", "1",
		"--batch", "3", "--lr", "1e-3", "--ema", "0.99", "--caption-dropout", "0.2", "--save-precision", "fp32", "--name", "m"}
	train := func(out string, steps string, extra ...string) {
		t.Helper()
		args := append([]string{"train", ds, "--out", out, "--steps", steps}, arch...)
		if code, _, msg := run(append(args, extra...)...); code != 0 {
			t.Fatalf("train %v: exit %d: %s", extra, code, msg)
		}
	}
	train(filepath.Join(dir, "once"), "4")
	train(filepath.Join(dir, "twice"), "2")
	train(filepath.Join(dir, "twice"), "4", "--resume", "--width", "128")
	a, _ := os.ReadFile(filepath.Join(dir, "once", "m.safetensors"))
	b, _ := os.ReadFile(filepath.Join(dir, "twice", "m.safetensors"))
	if len(a) == 0 || string(a) != string(b) {
		t.Fatalf("resumed model differs from the uninterrupted one (%d and %d bytes)", len(a), len(b))
	}
	code, stdout, msg := run("sample", "--model", filepath.Join(dir, "once", "m.safetensors"), "--prompt", "large red circle, cat", "--steps", "3",
		"--out", filepath.Join(dir, "s.png"))
	if code != 0 || !strings.Contains(stdout, `does not know the words ["cat"]`) {
		t.Fatalf("sample with the trained file: exit %d: %s\n%s", code, msg, stdout)
	}
	if code, _, msg := run("train", ds, "--out", filepath.Join(dir, "once"), "--steps", "5", "--full", "--name", "m"); code == 0 || !strings.Contains(msg, "--resume") {
		t.Fatalf("a new run over a previous state: exit %d: %s", code, msg)
	}
}
