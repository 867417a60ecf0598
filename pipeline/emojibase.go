package pipeline

import (
	"embed"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/difftune/difftune/safetensors"
)

// DefaultModel is the model the commands use when --model is not given: emoji-base,
// difftune's own small text-to-image model, embedded in the binary.
const DefaultModel = "emoji-base"

// models holds the emoji-base model file, models/emoji-base.safetensors (BF16
// weights; see DATA-LICENSES.md for the training data and its licenses, README for how
// it was trained), and its README.
//
//go:embed models
var models embed.FS

// emojiBase returns the embedded model file's bytes.
var emojiBase = sync.OnceValues(func() ([]byte, error) {
	b, err := models.ReadFile("models/emoji-base.safetensors")
	if err != nil {
		return nil, fmt.Errorf("emoji-base is not built into this binary (pipeline/models/emoji-base.safetensors was missing when it was built): %w", err)
	}
	return b, nil
})

// emojiSpec is emoji-base's spec, read once from the embedded header.
var emojiSpec = sync.OnceValues(func() (ModelSpec, error) {
	b, err := emojiBase()
	if err != nil {
		return ModelSpec{}, err
	}
	f, err := safetensors.OpenBytes("emoji-base (embedded)", b)
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
	b, err := emojiBase()
	if err != nil {
		return nil, err
	}
	p, err := LoadModelBytes("emoji-base (embedded)", b)
	if err != nil {
		return nil, err
	}
	p.Name = DefaultModel
	p.Description = DefaultModel + ": " + Presets[DefaultModel]
	return p, nil
}
