package train

import (
	"encoding/json"
	"fmt"

	"github.com/difftune/difftune/data"
	"github.com/difftune/difftune/tensor"
)

// LoaderSource feeds a data.Loader's batches to Run. With Encode and Cache set it
// returns latents instead of pixels, each sample's latent read from the on-disk cache
// (keyed by its file's content hash, size, bucket, crop, flip and Encoder, the latent
// encoder's identity) or encoded and stored there.
type LoaderSource struct {
	L       *data.Loader
	Encode  func(pixels *tensor.Tensor) *tensor.Tensor // pixels [1, 3, H, W] to latents [1, C, h, w]
	Cache   *data.Cache
	Encoder string
	epoch   int
	// Hits and Misses count cache lookups.
	Hits, Misses int
}

// Next returns the next batch's images or latents (the caller releases them) and
// captions.
func (s *LoaderSource) Next() (*tensor.Tensor, []string, error) {
	if s.Encode == nil || s.Cache == nil {
		b, err := s.L.Next()
		if err != nil {
			return nil, nil, err
		}
		s.epoch = b.Epoch
		return b.Images, b.Captions, nil
	}
	b, err := s.L.Next()
	if err != nil {
		return nil, nil, err
	}
	defer b.Release()
	s.epoch = b.Epoch
	n := b.Images.Dim(0)
	latents := make([]*tensor.Tensor, n)
	defer func() { tensor.Release(latents...) }()
	for i, smp := range b.Samples {
		key := smp.Key(s.Encoder)
		got, ok, err := s.Cache.Get(key)
		if err != nil {
			return nil, nil, err
		}
		if ok && got["latent"] != nil {
			s.Hits++
			latents[i] = got["latent"]
			continue
		}
		s.Misses++
		one := tensor.Slice(b.Images, 0, i, i+1) // [1, 3, H, W]
		var z *tensor.Tensor
		tensor.NoGrad(func() { z = s.Encode(one) })
		one.Release()
		if err := s.Cache.Put(key, map[string]*tensor.Tensor{"latent": z}); err != nil {
			z.Release()
			return nil, nil, err
		}
		latents[i] = z
	}
	return tensor.Concat(0, latents...), b.Captions, nil
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
