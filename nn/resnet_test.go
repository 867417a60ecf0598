package nn

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/tensor"
)

// newResnet returns a random 4 -> 8 channel block, with a 6-wide time embedding when
// temb is set.
func newResnet(rng *rand.Rand, temb bool) *ResnetBlock2D {
	r := &ResnetBlock2D{
		Norm1: NewGroupNorm(2, 4, 1e-6), Conv1: NewConv2d(rng, 4, 8, 3, 1, 1, 1, true),
		Norm2: NewGroupNorm(2, 8, 1e-6), Conv2: NewConv2d(rng, 8, 8, 3, 1, 1, 1, true),
		ConvShortcut: NewConv2d(rng, 4, 8, 1, 1, 0, 1, true), OutputScaleFactor: 1,
	}
	if temb {
		r.TimeEmbProj = NewLinear(rng, 6, 8, true)
	}
	return r
}

// TestResnetBlock2DWithoutTimeEmbedding checks the VAE form (no time_emb_proj): its
// names, that it equals the UNet form with a zero projection, and that a mismatch
// between temb and TimeEmbProj panics.
func TestResnetBlock2DWithoutTimeEmbedding(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	r := newResnet(rng, true)
	defer ReleaseParams(r)
	var names []string
	for _, p := range r.Params("") {
		names = append(names, p.Name)
	}
	if !slices.Contains(names, "time_emb_proj.weight") || len(names) != 12 {
		t.Fatalf("names %v", names)
	}
	x, temb := randInput(rng, 2, 4, 5, 3), randInput(rng, 2, 6)
	defer tensor.Release(x, temb)
	// A zero projection adds nothing, so both forms must agree exactly.
	for _, p := range r.TimeEmbProj.Params("") {
		clear(p.T().Data())
	}
	var with, without *tensor.Tensor
	tensor.NoGrad(func() {
		with = r.Forward(x, temb)
		proj := r.TimeEmbProj
		r.TimeEmbProj = nil
		without = r.Forward(x, nil)
		r.TimeEmbProj = proj
	})
	defer tensor.Release(with, without)
	if !slices.Equal(with.Data(), without.Data()) {
		t.Fatal("block without time embedding differs from one with a zero projection")
	}
	for _, c := range []struct {
		name string
		temb *tensor.Tensor
		proj bool
	}{{"temb without time_emb_proj", temb, false}, {"time_emb_proj without temb", nil, true}} {
		t.Run(c.name, func(t *testing.T) {
			b := *r
			if !c.proj {
				b.TimeEmbProj = nil
			}
			defer func() {
				if msg, _ := recover().(string); !strings.Contains(msg, "nn.ResnetBlock2D") {
					t.Fatalf("panic %q, want one naming nn.ResnetBlock2D", msg)
				}
			}()
			tensor.NoGrad(func() { b.Forward(x, c.temb) })
		})
	}
}
