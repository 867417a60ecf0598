package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/membench"
	"github.com/difftune/difftune/tensor"
	"github.com/difftune/difftune/train"
)

func newBenchCmd() *cobra.Command {
	var device string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure kernels and training steps on this machine",
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return useDevice(cmd, device)
		},
	}
	addDeviceFlag(cmd.PersistentFlags(), &device)
	cmd.AddCommand(newBenchGemmCmd(), newBenchStepCmd(), newBenchMemoryCmd(), newBenchFormsCmd())
	requireSubcommand(cmd)
	return cmd
}

func newBenchGemmCmd() *cobra.Command {
	var o struct {
		threads int
		json    bool
		minTime float64
		bf16    bool
	}
	cmd := &cobra.Command{
		Use:   "gemm [MxKxN ...]",
		Short: "float32 GEMM throughput (C[M,N] = A[M,K]·B[K,N]) in GFLOP/s",
		Example: `  difftune bench gemm
  difftune bench gemm --threads 1 --json 1024x1024x1024 4096x1152x1152`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"1024x1024x1024", "4096x1152x1152", "512x4096x512", "256x384x1536", "4096x320x320"}
			}
			if o.threads < 0 {
				return usagef("--threads %d: want 0 (all cores) or more", o.threads)
			}
			shapes := make([][3]int, len(args))
			for i, a := range args {
				m, k, n, err := parseShape(a)
				if err != nil {
					return err
				}
				shapes[i] = [3]int{m, k, n}
			}
			tensor.SetThreads(o.threads)
			defer tensor.SetThreads(0)
			out := cmd.OutOrStdout()
			kernel, measure := tensor.GemmKernel(), tensor.MeasureGemm
			if o.bf16 {
				kernel, measure = tensor.GemmBF16Kernel(), tensor.MeasureGemmBF16
			}
			if !o.json {
				fmt.Fprintf(out, "kernel %s, %d threads\n", kernel, tensor.Threads())
			}
			for _, s := range shapes {
				m, k, n := s[0], s[1], s[2]
				gflops := measure(m, k, n, o.minTime)
				if o.json {
					b, _ := json.Marshal(map[string]any{"m": m, "k": k, "n": n, "threads": tensor.Threads(), "gflops": round2(gflops), "kernel": kernel, "bf16": o.bf16})
					fmt.Fprintln(out, string(b))
				} else {
					fmt.Fprintf(out, "%6d x %6d x %6d  %8.1f GFLOP/s\n", m, k, n, gflops)
				}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&o.threads, "threads", 0, "worker threads (0: all cores)")
	cmd.Flags().BoolVar(&o.json, "json", false, `one JSON object per shape: {"m","k","n","threads","gflops"}`)
	cmd.Flags().Float64Var(&o.minTime, "min-time", 0.5, "seconds to measure each shape")
	cmd.Flags().BoolVar(&o.bf16, "bf16", false, "time the opt-in GemmBF16 (operands rounded to bfloat16, float32 accumulation) instead")
	return cmd
}

func round2(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }

// parseShape reads "MxKxN".
func parseShape(s string) (m, k, n int, err error) {
	parts := strings.Split(strings.ToLower(s), "x")
	if len(parts) != 3 {
		return 0, 0, 0, usagef("shape %q: want MxKxN, e.g. 1024x1024x1024", s)
	}
	var v [3]int
	for i, p := range parts {
		v[i], err = strconv.Atoi(p)
		if err != nil || v[i] <= 0 {
			return 0, 0, 0, usagef("shape %q: %q is not a positive integer (want MxKxN)", s, p)
		}
	}
	return v[0], v[1], v[2], nil
}

