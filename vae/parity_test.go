package vae

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/internal/parity"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// Tolerances, from the golden README and MANIFEST: float32 and float64 references of
// this model differ by up to 1.3e-6 of max|value| (grad_z: 3.6e-6 of 2.86), so outputs
// are compared at 1e-5 and gradients, which sum over many more float32 products, at
// 1e-4 of each tensor's max|value|.
const (
	outTol  = 1e-5
	gradTol = 1e-4
)

// goldenModel loads the reference config and weights.
func goldenModel(t *testing.T) (*AutoencoderKL, string) {
	return parity.Model(t, "vae", LoadConfig, New)
}

// TestEncodeParity runs the reference encode call, moments =
// encode(image).latent_dist.parameters, splits the distribution, and backpropagates
// <moments, g_enc> to the image and to every encoder parameter.
func TestEncodeParity(t *testing.T) {
	m, dir := goldenModel(t)
	io := parity.Open(t, filepath.Join(dir, "io.safetensors"))
	img := parity.Read(t, io, "image").SetRequiresGrad(true)
	g := parity.Read(t, io, "g_enc")
	defer tensor.Release(img, g)

	moments := m.Encode(img)
	parity.Expect(t, "moments", moments, parity.Read(t, io, "moments"), outTol)
	d := NewDiagonalGaussian(moments)
	parity.Expect(t, "mean", d.Mean, parity.Read(t, io, "mean"), outTol)
	parity.Expect(t, "logvar", d.LogVar, parity.Read(t, io, "logvar"), outTol)
	parity.Expect(t, "std", d.Std, parity.Read(t, io, "std"), outTol)
	d.Release()

	tensor.BackwardWith([]*tensor.Tensor{moments}, []*tensor.Tensor{g})
	moments.Release()
	if s := tensor.SavedBytes(); s != 0 {
		t.Fatalf("%d saved bytes remain after backward", s)
	}
	parity.Expect(t, "grad_image", img.Grad(), parity.Read(t, io, "grad_image"), gradTol)
	checkParamGrads(t, m, dir, "encoder.", "quant_conv.")
}

// TestDecodeParity runs the reference decode call, decoded = decode(z).sample, and
// backpropagates <decoded, g_dec> to z and to every decoder parameter.
func TestDecodeParity(t *testing.T) {
	m, dir := goldenModel(t)
	io := parity.Open(t, filepath.Join(dir, "io.safetensors"))
	z := parity.Read(t, io, "z").SetRequiresGrad(true)
	g := parity.Read(t, io, "g_dec")
	defer tensor.Release(z, g)

	decoded := m.Decode(z)
	parity.Expect(t, "decoded", decoded, parity.Read(t, io, "decoded"), outTol)
	tensor.BackwardWith([]*tensor.Tensor{decoded}, []*tensor.Tensor{g})
	decoded.Release()
	if s := tensor.SavedBytes(); s != 0 {
		t.Fatalf("%d saved bytes remain after backward", s)
	}
	parity.Expect(t, "grad_z", z.Grad(), parity.Read(t, io, "grad_z"), gradTol)
	checkParamGrads(t, m, dir, "decoder.", "post_quant_conv.")
}

// checkParamGrads compares the gradient of every parameter under the prefixes with
// the golden param_grads.safetensors, printing the worst, then frees the gradients.
// The other parameters must have none. The published golden set has no VAE
// param_grads file; then the comparison is logged as absent and the parameter
// gradients rest on TestParamGradsFiniteDifference.
func checkParamGrads(t *testing.T, m *AutoencoderKL, dir string, prefixes ...string) {
	t.Helper()
	ps := m.Params("")
	defer func() {
		for _, p := range ps {
			p.T().ZeroGrad()
		}
	}()
	mine := func(name string) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) })
	}
	var own []nn.Param
	for _, p := range ps {
		switch g := p.T().Grad(); {
		case mine(p.Name) && g == nil:
			t.Fatalf("%s: no gradient", p.Name)
		case !mine(p.Name) && g != nil:
			t.Fatalf("%s: has a gradient, but the pass does not use it", p.Name)
		case mine(p.Name):
			own = append(own, p)
		}
	}
	path := filepath.Join(dir, "param_grads.safetensors")
	if _, err := os.Stat(path); os.IsNotExist(err) {
		t.Logf("parameter gradients (%d): %s is not in the golden set; see TestParamGradsFiniteDifference", len(own), path)
		return
	}
	grads := parity.Open(t, path)
	worst, worstName := golden.Diff{}, ""
	for _, p := range own {
		want := parity.Read(t, grads, p.Name)
		d := golden.Compare(p.T().Grad().Float32s(), want.Float32s())
		want.Release()
		if d.MaxRel > gradTol {
			t.Errorf("grad %s: %v exceeds %.0e", p.Name, d, gradTol)
		}
		if d.MaxRel >= worst.MaxRel {
			worst, worstName = d, p.Name
		}
	}
	t.Logf("parameter gradients (%d): worst %s: %v", len(own), worstName, worst)
}

// TestLatentsParity checks the pipeline conventions on the golden tensors:
// EncodeLatents is scaling·mean, or scaling·(mean + std·noise) with noise, and
// DecodeLatents(scaling·z) is the golden decode(z).
func TestLatentsParity(t *testing.T) {
	m, dir := goldenModel(t)
	io := parity.Open(t, filepath.Join(dir, "io.safetensors"))
	img, z := parity.Read(t, io, "image"), parity.Read(t, io, "z")
	defer tensor.Release(img, z)
	s := float32(m.Config.ScalingFactor)
	scaled := func(name string, f func(float32) float32) *tensor.Tensor {
		x := parity.Read(t, io, name)
		for i, v := range x.Data() {
			x.Data()[i] = s * f(v)
		}
		return x
	}
	mean := scaled("mean", func(v float32) float32 { return v })
	defer mean.Release()
	got := m.EncodeLatents(img, nil)
	parity.Expect(t, "EncodeLatents(mean)", got, mean.Clone(), outTol)
	got.Release()

	// With z as the noise: scaling·(mean + std·z).
	std := parity.Read(t, io, "std")
	want := mean.Clone()
	for i := range want.Data() {
		want.Data()[i] += s * std.Data()[i] * z.Data()[i]
	}
	std.Release()
	got = m.EncodeLatents(img, z)
	parity.Expect(t, "EncodeLatents(sample)", got, want, outTol)
	got.Release()

	zModel := scaled("z", func(v float32) float32 { return v })
	defer zModel.Release()
	var dec *tensor.Tensor
	tensor.NoGrad(func() { dec = m.DecodeLatents(zModel) })
	parity.Expect(t, "DecodeLatents", dec, parity.Read(t, io, "decoded"), outTol)
	dec.Release()
}
