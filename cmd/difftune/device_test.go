package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/difftune/difftune/tensor/cuda"
)

// TestDeviceCUDA: --device cuda fails on every command, naming the reason: without a
// GPU the missing driver, with one that the ops do not run on CUDA yet.
func TestDeviceCUDA(t *testing.T) {
	want := []string{"--device cuda:0", "the tensor ops", "do not dispatch to CUDA yet", "use --device cpu"}
	if err := cuda.Available(); err != nil {
		want = []string{"--device cuda:0: no NVIDIA driver: libcuda.so.1 not found (", "); use --device cpu"}
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{"train", dir, "--model", "tiny-dit", "--steps", "1", "--device", "cuda"},
		{"sample", "--model", "tiny-dit", "--prompt", "x", "--device", "cuda"},
		{"bench", "gemm", "--device", "cuda", "8x8x8"},
		{"bench", "step", "--device", "cuda:0"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, msg := run(args...)
			if code != 1 || out != "" {
				t.Fatalf("exit %d (want 1), output %q, error %q", code, out, msg)
			}
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Fatalf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestDeviceBadValue(t *testing.T) {
	for _, v := range []string{"tpu", "cuda:x", "cuda:-1"} {
		code, _, msg := run("bench", "gemm", "--device", v, "8x8x8")
		if code != 2 || !strings.Contains(msg, "want auto, cpu, cuda or cuda:N") {
			t.Fatalf("--device %s: exit %d (want 2), error %q", v, code, msg)
		}
	}
}

// TestDeviceAutoRunsOnCPU: without a GPU, auto runs the command on the CPU.
func TestDeviceAutoRunsOnCPU(t *testing.T) {
	if cuda.Available() == nil {
		t.Skip("a CUDA GPU answers here; this test checks the CPU fallback of a machine without one")
	}
	for _, dev := range []string{"auto", "cpu"} {
		code, out, msg := run("bench", "gemm", "--device", dev, "--json", "--min-time", "0.01", "16x8x4")
		var row struct{ M, K, N int }
		if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &row) != nil || row.M != 16 || row.K != 8 || row.N != 4 || strings.Contains(out, "note:") {
			t.Fatalf("--device %s: exit %d, output %q, error %q", dev, code, out, msg)
		}
	}
}