func newBenchStepCmd() *cobra.Command {
	var o struct {
		c       train.BenchConfig
		form    string
		threads int
		json    bool
	}
	cmd := &cobra.Command{
		Use:   "step",
		Short: "Time one DiT training step (forward, backward, AdamW) and its peak memory",
		Long: `Times DiT training steps as ../shared/ref/dit_step.py does (DDPM noising, forward with
label dropout, MSE on ε, backward, AdamW), reporting medians of the forward, backward and
optimizer parts, peak live tensor bytes and peak RSS.`,
		Example: `  difftune bench step --model dit-s-2 --adapter lora --rank 8 --form auto --batch 4 --latent 32 --json
  difftune bench step --model dit-s-2 --adapter full --steps 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.threads < 0 {
				return usagef("--threads %d: want 0 (all cores) or more", o.threads)
			}
			o.c.Form = adapters.Form(o.form)
			switch o.c.Form {
			case adapters.Auto, adapters.Weight, adapters.Activation:
			default:
				return usagef("--form %q: want auto, weight or activation", o.form)
			}
			tensor.SetThreads(o.threads)
			defer tensor.SetThreads(0)
			r, err := train.BenchStep(o.c)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.json {
				b, _ := json.Marshal(r)
				fmt.Fprintln(out, string(b))
				return nil
			}
			fmt.Fprintf(out, "%s %s %s rank %d, batch %d, latent %d, %d threads, checkpointing %v\n", r.Model, r.Adapter, r.Form, r.Rank, r.Batch, r.Latent, r.Threads, r.Checkpt)
			fmt.Fprintf(out, "step %.3f s (forward %.3f, backward %.3f, optimizer %.3f); peak live %.1f MiB, saved %.1f MiB, RSS %.1f MiB; %d trainable parameters\n",
				r.StepS, r.FwdS, r.BwdS, r.OptS, mib(r.PeakLive), mib(r.PeakSaved), mib(r.PeakRSS), r.Trainable)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.c.Model, "model", "dit-s-2", "DiT preset")
	f.StringVar(&o.c.Adapter, "adapter", "lora", "adapter kind (lora, locon, dora, loha, lokr, ia3) or full")
	f.StringVar(&o.form, "form", "auto", "adapter form: auto, weight or activation")
	f.IntVar(&o.c.Rank, "rank", 8, "adapter rank")
	f.StringVar(&o.c.Targets, "targets", "attn", "adapter targets: attn, attn-mlp, full or module patterns")
	f.IntVar(&o.c.Batch, "batch", 4, "batch size")
	f.IntVar(&o.c.Latent, "latent", 32, "latent side (0: the preset's)")
	f.IntVar(&o.c.Steps, "steps", 5, "timed steps (the median is reported)")
	f.IntVar(&o.c.Warmup, "warmup", 2, "untimed steps first")
	f.Uint64Var(&o.c.Seed, "seed", 1, "seed for weights, data and dropout")
	f.BoolVar(&o.c.Checkpoint, "checkpoint", false, "gradient checkpointing per block")
	f.IntVar(&o.threads, "threads", 0, "worker threads (0: all cores)")
	f.BoolVar(&o.json, "json", false, "one JSON object: model, adapter, form, rank, batch, latent, threads, step_s, fwd_s, bwd_s, opt_s, peak_live_bytes, peak_rss_bytes, ...")
	return cmd
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func newBenchMemoryCmd() *cobra.Command {
	var o struct {
		models      []string
		rank        int
		json        bool
		activations []string
		report      string
		methods     []string
		layers      int
		tokens      int
	}
	cmd := &cobra.Command{
		Use:   "memory",
		Short: "Peak training memory per method and form (the paper's comparison)",
		Long: `For a Llama-3.2-1B-shaped decoder (batch 8), DiT-XL/2 and the SD1.5 UNet (batch 1), measures one
training step's peak memory split into parameters, gradients, optimizer state, saved activations and
transients, for full finetuning and LoRA/DoRA in each form (adapters on every attention and MLP
linear layer). Shapes that fit this machine are measured; the real sizes are evaluated from the
same accounting fitted over depth and token count, and the fit is checked against a measured shape.`,
		Example: `  difftune bench memory --json > memory.jsonl
  difftune bench memory --model dit-xl-2 --rank 16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if o.report != "" {
				f, err := os.Open(o.report)
				if err != nil {
					return usagef("--report: %v", err)
				}
				defer f.Close()
				rows, err := membench.ReadRows(f)
				if err != nil {
					return usagef("--report %s: %v (want the output of bench memory --json)", o.report, err)
				}
				fmt.Fprint(out, membench.Report(rows))
				return nil
			}
			var all []membench.Row
			selected, err := benchPlans(o.models)
			if err != nil {
				return err
			}
			var plans []membench.Plan
			for _, a := range o.activations {
				if a != "f32" && a != "bf16" {
					return usagef("--activations %q: want f32, bf16 or both (f32,bf16)", a)
				}
				for _, p := range selected {
					p.BF16 = a == "bf16"
					plans = append(plans, p)
				}
			}
			methods := membench.Methods
			if len(o.methods) > 0 {
				methods = nil
				for _, m := range membench.Methods {
					if slices.Contains(o.methods, m.Key()) {
						methods = append(methods, m)
					}
				}
				if len(methods) != len(o.methods) {
					return usagef("--methods %s: want some of %s", strings.Join(o.methods, ","), strings.Join(methodKeys(), ", "))
				}
			}
			if o.tokens > 0 {
				// One measured shape per plan, the size a fit is checked against.
				for _, p := range plans {
					for _, m := range methods {
						r, err := membench.Measure(p.Shape(o.tokens, o.layers), m, o.rank)
						if err != nil {
							return fmt.Errorf("%s %s: %w", p.Model, m.Label(), err)
						}
						if o.json {
							b, _ := json.Marshal(r)
							fmt.Fprintln(out, string(b))
							continue
						}
						fmt.Fprintf(out, "%-9s %d layers %6d tokens  %-4s %-26s peak %7.3f GiB = params %.3f + grads %.3f + optimizer %.3f + saved %.3f + transient %.3f\n",
							r.Model, r.Layers, r.Tokens, r.Activations, m.Label(), gib(r.PeakBytes), gib(r.ParamsBytes), gib(r.GradsBytes), gib(r.OptimizerBytes), gib(r.SavedBytes), gib(r.TransientBytes))
					}
				}
				return nil
			}
			for _, p := range plans {
				for _, m := range methods {
					measured, evaluated, checkErr, err := membench.Evaluate(p, m, o.rank)
					if err != nil {
						return fmt.Errorf("%s %s: %w", p.Model, m.Label(), err)
					}
					rows := append(measured, evaluated...)
					all = append(all, rows...)
					for _, r := range rows {
						if o.json {
							b, _ := json.Marshal(r)
							fmt.Fprintln(out, string(b))
						}
					}
					if !o.json {
						for _, r := range evaluated {
							fmt.Fprintf(out, "%-9s %6d tokens  %-4s %-26s peak %7.2f GiB = params %.2f + grads %.2f + optimizer %.2f + saved %.2f + transient %.2f\n",
								r.Model, r.Tokens, r.Activations, m.Label(), gib(r.PeakBytes), gib(r.ParamsBytes), gib(r.GradsBytes), gib(r.OptimizerBytes), gib(r.SavedBytes), gib(r.TransientBytes))
						}
						fmt.Fprintf(out, "%-9s %-26s fit vs measured check shape: %.2f%%\n", p.Model, m.Label(), 100*checkErr)
					}
				}
			}
			if !o.json {
				for _, c := range membench.Claims(all) {
					fmt.Fprintln(out, c)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&o.models, "model", nil, "models to run: llama-1b, dit-xl-2, sd15 (default: all)")
	cmd.Flags().IntVar(&o.rank, "rank", 16, "adapter rank")
	cmd.Flags().StringSliceVar(&o.methods, "methods", nil, "methods to run (default: all): "+strings.Join(methodKeys(), ", "))
	cmd.Flags().IntVar(&o.tokens, "tokens", 0, "measure one shape instead: this many tokens (with the model's batch) at --layers layers, no fit")
	cmd.Flags().IntVar(&o.layers, "layers", 2, "layers of the --tokens shape (0: the real depth; sd15 is always whole)")
	cmd.Flags().StringVar(&o.report, "report", "", "print Markdown tables and the paper's claims from a file of earlier --json output instead of measuring")
	cmd.Flags().StringSliceVar(&o.activations, "activations", []string{"f32"}, "how saved activations are kept: f32, bf16 (packed as mixed-precision training keeps them), or both")
	cmd.Flags().BoolVar(&o.json, "json", false, `one JSON object per row: model, tokens, batch, method, adapter, form, dropout, rank, activations, params_bytes, grads_bytes, optimizer_bytes, saved_bytes, transient_bytes, peak_bytes, measured, step_s`)
	return cmd
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }

func newBenchFormsCmd() *cobra.Command {
	var o struct {
		models []string
		rank   int
		reps   int
		json   bool
	}
	cmd := &cobra.Command{
		Use:   "forms",
		Short: "Time LoRA's activation, weight and auto forms side by side on shapes bench memory measures",
		Long: `On the shapes bench memory measures first (its two smallest token counts at depth 2; SD1.5 whole),
times a LoRA training step's forward and backward in the activation, weight and auto forms with dropout 0, and in the
activation and auto forms with dropout 0.1. The forms share one model and their repetitions are
interleaved, so that a shared machine's load drifts over all of them alike; each time is a median.
Reports auto's time over the fastest other form's.`,
		Example: `  difftune bench forms --json > forms.jsonl
  difftune bench forms --model dit-xl-2 --reps 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.reps < 1 {
				return usagef("--reps %d: want 1 or more", o.reps)
			}
			plans, err := benchPlans(o.models)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			worst := 0.0
			for _, p := range plans {
				for _, s := range p.TimedShapes() {
					for _, dropout := range []float64{0, 0.1} {
						r, err := membench.TimeForms(s, o.rank, dropout, o.reps)
						if err != nil {
							return fmt.Errorf("%s %d tokens: %w", s.Model, s.Tokens, err)
						}
						worst = max(worst, r.AutoOverFastest)
						if o.json {
							b, _ := json.Marshal(r)
							fmt.Fprintln(out, string(b))
							continue
						}
						fmt.Fprintf(out, "%-9s layers %d, %5d tokens, batch %d, dropout %-3g: activation %.3f s, weight %.3f s, auto %.3f s: auto/fastest %.3f %v\n",
							r.Model, r.Layers, r.Tokens, r.Batch, r.Dropout, r.StepS["activation"], r.StepS["weight"], r.StepS["auto"], r.AutoOverFastest, r.Choices)
					}
				}
			}
			if !o.json {
				fmt.Fprintf(out, "(c) auto's step time is at most %.3f× the faster form's on every measured shape\n", worst)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&o.models, "model", nil, "models to run: llama-1b, dit-xl-2, sd15 (default: all)")
	cmd.Flags().IntVar(&o.rank, "rank", 16, "adapter rank")
	cmd.Flags().IntVar(&o.reps, "reps", 5, "timed repetitions per form (after one untimed round)")
	cmd.Flags().BoolVar(&o.json, "json", false, "one JSON object per shape and dropout: model, layers, tokens, batch, rank, dropout, reps, step_s per form, auto_over_fastest, auto_choices")
	return cmd
}

// benchPlans returns the memory benchmark's plans for the --model values (all for none),
// refusing a name that is not one of them.
func benchPlans(models []string) ([]membench.Plan, error) {
	var plans []membench.Plan
	var names []string
	for _, p := range membench.Plans {
		names = append(names, p.Model)
		if len(models) == 0 || slices.Contains(models, p.Model) {
			plans = append(plans, p)
		}
	}
	for _, m := range models {
		if !slices.Contains(names, m) {
			return nil, usagef("--model %q: want some of %s", m, strings.Join(names, ", "))
		}
	}
	return plans, nil
}

// methodKeys are the --methods names of the memory benchmark's methods.
func methodKeys() []string {
	var keys []string
	for _, m := range membench.Methods {
		keys = append(keys, m.Key())
	}
	return keys
}
