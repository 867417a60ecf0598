package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/golden"
)

// run executes the CLI in-process and returns its exit code, stdout and the error text.
func run(args ...string) (int, string, string) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	return exitCode(err), out.String(), msg
}

func TestExitCodes(t *testing.T) {
	golden := filepath.Join(golden.Dir(t), "dit", "weights.safetensors")
	for _, c := range []struct {
		args []string
		code int
		want string // in the error or the output
	}{
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"bench"}, 2, "needs a subcommand"},
		{[]string{"bench", "foo"}, 2, "unknown command"},
		{[]string{"bench", "gemm", "12x3"}, 2, "MxKxN"},
		{[]string{"bench", "gemm", "--threads", "-1", "8x8x8"}, 2, "--threads"},
		{[]string{"bench", "gemm", "--nope"}, 2, "unknown flag"},
		{[]string{"bench", "memory", "--methods", "lora-sideways"}, 2, "lora-auto-p0.1"},
		{[]string{"bench", "memory", "--activations", "fp8"}, 2, "--activations"},
		{[]string{"bench", "memory", "--report", "/nonexistent.jsonl"}, 2, "/nonexistent.jsonl"},
		{[]string{"bench", "forms", "--reps", "0"}, 2, "--reps"},
		{[]string{"bench", "forms", "--model", "llama-7b"}, 2, "llama-1b, dit-xl-2, sd15"},
		{[]string{"bench", "memory", "--model", "sdxl", "--tokens", "64"}, 2, "--model"},
		{[]string{"inspect"}, 2, "accepts 1 arg"},
		{[]string{"bench", "step", "--model", "nope"}, 1, "--model"},
		{[]string{"bench", "step", "--form", "sideways", "--model", "tiny-dit"}, 2, "--form"},
		{[]string{"inspect", "/nonexistent.safetensors"}, 1, "/nonexistent.safetensors"},
		{[]string{"inspect", golden}, 0, "32 tensors"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, out, msg := run(c.args...)
			if code != c.code || !strings.Contains(out+msg, c.want) {
				t.Fatalf("exit %d (want %d), output %q, error %q (want %q)", code, c.code, out, msg, c.want)
			}
		})
	}
}

func TestBenchGemmJSON(t *testing.T) {
	code, out, msg := run("bench", "gemm", "--json", "--min-time", "0.01", "64x32x16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	var row struct {
		M, K, N, Threads int
		GFLOPS           float64 `json:"gflops"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &row); err != nil || row.M != 64 || row.K != 32 || row.N != 16 || row.GFLOPS <= 0 || row.Threads <= 0 {
		t.Fatalf("line %q: %+v %v", out, row, err)
	}
}
