package pipeline

import (
	"context"
	"fmt"
	"image"
	"strconv"
	"strings"

	"github.com/difftune/difftune/sampler"
)

// PromptLine is one preview prompt in kohya's sample-prompt syntax:
//
//	a red circle, my-style --n blurry --w 512 --h 512 --d 42 --l 7 --s 20
//
// --n negative prompt, --w/--h size, --d seed, --l guidance scale, --s steps; options
// not given take the defaults passed to ParsePromptLine.
type PromptLine struct {
	Prompt, Negative string
	Width, Height    int
	Seed             uint64
	CFG              float64
	Steps            int
}

// ParsePromptLine reads one line. It fails naming the option for a bad value.
func ParsePromptLine(line string, def PromptLine) (PromptLine, error) {
	p := def
	parts := strings.Split(" "+line, " --")
	p.Prompt = strings.TrimSpace(parts[0])
	for _, opt := range parts[1:] {
		key, val, _ := strings.Cut(opt, " ")
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "n":
			p.Negative = val
		case "w":
			p.Width, err = strconv.Atoi(val)
		case "h":
			p.Height, err = strconv.Atoi(val)
		case "d":
			p.Seed, err = strconv.ParseUint(val, 10, 64)
		case "l":
			p.CFG, err = strconv.ParseFloat(val, 64)
		case "s":
			p.Steps, err = strconv.Atoi(val)
		default:
			return p, fmt.Errorf("prompt line %q: unknown option --%s (want --n, --w, --h, --d, --l, --s)", line, key)
		}
		if err != nil {
			return p, fmt.Errorf("prompt line %q: option --%s %q: %v", line, key, val, err)
		}
	}
	if p.Prompt == "" {
		return p, fmt.Errorf("prompt line %q has no prompt before its options", line)
	}
	return p, nil
}

// ParsePromptFile reads prompt lines (blank lines and lines starting with # skipped).
func ParsePromptFile(text string, def PromptLine) ([]PromptLine, error) {
	var out []PromptLine
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		p, err := ParsePromptLine(l, def)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Preview renders one image per prompt line with the pipeline as it is (adapters
// attached or merged) and tiles them into one grid, writing it to path with the first
// line's parameters. The sampler runs without recording gradients.
func (p *Pipeline) Preview(ctx context.Context, path, samplerName, model string, lines []PromptLine) (*image.RGBA, error) {
	var imgs []*image.RGBA
	for _, l := range lines {
		out, err := p.Generate(ctx, Request{Prompt: l.Prompt, Negative: l.Negative, N: 1, Steps: l.Steps, Sampler: samplerName,
			CFG: l.CFG, Seed: l.Seed, Width: l.Width, Height: l.Height})
		if err != nil {
			return nil, fmt.Errorf("preview %q: %w", l.Prompt, err)
		}
		imgs = append(imgs, out...)
	}
	g := sampler.Grid(imgs)
	if path != "" && len(lines) > 0 {
		l := lines[0]
		params := sampler.Parameters{Prompt: l.Prompt, Negative: l.Negative, Steps: l.Steps, Sampler: samplerName, CFG: l.CFG,
			Seed: l.Seed, Width: imgs[0].Bounds().Dx(), Height: imgs[0].Bounds().Dy(), Model: model}
		if err := sampler.WritePNG(path, g, map[string]string{"parameters": params.String(), "Software": "difftune"}); err != nil {
			return nil, err
		}
	}
	return g, nil
}
