package vae

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/difftune/difftune/internal/parity"

	"github.com/difftune/difftune/tensor"
)

// TestParamGradsFiniteDifference checks every parameter gradient of both passes
// (encode: <moments, g_enc>; decode: <decoded, g_dec>) on the golden model against a
// central difference of the loss along a random ±1 direction u of that tensor:
// <∇L, u> ≈ (L(θ+hu) − L(θ−hu)) / 2h. The golden set has no VAE param_grads file,
// so this is what stands behind the parameter gradients.
func TestParamGradsFiniteDifference(t *testing.T) {
	m, dir := goldenModel(t)
	io := parity.Open(t, filepath.Join(dir, "io.safetensors"))
	for _, pass := range []struct {
		name, in, g string
		f           func(*tensor.Tensor) *tensor.Tensor
		prefix      []string
	}{
		{"encode", "image", "g_enc", m.Encode, []string{"encoder.", "quant_conv."}},
		{"decode", "z", "g_dec", m.Decode, []string{"decoder.", "post_quant_conv."}},
	} {
		t.Run(pass.name, func(t *testing.T) {
			x, g := parity.Read(t, io, pass.in), parity.Read(t, io, pass.g)
			defer tensor.Release(x, g)
			loss := func() float64 {
				var out *tensor.Tensor
				tensor.NoGrad(func() { out = pass.f(x) })
				defer out.Release()
				var s float64
				for i, v := range out.Data() {
					s += float64(v) * float64(g.Data()[i])
				}
				return s
			}
			out := pass.f(x)
			tensor.BackwardWith([]*tensor.Tensor{out}, []*tensor.Tensor{g})
			out.Release()
			rng := rand.New(rand.NewPCG(5, 6))
			worst, worstName, n := 0.0, "", 0
			for _, p := range m.Params("") {
				grad := p.T().Grad()
				if grad == nil {
					continue
				}
				n++
				w := p.T().Data()
				u := make([]float32, len(w))
				unit := float32(1 / math.Sqrt(float64(len(w))))
				var ana float64
				for i := range u {
					u[i] = unit * float32(2*rng.IntN(2)-1)
					ana += float64(u[i]) * float64(grad.Data()[i])
				}
				const h = fdStep
				step := func(s float32) {
					for i := range w {
						w[i] += s * u[i]
					}
				}
				orig := append([]float32(nil), w...)
				step(h)
				lp := loss()
				copy(w, orig)
				step(-h)
				lm := loss()
				copy(w, orig)
				num := (lp - lm) / (2 * h)
				rel := math.Abs(num-ana) / math.Max(math.Abs(ana), fdFloor)
				if rel > fdTol {
					t.Errorf("%s: <grad, u> = %.6g, central difference %.6g (rel %.2g)", p.Name, ana, num, rel)
				}
				if rel >= worst {
					worst, worstName = rel, p.Name
				}
			}
			t.Logf("%d parameter gradients: worst %s, rel %.2g", n, worstName, worst)

			for _, p := range m.Params("") {
				p.T().ZeroGrad()
			}
		})
	}
}

// The direction u has unit norm, so a step of h = 1e-2 moves each tensor by 1e-2.
// The float32 loss sums ~3000 outputs of O(1), known to ~5e-6, which the step turns
// into ~3e-4 absolute in the difference quotient (to_k.bias, whose true gradient is 0
// under softmax's shift invariance, reads 2.7e-4); the h² truncation term reaches
// ~1.5e-3 on the attention weights. Differences are taken relative to
// max(|<∇L, u>|, 0.1); the worst measured is 1.4e-2 (decoder to_k.weight), 4e-3
// elsewhere. A wrong gradient (a missing term, a transposed weight) is off by O(1).
const (
	fdStep  = 1e-2
	fdFloor = 0.1
	fdTol   = 2e-2
)
