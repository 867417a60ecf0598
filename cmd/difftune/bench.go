package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/difftune/difftune/tensor"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure kernels and training steps on this machine",
	}
	cmd.AddCommand(newBenchGemmCmd())
	requireSubcommand(cmd)
	return cmd
}

func newBenchGemmCmd() *cobra.Command {
	var o struct {
		threads int
		json    bool
		minTime float64
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
			if !o.json {
				fmt.Fprintf(out, "kernel %s, %d threads\n", tensor.GemmKernel(), tensor.Threads())
			}
			for _, s := range shapes {
				m, k, n := s[0], s[1], s[2]
				gflops := tensor.MeasureGemm(m, k, n, o.minTime)
				if o.json {
					b, _ := json.Marshal(map[string]any{"m": m, "k": k, "n": n, "threads": tensor.Threads(), "gflops": round2(gflops), "kernel": tensor.GemmKernel()})
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
