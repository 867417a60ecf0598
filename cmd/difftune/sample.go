package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/sampler"
	"github.com/difftune/difftune/textenc"
)

func newSampleCmd() *cobra.Command {
	var o struct {
		req           pipeline.Request
		load          pipeline.Options
		model         string
		loras         []string
		size          string
		out           string
		ignoreUnknown bool
		device        string
	}
	cmd := &cobra.Command{
		Use:   "sample --prompt TEXT",
		Short: "Generate images from a prompt, optionally with adapters",
		Long: `Generates images with a model and optional adapters (merged into the weights for the
run), writing PNGs with an A1111-style "parameters" text chunk and, for several images, a grid.
The same seed gives byte-identical images on every run and machine.`,
		Example: `  difftune sample --prompt "red apple" --n 4 --out apples.png      # the built-in emoji-base model
  difftune sample --model tiny-unet --prompt "a red circle" --n 4 --seed 1 --out ./samples
  difftune sample --model ./stable-diffusion-v1-5 --prompt "a lighthouse at dusk" --out lighthouse.png
  difftune sample --model v1-5-pruned-emaonly.safetensors --tokenizer ./stable-diffusion-v1-5/tokenizer --prompt "a cat"
  difftune sample --model tiny-dit --prompt "a red circle" --lora ./my-style/my-style.safetensors:0.8 --out circle.png`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := useDevice(cmd, o.device); err != nil {
				return err
			}
			if o.req.Prompt == "" {
				return usagef("--prompt is required")
			}
			var specs []pipeline.AdapterSpec
			for _, l := range o.loras {
				s, err := pipeline.ParseAdapterSpec(l)
				if err != nil {
					return usageError{err}
				}
				s.IgnoreUnknown = o.ignoreUnknown
				specs = append(specs, s)
			}
			if o.size != "" {
				if _, err := fmt.Sscanf(o.size, "%dx%d", &o.req.Width, &o.req.Height); err != nil {
					return usagef("--size %q: want WxH, e.g. 512x512", o.size)
				}
			}
			p, err := pipeline.LoadWith(o.model, o.load)
			if err != nil {
				return usageError{err}
			}
			defer p.Release()
			fmt.Fprintln(cmd.ErrOrStderr(), p.Description)
			if wt, ok := p.Tokenizer.(*textenc.WordTokenizer); ok {
				for _, pr := range []string{o.req.Prompt, o.req.Negative} {
					if u := wt.Unknown(pr); len(u) > 0 {
						fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s does not know the words %q (its vocabulary is the words of its training captions); each reads as the unknown-word token\n", p.Name, u)
					}
				}
			}
			if o.req.Width != 0 || o.req.Height != 0 {
				if err := p.CheckSize(o.req.Width, o.req.Height); err != nil {
					return usagef("--%v", err)
				}
			}
			if _, err := sampler.New(o.req.Sampler, p.Scheduler); err != nil {
				return usagef("--sampler: %v", err)
			}
			merged, err := p.Merge(specs)
			if err != nil {
				return err
			}
			if merged != nil {
				defer merged.Unmerge()
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			bar := newProgress(cmd, o.req.Steps, "sampling")
			o.req.Progress = func(done, total int) { bar.step(done, total) }
			imgs, err := p.Generate(ctx, o.req)
			bar.finish()
			if err != nil {
				return err
			}
			params := sampler.Parameters{Prompt: o.req.Prompt, Negative: o.req.Negative, Steps: o.req.Steps, Sampler: o.req.Sampler,
				CFG: o.req.CFG, Seed: o.req.Seed, Width: imgs[0].Bounds().Dx(), Height: imgs[0].Bounds().Dy(), Model: o.model, Adapters: o.loras}
			paths, err := pipeline.WriteImages(o.out, imgs, params)
			for _, path := range paths {
				fmt.Fprintln(cmd.OutOrStdout(), path)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.req.Prompt, "prompt", "", "what to draw")
	f.StringVar(&o.req.Negative, "negative", "", "negative prompt (the unconditional branch of guidance)")
	f.StringVar(&o.model, "model", pipeline.DefaultModel, "model: "+strings.Join(pipeline.PresetNames(), ", ")+", a diffusers folder, a single-file SD 1.x/2.x .safetensors, or a difftune model file")
	f.StringVar(&o.load.Tokenizer, "tokenizer", "", "folder with vocab.json and merges.txt (needed by single-file checkpoints: the model's diffusers tokenizer/ folder)")
	f.IntVar(&o.load.ClipSkip, "clip-skip", 0, "condition on the text encoder's k-th last layer (0 or 1: the last; 2: the penultimate)")
	f.StringVar(&o.load.PredictionType, "prediction", "", "override what the model predicts: epsilon or v_prediction (SD 2.x single files default to v_prediction)")
	f.StringArrayVar(&o.loras, "lora", nil, "adapter file FILE[:WEIGHT], repeatable")
	f.StringVar(&o.req.Sampler, "sampler", "euler_a", "sampler: ddim, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, heun, ...")
	f.IntVar(&o.req.Steps, "steps", 20, "sampling steps")
	f.Float64Var(&o.req.CFG, "cfg", 7, "classifier-free guidance scale (1: no guidance)")
	f.Uint64Var(&o.req.Seed, "seed", 1, "seed of the initial noise and every random draw")
	f.StringVar(&o.size, "size", "", "WxH in pixels (default: the model's size)")
	f.IntVar(&o.req.N, "n", 1, "number of images")
	f.StringVar(&o.out, "out", "samples", "output PNG file, or a folder")
	f.BoolVar(&o.ignoreUnknown, "ignore-unknown", false, "skip adapter-file keys that are not adapter tensors, with a warning, instead of refusing the file")
	addDeviceFlag(f, &o.device)
	return cmd
}

// progress shows a bar on a terminal and plain periodic lines otherwise.
type progress struct {
	bar   *progressbar.ProgressBar
	plain func(done, total int)
}

func newProgress(cmd *cobra.Command, total int, what string) *progress {
	w := cmd.ErrOrStderr()
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return &progress{bar: progressbar.NewOptions(total, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription(what),
				progressbar.OptionShowIts(), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true))}
		}
	}
	last := -1
	return &progress{plain: func(done, total int) {
		if pct := 100 * done / max(total, 1); pct/25 != last/25 || done == total {
			last = pct
			fmt.Fprintf(w, "%s: %d/%d\n", what, done, total)
		}
	}}
}

func (p *progress) step(done, total int) {
	if p.bar != nil {
		p.bar.ChangeMax(total)
		p.bar.Set(done)
		return
	}
	p.plain(done, total)
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
