package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "difftune",
		Short: "Finetune diffusion models with weight-space adapters, and sample from them",
		Long: `difftune finetunes diffusion models (Stable Diffusion 1.x/2.x UNets, DiT, PixArt-α)
with adapters (LoRA, LoCon, DoRA, LoHa, LoKr, IA3) computed in weight space, and
samples from them. It runs on the CPU everywhere; the CUDA device (--device) is not yet wired to the ops.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newTrainCmd(), newSampleCmd(), newInspectCmd(), newBenchCmd())
	requireSubcommand(root)
	return root
}

// requireSubcommand makes a command that only groups others fail with a usage error
// (exit 2) when run without a known subcommand, instead of printing help with exit 0.
func requireSubcommand(cmd *cobra.Command) {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q; run '%s --help'", args[0], c.CommandPath(), c.CommandPath())
		}
		return nil
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		return usagef("%s needs a subcommand; run '%s --help'", c.CommandPath(), c.CommandPath())
	}
}

// exactArgs is cobra.ExactArgs with difftune's usage exit code.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
