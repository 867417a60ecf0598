package sampler

import (
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/difftune/difftune/tensor"
)

func TestParametersRoundTrip(t *testing.T) {
	p := Parameters{Prompt: "a red circle, my-style\nsecond line", Negative: "blurry, text", Steps: 20, Sampler: "euler_a",
		CFG: 7.5, Seed: 42, Width: 64, Height: 32, Model: "tiny-unet", Adapters: []string{"a.safetensors:0.8", "b.safetensors:1"}}
	got, err := ParseParameters(p.String())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("round trip:\n%+v\n%+v\n%s", got, p, p.String())
	}
	if _, err := ParseParameters("just a prompt"); err == nil {
		t.Fatal("text without a Steps line was accepted")
	}
}

// TestWritePNGText writes a grid with a parameters chunk and reads both back.
func TestWritePNGText(t *testing.T) {
	x := tensor.Zeros(3, 3, 4, 5)
	for i := range x.Data() {
		x.Data()[i] = float32(i%7)/3 - 1
	}
	defer x.Release()
	imgs, err := ToImages(x)
	if err != nil {
		t.Fatal(err)
	}
	g := Grid(imgs)
	if g.Bounds().Dx() != 10 || g.Bounds().Dy() != 8 {
		t.Fatalf("grid of 3 images 5x4: %v", g.Bounds())
	}
	path := filepath.Join(t.TempDir(), "out", "grid.png")
	want := map[string]string{"parameters": "a cat\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 5x4, Model: m", "Software": "difftune"}
	if err := WritePNG(path, g, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPNGText(path)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("text chunks %v, %v", got, err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the PNG with text chunks does not decode: %v", err)
	}
	if img.Bounds() != g.Bounds() {
		t.Fatalf("decoded %v", img.Bounds())
	}
	// Pixel (0,0) of image 0: x = 0/3 - 1 = -1 -> 0.
	if r, _, _, _ := img.At(0, 0).RGBA(); r != 0 {
		t.Fatalf("pixel value %d", r)
	}
}
