package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/difftune/difftune/tensor/cuda"
)

// addDeviceFlag binds --device.
func addDeviceFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "device", "auto", "where to run: auto (a GPU when one answers, else the CPU), cpu, cuda or cuda:N")
}

// useDevice checks --device before a command runs. The GPU device exists (driver,
// allocator, kernels) but the tensor ops do not dispatch to it yet, so asking for
// cuda fails saying so instead of quietly running on the CPU, and auto runs on the
// CPU, with a note when a GPU answers.
func useDevice(cmd *cobra.Command, spec string) error {
	s, err := cuda.ParseSpec(spec)
	if err != nil {
		return usagef("--device: %v", err)
	}
	switch s.Kind {
	case "cpu":
		return nil
	case "auto":
		if cuda.Available() == nil {
			fmt.Fprintln(cmd.ErrOrStderr(), "note: a CUDA GPU answers, but difftune's training, sampling and benchmark ops do not run on CUDA yet; running on the CPU")
		}
		return nil
	}
	d, err := cuda.Select(spec)
	if err != nil {
		return err
	}
	gpu := d.(*cuda.Device)
	name := gpu.Info().Name
	gpu.Close()
	return fmt.Errorf("--device %s (%s): the GPU opens and difftune's kernels load, but the tensor ops (autograd, layers, adapters) do not dispatch to CUDA yet, so %s cannot run there; use --device cpu",
		s, name, cmd.CommandPath())
}
