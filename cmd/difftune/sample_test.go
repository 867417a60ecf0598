package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/sampler"
)

// TestSampleEndToEnd: the same seed twice gives byte-identical PNGs, another seed
// differs, the parameters chunk round-trips, and an adapter trained for tiny-unet
// applies while one for another architecture is refused by name.
func TestSampleEndToEnd(t *testing.T) {
	dir := t.TempDir()
	args := func(out string, seed string, extra ...string) []string {
		return append([]string{"sample", "--model", "tiny-unet", "--prompt", "a red circle", "--negative", "blue", "--steps", "3",
			"--n", "2", "--seed", seed, "--out", filepath.Join(dir, out)}, extra...)
	}
	for _, a := range [][]string{args("a.png", "5"), args("b.png", "5"), args("c.png", "6")} {
		if code, _, msg := run(a...); code != 0 {
			t.Fatalf("%v: exit %d: %s", a, code, msg)
		}
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read("a.png"), read("b.png")) || !bytes.Equal(read("a-1.png"), read("b-1.png")) {
		t.Fatal("the same seed gave different files")
	}
	if bytes.Equal(read("a-1.png"), read("c-1.png")) {
		t.Fatal("another seed gave the same image")
	}
	text, err := sampler.ReadPNGText(filepath.Join(dir, "a-2.png"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := sampler.ParseParameters(text["parameters"])
	if err != nil || p.Prompt != "a red circle" || p.Negative != "blue" || p.Seed != 5 || p.Steps != 3 || p.Model != "tiny-unet" || p.Width != 32 {
		t.Fatalf("parameters %+v, %v (chunk %q)", p, err, text["parameters"])
	}

	// An adapter for tiny-unet (random, nonzero) changes the image; one for tiny-dit is refused.
	lora := func(model string) string {
		pl, err := pipeline.Load(model)
		if err != nil {
			t.Fatal(err)
		}
		defer pl.Release()
		set, err := adapters.Inject(pl.Denoiser, adapters.Config{Kind: adapters.LoRA, Rank: 2, Form: adapters.Auto, Seed: 3}, adapters.Targets{"attn"})
		if err != nil {
			t.Fatal(err)
		}
		defer set.Remove()
		for _, tt := range set.Trainable() {
			for i := range tt.Data() {
				tt.Data()[i] = 0.05
			}
		}
		path := filepath.Join(dir, model+".safetensors")
		if err := adapters.Save(set, path, adapters.SaveOptions{Metadata: map[string]string{"modelspec.architecture": model}}); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if code, _, msg := run(args("d.png", "5", "--lora", lora("tiny-unet")+":0.8")...); code != 0 {
		t.Fatalf("with adapter: exit %d: %s", code, msg)
	}
	if bytes.Equal(read("a-1.png"), read("d-1.png")) {
		t.Fatal("the adapter changed nothing")
	}
	code, _, msg := run(args("e.png", "5", "--lora", lora("tiny-dit"))...)
	if code != 1 || !strings.Contains(msg, "tiny-dit.safetensors") || !strings.Contains(msg, "not in this model") {
		t.Fatalf("adapter for another model: exit %d: %s", code, msg)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sample", "--prompt", "x", "--size", "30x32"}, "nearest valid: 32"}, // emoji-base: multiples of its patch, 4
		{[]string{"sample", "--model", "tiny-unet", "--prompt", "x", "--size", "36x32"}, "nearest valid: 40"},
		{[]string{"sample", "--model", "tiny-unet", "--prompt", "x", "--sampler", "bogus"}, "euler_a"},
		{[]string{"sample", "--model", "sd99", "--prompt", "x"}, "tiny-unet"},
	} {
		if code, _, msg := run(c.args...); code != 2 || !strings.Contains(msg, c.want) {
			t.Errorf("%v: exit %d, %q (want 2 and %q)", c.args, code, msg, c.want)
		}
	}
}
