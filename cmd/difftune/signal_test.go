package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/difftune/difftune/internal/leakcheck"
)

// TestMain lets the test binary act as the difftune command (DIFFTUNE_TEST_MAIN=1), so
// that a test can run it as a process and send it signals; otherwise it runs the
// tests under the leak check.
func TestMain(m *testing.M) {
	if os.Getenv("DIFFTUNE_TEST_MAIN") == "1" {
		main()
		return
	}
	leakcheck.Main(m)
}

// TestSIGINTSavesResumableState interrupts a training process with SIGINT while it is
// stepping: it must exit non-zero naming the saved state, and a --resume run must
// finish the remaining steps.
func TestSIGINTSavesResumableState(t *testing.T) {
	dir := t.TempDir()
	ds := filepath.Join(dir, "shapes")
	os.Mkdir(ds, 0o755)
	writeDataset(t, ds)
	out := filepath.Join(dir, "out")
	args := []string{"train", ds, "--model", "tiny-unet", "--steps", "400", "--batch", "2", "--out", out}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "DIFFTUNE_TEST_MAIN=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until training has logged a few steps, then interrupt mid-run.
	deadline := time.Now().Add(60 * time.Second)
	for {
		raw, _ := os.ReadFile(filepath.Join(out, "train.jsonl"))
		if strings.Count(string(raw), "\n") >= 3 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("training logged no steps in 60 s: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if err == nil || !strings.Contains(stderr.String(), "--resume") {
		t.Fatalf("interrupted run: %v; stderr %s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(out, "state", "state.safetensors")); err != nil {
		t.Fatalf("no state after SIGINT: %v", err)
	}
	// The interrupted run reached at least 3 of 400 steps; resuming with --steps 6
	// (the schedule's length is not part of the data state) finishes the run.
	code, stdout, msg := run("train", ds, "--model", "tiny-unet", "--steps", "6", "--batch", "2", "--out", out, "--resume")
	if code != 0 || !strings.Contains(stdout, "trained") {
		t.Fatalf("resume: exit %d: %s %s", code, stdout, msg)
	}
	// Changing the batch size changes the data order: resuming must refuse it.
	code, _, msg = run("train", ds, "--model", "tiny-unet", "--steps", "8", "--batch", "1", "--out", out, "--resume")
	if code == 0 || !strings.Contains(msg, "changed") {
		t.Fatalf("resume with another batch size: exit %d: %s", code, msg)
	}
}
