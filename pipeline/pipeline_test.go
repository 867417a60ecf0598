package pipeline

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// TestGenerateDeterministic: every tiny pipeline gives identical images for a seed,
// different ones for another seed, with and without guidance.
func TestGenerateDeterministic(t *testing.T) {
	for _, name := range PresetNames() {
		t.Run(name, func(t *testing.T) {
			p, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Release()
			req := Request{Prompt: "a red circle", Negative: "blue", N: 2, Steps: 3, Sampler: "euler_a", CFG: 4, Seed: 7}
			a, err := p.Generate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := p.Generate(context.Background(), req)
			req.Seed = 8
			c, _ := p.Generate(context.Background(), req)
			req.CFG = 1
			d, err := p.Generate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if len(a) != 2 || a[0].Bounds().Dx() != 32 || len(d) != 2 {
				t.Fatalf("images %d %v", len(a), a[0].Bounds())
			}
			if !bytes.Equal(a[0].Pix, b[0].Pix) || !bytes.Equal(a[1].Pix, b[1].Pix) {
				t.Fatal("the same seed gave different images")
			}
			if bytes.Equal(a[0].Pix, c[0].Pix) {
				t.Fatal("another seed gave the same image")
			}
		})
	}
}

func TestLoadAndSizeErrors(t *testing.T) {
	if _, err := Load("sdxl"); err == nil || !strings.Contains(err.Error(), "tiny-unet") {
		t.Fatalf("unknown model: %v", err)
	}
	p, err := Load("tiny-unet")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	if err := p.CheckSize(36, 32); err == nil || !strings.Contains(err.Error(), "nearest valid: 40") {
		t.Fatalf("size 36: %v", err)
	}
	if _, err := p.Generate(context.Background(), Request{Prompt: "x", N: 1, Steps: 2, Sampler: "nope", CFG: 1}); err == nil || !strings.Contains(err.Error(), "euler") {
		t.Fatalf("unknown sampler: %v", err)
	}
}

func TestPromptLines(t *testing.T) {
	def := PromptLine{Width: 32, Height: 32, Seed: 1, CFG: 7, Steps: 20}
	got, err := ParsePromptLine("a red circle, my-style --n blurry, text --w 64 --h 48 --d 42 --l 5.5 --s 12", def)
	want := PromptLine{Prompt: "a red circle, my-style", Negative: "blurry, text", Width: 64, Height: 48, Seed: 42, CFG: 5.5, Steps: 12}
	if err != nil || got != want {
		t.Fatalf("%+v %v", got, err)
	}
	lines, err := ParsePromptFile("# previews\n\na cat\na dog --s 3\n", def)
	if err != nil || len(lines) != 2 || lines[0].Steps != 20 || lines[1].Steps != 3 {
		t.Fatalf("%+v %v", lines, err)
	}
	for _, bad := range []string{"a cat --x 3", "a cat --w wide", "--s 3"} {
		if _, err := ParsePromptLine(bad, def); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
