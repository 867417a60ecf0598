package textenc

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/golden"
)

// TestCLIPTokenizerParity: both vocabulary layouts give the golden ids for every
// golden prompt (cleanup, lower-casing, BPE, truncation with the end token kept,
// padding with the end token or with 0).
func TestCLIPTokenizerParity(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "clip_text")
	raw, err := os.ReadFile(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Prompt    string   `json:"prompt"`
		Truncated bool     `json:"truncated"`
		BPE       []string `json:"bpe_tokens"`
		IDs       []int    `json:"input_ids"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	hf, err := LoadCLIPTokenizer(filepath.Join(dir, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	// The same folder without vocab.json: the openai gzip file alone.
	only := t.TempDir()
	gz, err := os.ReadFile(filepath.Join(dir, "tokenizer", "bpe_simple_vocab_16e6.txt.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(only, "bpe_simple_vocab_16e6.txt.gz"), gz, 0o644); err != nil {
		t.Fatal(err)
	}
	oa, err := LoadCLIPTokenizer(only)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]*CLIPTokenizer{"vocab.json": hf, "bpe.gz": oa} {
		for _, c := range cases {
			ids, trunc := tok.Encode([]string{c.Prompt})
			if !slices.Equal(ids[0], c.IDs) || trunc[0] != c.Truncated {
				t.Errorf("%s: %q:\n got %v\nwant %v (truncated %v, want %v)", name, c.Prompt, ids[0], c.IDs, trunc[0], c.Truncated)
			}
		}
	}
	// openai's clip.tokenize pads with 0.
	oa.PadID = 0
	ids, _ := oa.Encode([]string{cases[0].Prompt})
	if ids[0][len(cases[0].BPE)] != 0 || ids[0][len(cases[0].BPE)-1] != 49407 {
		t.Errorf("zero padding: %v", ids[0][:len(cases[0].BPE)+1])
	}
}

func TestCLIPTokenizerMissingFiles(t *testing.T) {
	_, err := LoadCLIPTokenizer(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "vocab.json") || !strings.Contains(err.Error(), "--tokenizer") {
		t.Fatalf("missing tokenizer: %v", err)
	}
}

// TestCLIPTokenizerPadToken: special_tokens_map.json's pad_token sets PadID — the end
// token for SD 1.x (the golden folder's map), "!" (id 0) for SD 2.x's tokenizer folder;
// an unknown pad token is an error naming the file.
func TestCLIPTokenizerPadToken(t *testing.T) {
	src := filepath.Join(golden.Dir(t), "clip_text", "tokenizer")
	hf, err := LoadCLIPTokenizer(src)
	if err != nil || hf.PadID != 49407 {
		t.Fatalf("SD 1.x map: pad %d, %v", hf.PadID, err)
	}
	for _, c := range []struct {
		pad  string
		id   int
		fail bool
	}{{`"!"`, 0, false}, {`{"content": "!", "lstrip": false}`, 0, false}, {`"<nope>"`, 0, true}} {
		dir := t.TempDir()
		for _, f := range []string{"vocab.json", "merges.txt"} {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "special_tokens_map.json"), []byte(`{"pad_token": `+c.pad+`}`), 0o644); err != nil {
			t.Fatal(err)
		}
		tok, err := LoadCLIPTokenizer(dir)
		switch {
		case c.fail && (err == nil || !strings.Contains(err.Error(), "special_tokens_map.json")):
			t.Errorf("pad %s: %v", c.pad, err)
		case !c.fail && (err != nil || tok.PadID != c.id):
			t.Errorf("pad %s: %v", c.pad, err)
		}
	}
}
