package main

import (
	"github.com/spf13/cobra"

	"github.com/difftune/difftune/safetensors"
)

func newInspectCmd() *cobra.Command {
	var o struct{ tensors bool }
	cmd := &cobra.Command{
		Use:   "inspect FILE.safetensors",
		Short: "Show the tensors, dtypes, parameter counts and metadata of a safetensors file",
		Example: `  difftune inspect model.safetensors
  difftune inspect --tensors my-style.safetensors`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := safetensors.ReadHeader(args[0])
			if err != nil {
				return err
			}
			return safetensors.Summarize(cmd.OutOrStdout(), args[0], h, o.tensors)
		},
	}
	cmd.Flags().BoolVar(&o.tensors, "tensors", false, "list every tensor with its dtype and shape")
	return cmd
}
