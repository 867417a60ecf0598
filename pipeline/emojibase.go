package pipeline

import (
	_ "embed" // the model file
	"encoding/json"
	"fmt"
	"sync"

	"github.com/difftune/difftune/safetensors"
)

// DefaultModel is the model the commands use when --model is not given: emoji-base,
// difftune's own small text-to-image model, embedded in the binary.
const DefaultModel = "emoji-base"

// emojiBaseFile is the emoji-base model file (BF16 weights; see DATA-LICENSES.md for
// the training data and its licenses, README for how it was trained). Embedded as a
// byte slice, it is part of the binary's data: nothing is copied at run time.
//
//go:embed models/emoji-base.safetensors
var emojiBaseFile []byte

// emojiSpec is emoji-base's spec, read once from the embedded header.
var emojiSpec = sync.OnceValues(func() (ModelSpec, error) {
	f, err := safetensors.OpenBytes("emoji-base (embedded)", emojiBaseFile)
	if err != nil {
		return ModelSpec{}, err
	}
	var s ModelSpec
	if err := json.Unmarshal([]byte(f.Metadata()[SpecKey]), &s); err != nil {
		return ModelSpec{}, fmt.Errorf("emoji-base (embedded): metadata %q: %w", SpecKey, err)
	}
	return s, nil
})

// loadEmojiBase loads the embedded model: its BF16 weights widened to F32.
func loadEmojiBase() (*Pipeline, error) {
	p, err := LoadModelBytes("emoji-base (embedded)", emojiBaseFile)
	if err != nil {
		return nil, err
	}
	p.Name = DefaultModel
	p.Description = DefaultModel + ": " + Presets[DefaultModel]
	return p, nil
}
