package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/safetensors"
)

func newInspectCmd() *cobra.Command {
	var o struct{ tensors bool }
	cmd := &cobra.Command{
		Use:   "inspect FILE|DIR",
		Short: "Describe a checkpoint, an adapter file or any safetensors file",
		Long: `Describes a model checkpoint (single file or diffusers folder: detected architecture,
parameters and dtypes per component, metadata), an adapter file (type, rank, alpha,
targeted modules, base model), or any other safetensors file (tensors, dtypes, metadata).
Only headers and configs are read.`,
		Example: `  difftune inspect v1-5-pruned-emaonly.safetensors
  difftune inspect ./stable-diffusion-v1-5
  difftune inspect --tensors my-style.safetensors`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, w := args[0], cmd.OutOrStdout()
			if fi, err := os.Stat(path); err == nil && fi.IsDir() {
				s, err := pipeline.Inspect(path)
				fmt.Fprint(w, s)
				return err
			}
			h, err := safetensors.ReadHeader(path)
			if err != nil {
				return err
			}
			var s string
			switch {
			case adapters.IsAdapterFile(h):
				s, err = adapters.Describe(path)
			case pipeline.IsCheckpoint(h):
				s, err = pipeline.Inspect(path)
			default:
				return safetensors.Summarize(w, path, h, o.tensors)
			}
			if err != nil {
				return err
			}
			fmt.Fprint(w, s)
			if o.tensors {
				return safetensors.Summarize(w, path, h, true)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.tensors, "tensors", false, "list every tensor with its dtype and shape")
	return cmd
}
