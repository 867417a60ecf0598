package train

import (
	"encoding/json"
	"fmt"

	"github.com/difftune/difftune/data"
	"github.com/difftune/difftune/tensor"
)

// LoaderSource feeds a data.Loader's batches to Run.
type LoaderSource struct {
	L     *data.Loader
	epoch int
}

// Next returns the next batch's images (the caller releases them) and captions.
func (s *LoaderSource) Next() (*tensor.Tensor, []string, error) {
	b, err := s.L.Next()
	if err != nil {
		return nil, nil, err
	}
	s.epoch = b.Epoch
	return b.Images, b.Captions, nil
}

// Epoch returns the epoch of the last batch.
func (s *LoaderSource) Epoch() int { return s.epoch }

// State returns the loader's position as JSON.
func (s *LoaderSource) State() (string, error) {
	b, err := json.Marshal(s.L.State())
	return string(b), err
}

// Restore continues from a State; the loader refuses one of another dataset or seed.
func (s *LoaderSource) Restore(state string) error {
	var st data.State
	if err := json.Unmarshal([]byte(state), &st); err != nil {
		return fmt.Errorf("data loader state %q: %w", state, err)
	}
	return s.L.Restore(st)
}
