package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/data"
	"github.com/difftune/difftune/internal/flagfile"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/tensor"
	"github.com/difftune/difftune/train"
)

// trainOptions are the flags of difftune train.
type trainOptions struct {
	config, model, adapter, form, targets string
	rank, convRank                        int
	alpha, convAlpha                      float64
	rsLoRA                                bool
	dropout, moduleDropout                float64
	resolution, minSide, maxSide, step    int
	noUpscale, flip, randomCrop           bool
	defaultCaption                        string
	shuffle                               bool
	keepTokens                            int
	captionDropout                        float64
	batch, steps, epochs                  int
	run                                   train.Config
	out, name                             string
	saveEvery, keepLast, sampleEvery      int
	samplePrompts, sampler, precision     string
	savedActivations                      string
	format                                string
	resume, dryRun                        bool
	load                                  pipeline.Options
	cacheDir                              string
	full                                  bool
	arch                                  fullOptions
	device                                string
}

func newTrainCmd() *cobra.Command {
	var o trainOptions
	cmd := &cobra.Command{
		Use:   "train DIR",
		Short: "Train an adapter on a folder of captioned images",
		Long: `Trains an adapter (LoRA, LoCon, LoHa, LoKr, DoRA, IA3) on the images in DIR (png, jpg, webp, bmp;
captions in name.txt or name.caption; folders named N_name repeat their images N times) and writes
<out>/<name>.safetensors in the kohya format ComfyUI, A1111/Forge and diffusers load, with step files,
a resumable state (Ctrl-C saves it; --resume continues exactly), previews, train.jsonl and loss.png.
Any flag may also be set in a TOML file given with --config (flags on the command line win).`,
		Example: `  difftune train ./images --steps 300 --out ./my-style      # an adapter on the built-in emoji-base
  difftune train ./images --model tiny-dit --steps 200 --out ./my-style
  difftune train ./images --model tiny-unet --adapter loha --rank 8 --epochs 10 --sample-every 50 --sample-prompts prompts.txt
  difftune train ./images --model tiny-unet --dry-run
  difftune train ./images --config train.toml --resume`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.config != "" {
				if err := flagfile.Apply(o.config, cmd.Flags()); err != nil {
					return usageError{err}
				}
			}
			if err := useDevice(cmd, o.device); err != nil {
				return err
			}
			return runTrain(cmd, args[0], &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "TOML file with any of these flags (command-line flags win)")
	f.StringVar(&o.model, "model", "", "model: "+strings.Join(pipeline.PresetNames(), ", ")+", a diffusers folder, a single-file SD 1.x/2.x .safetensors (with --tokenizer), or a difftune model file (default "+pipeline.DefaultModel+"; with --full: a new model)")
	f.StringVar(&o.adapter, "adapter", "lora", "adapter: lora, locon, loha, lokr, dora, ia3")
	f.IntVar(&o.rank, "rank", 16, "adapter rank")
	f.Float64Var(&o.alpha, "alpha", 0, "adapter alpha (scale alpha/rank; 0: alpha = rank)")
	f.BoolVar(&o.rsLoRA, "rs-lora", false, "scale by alpha/sqrt(rank) (rank-stabilised LoRA)")
	f.IntVar(&o.convRank, "conv-rank", 0, "rank of convolution adapters (LoCon; 0: --rank)")
	f.Float64Var(&o.convAlpha, "conv-alpha", 0, "alpha of convolution adapters (0: --alpha)")
	f.StringVar(&o.form, "form", "auto", "adapter form: auto, weight or activation")
	f.StringVar(&o.targets, "targets", "attn", "modules to adapt: attn, attn-mlp, full, or glob patterns (comma-separated; !pattern excludes)")
	f.Float64Var(&o.dropout, "dropout", 0, "adapter input dropout")
	f.Float64Var(&o.moduleDropout, "module-dropout", 0, "probability to skip an adapter for a step")
	f.IntVar(&o.resolution, "resolution", 0, "bucket resolution: buckets have at most resolution² pixels (0: the model's size)")
	f.IntVar(&o.minSide, "min-bucket", 0, "smallest bucket side (0: resolution/2)")
	f.IntVar(&o.maxSide, "max-bucket", 0, "largest bucket side (0: 2·resolution)")
	f.IntVar(&o.step, "bucket-step", 0, "bucket side step (0: 64, or the model's multiple for small models)")
	f.BoolVar(&o.noUpscale, "no-upscale", false, "never enlarge an image: small images get smaller buckets")
	f.BoolVar(&o.flip, "flip", false, "horizontal flip augmentation")
	f.BoolVar(&o.randomCrop, "random-crop", false, "random instead of center crops")
	f.StringVar(&o.defaultCaption, "default-caption", "", "caption of images without a caption file or N_name folder")
	f.BoolVar(&o.shuffle, "caption-shuffle", false, "shuffle comma-separated caption tags")
	f.IntVar(&o.keepTokens, "keep-tokens", 0, "leading tags that --caption-shuffle keeps in place")
	f.Float64Var(&o.captionDropout, "caption-dropout", 0, "probability of training a sample with the empty caption")
	f.IntVar(&o.batch, "batch", 1, "batch size")
	f.IntVar(&o.steps, "steps", 0, "optimizer steps (or --epochs)")
	f.IntVar(&o.epochs, "epochs", 0, "epochs over the dataset (or --steps)")
	f.Float64Var(&o.run.LR, "lr", 1e-4, "peak learning rate")
	f.StringVar(&o.run.LRSchedule, "lr-schedule", "constant", "constant, constant_with_warmup, cosine, linear, cosine_with_restarts")
	f.IntVar(&o.run.Warmup, "warmup", 0, "learning-rate warm-up steps")
	f.IntVar(&o.run.Cycles, "cycles", 1, "cycles of cosine_with_restarts")
	f.Float64Var(&o.run.WeightDecay, "weight-decay", 0.01, "AdamW weight decay")
	f.IntVar(&o.run.GradAccum, "grad-accum", 1, "batches per optimizer step")
	f.Float64Var(&o.run.MaxGradNorm, "max-grad-norm", 1, "clip the gradient norm (0: off)")
	f.Float64Var(&o.run.EMA, "ema", 0, "EMA decay of the adapter weights (0: off; e.g. 0.999)")
	f.Float64Var(&o.run.NoiseOffset, "noise-offset", 0, "noise offset (e.g. 0.05)")
	f.Float64Var(&o.run.MinSNRGamma, "min-snr-gamma", 0, "min-SNR-gamma loss weighting (0: off; e.g. 5)")
	f.StringVar(&o.run.Timesteps, "timesteps", "uniform", "timestep sampling: uniform, logit_normal (flow models)")
	f.Float64Var(&o.run.Shift, "shift", 0, "timestep shift for logit_normal sampling")
	f.Uint64Var(&o.run.Seed, "seed", 1, "seed of everything random in the run")
	f.StringVar(&o.out, "out", "output", "output folder")
	f.StringVar(&o.name, "name", "", "output name (default: the dataset folder's name)")
	f.IntVar(&o.saveEvery, "save-every", 0, "save an adapter and the state every N steps")
	f.IntVar(&o.keepLast, "keep-last", 0, "keep only the last K step files (0: all)")
	f.IntVar(&o.sampleEvery, "sample-every", 0, "render the sample prompts every N steps")
	f.StringVar(&o.samplePrompts, "sample-prompts", "", "file of preview prompts, kohya syntax: prompt --n negative --w 32 --h 32 --d seed --l cfg --s steps")
	f.StringVar(&o.sampler, "sampler", "euler_a", "sampler of the previews")
	f.StringVar(&o.precision, "save-precision", "fp16", "adapter file dtype: fp32, fp16, bf16")
	f.StringVar(&o.savedActivations, "saved-activations", "fp32", "how activations kept for backward are stored: fp32, or bf16 (about half the activation memory, as mixed-precision training keeps them; the computation stays fp32)")
	f.StringVar(&o.format, "save-format", "kohya", "adapter file naming: kohya or peft")
	f.BoolVar(&o.resume, "resume", false, "continue the run saved in --out")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the dataset summary, buckets, adapted modules and memory plan, and exit")
	f.StringVar(&o.cacheDir, "cache", "", "cache folder for VAE latents and text-encoder outputs (default <out>/cache; \"none\" disables it)")
	f.StringVar(&o.load.Tokenizer, "tokenizer", "", "folder with vocab.json and merges.txt (needed for single-file checkpoints)")
	f.IntVar(&o.load.ClipSkip, "clip-skip", 0, "text encoder layer: 0 or 1 the last, 2 the penultimate")
	f.StringVar(&o.load.PredictionType, "prediction", "", "override the model's prediction type: epsilon, v_prediction")
	f.BoolVar(&o.full, "full", false, "train a whole difftune model (denoiser and text encoder) instead of an adapter: from scratch with the architecture flags below, or further from the difftune model file --model names")
	o.arch.flags(f)
	addDeviceFlag(f, &o.device)
	return cmd
}

func runTrain(cmd *cobra.Command, dir string, o *trainOptions) error {
	if o.model == "" && !o.full {
		o.model = pipeline.DefaultModel
	}
	info := pipeline.Info{Size: 32, Multiple: o.arch.patch}
	if o.full && o.model == "" {
		if o.resolution > 0 {
			info.Size = o.resolution
		}
	} else {
		var err error
		if info, err = pipeline.Describe(o.model); err != nil {
			return usageError{err}
		}
	}
	if (o.steps > 0) == (o.epochs > 0) && !o.dryRun {
		return usagef("give exactly one of --steps and --epochs")
	}
	dtype := map[string]tensor.DType{"fp32": tensor.F32, "fp16": tensor.F16, "bf16": tensor.BF16}
	if _, ok := dtype[o.precision]; !ok {
		return usagef("--save-precision %q: want fp32, fp16 or bf16", o.precision)
	}
	if o.savedActivations != "fp32" && o.savedActivations != "bf16" {
		return usagef("--saved-activations %q: want fp32 or bf16", o.savedActivations)
	}
	defer tensor.SetSavedBF16(tensor.SetSavedBF16(o.savedActivations == "bf16"))
	targets, err := adapters.ParseTargets(o.targets)
	if err != nil {
		return usageError{err}
	}
	ac := adapters.Config{Kind: adapters.Kind(o.adapter), Rank: o.rank, Alpha: o.alpha, RSLoRA: o.rsLoRA, ConvRank: o.convRank,
		ConvAlpha: o.convAlpha, Form: adapters.Form(o.form), Dropout: o.dropout, ModuleDropout: o.moduleDropout, LoKrFactor: -1, Seed: o.run.Seed}
	if err := ac.Validate(); err != nil {
		return usageError{err}
	}
	if err := train.CheckSchedule(o.run.LRSchedule); err != nil {
		return usageError{err}
	}
	bo := data.BucketOptions{Resolution: o.resolution, MinSide: o.minSide, MaxSide: o.maxSide, Step: o.step, NoUpscale: o.noUpscale}
	if bo.Resolution == 0 {
		bo.Resolution = info.Size
	}
	if bo.Step == 0 && bo.Resolution < 256 {
		bo.Step = info.Multiple
	}
	if info.Fixed {
		bo.MinSide, bo.MaxSide = info.Size, info.Size
	}
	errw := cmd.ErrOrStderr()
	ds, err := data.Scan(dir, data.Options{Buckets: bo, DefaultCaption: o.defaultCaption})
	if err != nil {
		return err
	}
	for _, w := range ds.Warnings {
		fmt.Fprintf(errw, "warning: %v\n", w)
	}
	sum := ds.Summary()
	loader, err := data.NewLoader(ds, data.LoaderOptions{BatchSize: o.batch, Seed: o.run.Seed, RandomCrop: o.randomCrop, Flip: o.flip,
		Caption: data.CaptionOptions{Shuffle: o.shuffle, KeepTokens: o.keepTokens, Dropout: o.captionDropout}})
	if err != nil {
		return usageError{err}
	}
	out := cmd.OutOrStdout()
	if o.name == "" {
		o.name = filepath.Base(filepath.Clean(dir))
	}
	var fullModel *pipeline.Pipeline
	if o.full {
		if fullModel, err = fullPipeline(o.model, o.out, o.resume, !o.dryRun, &o.arch, o.name, info.Size, ds, o.run.Seed); err != nil {
			return err
		}
		defer fullModel.Release()
		s := fullModel.Spec
		if s == nil {
			return usagef("--full --model %s: not a difftune model file; --full trains difftune's own models (leave --model out to start one)", o.model)
		}
		nd, _ := nn.CountParams(fullModel.Denoiser)
		nt, _ := nn.CountParams(fullModel.Text)
		fmt.Fprintf(errw, "full training: %s (%d denoiser and %d text-encoder parameters, %d words)\n", fullModel.Description, nd, nt, len(s.Vocab))
		if o.dryRun {
			fmt.Fprintln(out, sum.Text(o.batch))
			return nil
		}
	}
	if o.dryRun {
		fmt.Fprintln(out, sum.Text(o.batch))
		b := loader.NextSamples()
		return train.PlanMemory(out, o.model, o.load, ac, targets, len(b.Samples), b.Bucket.H, b.Bucket.W)
	}
	switch {
	case o.full:
		o.cacheDir = "" // the text encoder trains: nothing to cache
	case o.cacheDir == "":
		o.cacheDir = filepath.Join(o.out, "cache")
	case o.cacheDir == "none":
		o.cacheDir = ""
	}
	steps := o.steps
	if o.epochs > 0 {
		steps = max(1, o.epochs*loader.BatchesPerEpoch()/max(1, o.run.GradAccum))
	}
	o.run.Steps = steps
	var prompts []pipeline.PromptLine
	if o.samplePrompts != "" {
		raw, err := os.ReadFile(o.samplePrompts)
		if err != nil {
			return usagef("--sample-prompts: %v", err)
		}
		prompts, err = pipeline.ParsePromptFile(string(raw), pipeline.PromptLine{Width: info.Size, Height: info.Size, Seed: 1, CFG: 5, Steps: 20})
		if err != nil {
			return usagef("--sample-prompts %s: %v", o.samplePrompts, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bar := newProgress(cmd, steps, "training")
	res, err := train.Run(ctx, &train.LoaderSource{L: loader}, train.RunOptions{
		Model: o.model, Pipeline: fullModel, Full: o.full, Load: o.load, CacheDir: o.cacheDir, Adapter: ac, Targets: targets, Train: o.run, Out: o.out, Name: o.name,
		SaveEvery: o.saveEvery, KeepLast: o.keepLast, SampleEvery: o.sampleEvery, SamplePrompts: prompts, Sampler: o.sampler,
		SaveDType: dtype[o.precision], Format: adapters.Format(o.format), Resume: o.resume, Log: errw,
		Progress: func(step, total int, loss, lr float64) { bar.step(step, total) },
		Metadata: map[string]string{"ss_num_train_images": fmt.Sprint(sum.Images), "ss_resolution": fmt.Sprint(bo.Resolution),
			"ss_seed": fmt.Sprint(o.run.Seed), "ss_learning_rate": fmt.Sprint(o.run.LR), "ss_dataset_dirs": dir},
	})
	bar.finish()
	if errors.Is(err, train.ErrInterrupted) {
		return fmt.Errorf("%w (state in %s)", err, filepath.Join(o.out, "state"))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "trained %d steps, loss %.4f: %s\n", res.Steps, res.FinalLoss, res.Adapter)
	return nil
}
