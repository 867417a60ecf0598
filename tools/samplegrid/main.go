// Command samplegrid renders the README's sample grids: one row per prompt, n seeds per
// row, each tile scaled up by --scale with nearest-neighbour pixels; with --lora, each
// row shows the base model's samples, a gap, then the same seeds with the adapter.
//
//	go run ./tools/samplegrid --prompts "red apple;dog face" --n 4 --out grid.png [--model M] [--lora file.safetensors]
package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"os"
	"strings"

	"github.com/difftune/difftune/internal/atomicfile"
	"github.com/difftune/difftune/pipeline"
)

func main() {
	model := flag.String("model", pipeline.DefaultModel, "model")
	lora := flag.String("lora", "", "adapter file (file.safetensors[:weight]) to show beside the base samples")
	prompts := flag.String("prompts", "", "prompts separated by ;")
	n := flag.Int("n", 4, "samples per prompt")
	seed := flag.Uint64("seed", 1, "seed of the first sample")
	steps := flag.Int("steps", 30, "sampler steps")
	cfg := flag.Float64("cfg", 4, "guidance scale")
	smp := flag.String("sampler", "dpmpp_2m", "sampler")
	scale := flag.Int("scale", 3, "pixel scale")
	out := flag.String("out", "grid.png", "output PNG")
	flag.Parse()
	if err := run(*model, *lora, strings.Split(*prompts, ";"), *n, *seed, *steps, *cfg, *smp, *scale, *out); err != nil {
		fmt.Fprintln(os.Stderr, "samplegrid:", err)
		os.Exit(1)
	}
}

func run(model, lora string, prompts []string, n int, seed uint64, steps int, cfg float64, smp string, scale int, out string) error {
	p, err := pipeline.Load(model)
	if err != nil {
		return err
	}
	defer p.Release()
	gen := func() ([][]*image.RGBA, error) {
		var rows [][]*image.RGBA
		for _, pr := range prompts {
			imgs, err := p.Generate(context.Background(), pipeline.Request{Prompt: strings.TrimSpace(pr), N: n, Steps: steps, Sampler: smp, CFG: cfg, Seed: seed})
			if err != nil {
				return nil, err
			}
			rows = append(rows, imgs)
		}
		return rows, nil
	}
	groups := make([][][]*image.RGBA, 0, 2)
	base, err := gen()
	if err != nil {
		return err
	}
	groups = append(groups, base)
	if lora != "" {
		spec, err := pipeline.ParseAdapterSpec(lora)
		if err != nil {
			return err
		}
		m, err := p.Merge([]pipeline.AdapterSpec{spec})
		if err != nil {
			return err
		}
		tuned, err := gen()
		m.Unmerge()
		if err != nil {
			return err
		}
		groups = append(groups, tuned)
	}
	side, gap := p.Size*scale, 2*scale
	w := len(groups)*n*(side+gap) + (len(groups)-1)*4*gap
	h := len(prompts) * (side + gap)
	grid := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(grid, grid.Bounds(), &image.Uniform{color.RGBA{128, 128, 128, 255}}, image.Point{}, draw.Src)
	for g, rows := range groups {
		x0 := g * (n*(side+gap) + 4*gap)
		for r, imgs := range rows {
			for c, img := range imgs {
				ox, oy := x0+c*(side+gap), r*(side+gap)
				for y := range side {
					for x := range side {
						grid.Set(ox+x, oy+y, img.At(x/scale, y/scale))
					}
				}
			}
		}
	}
	return atomicfile.WriteFile(out, func(w io.Writer) error { return png.Encode(w, grid) })
}
