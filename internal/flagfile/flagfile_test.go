package flagfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestApply(t *testing.T) {
	path := filepath.Join(t.TempDir(), "train.toml")
	body := `# a run
[train]
steps = 300
lr = 1e-4  # peak
adapter = "loha"
sample_prompts = "prompts.txt"
flip = true
lora = ["a.safetensors:0.5", 'b.safetensors']
`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	steps := fs.Int("steps", 10, "")
	lr := fs.Float64("lr", 1, "")
	adapter := fs.String("adapter", "lora", "")
	prompts := fs.String("sample-prompts", "", "")
	flip := fs.Bool("flip", false, "")
	lora := fs.StringArray("lora", nil, "")
	if err := fs.Parse([]string{"--steps", "50"}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(path, fs); err != nil {
		t.Fatal(err)
	}
	if *steps != 50 || *lr != 1e-4 || *adapter != "loha" || *prompts != "prompts.txt" || !*flip || len(*lora) != 2 || (*lora)[1] != "b.safetensors" {
		t.Fatalf("steps %d lr %g adapter %s prompts %s flip %v lora %v", *steps, *lr, *adapter, *prompts, *flip, *lora)
	}
	for _, bad := range []string{"nope = 1\n", "steps = many\n", "steps\n", "adapter = \"x\n"} {
		os.WriteFile(path, []byte(bad), 0o644)
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		fs.Int("steps", 1, "")
		fs.String("adapter", "", "")
		if err := Apply(path, fs); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
