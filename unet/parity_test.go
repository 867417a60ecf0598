package unet

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/difftune/difftune/internal/golden"
	"github.com/difftune/difftune/internal/parity"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// Tolerances, from the golden README: float32 and float64 references differ by up to
// 5e-6 of max|value| on this model, so outputs are compared at 1e-5 and gradients,
// which sum over many more float32 products, at 1e-4 of each tensor's max|value|.
const (
	outTol  = 1e-5
	gradTol = 1e-4
)

// goldenModel loads the reference config and weights.
func goldenModel(t *testing.T) (*UNet2DConditionModel, string) {
	return parity.Model(t, "unet", LoadConfig, New)
}

// goldenInputs are the reference call's tensors.
type goldenInputs struct {
	sample, context, g *tensor.Tensor
	timesteps          []float32
}

func readInputs(t *testing.T, io *safetensors.File) goldenInputs {
	t.Helper()
	ts := parity.Read(t, io, "timestep")
	defer ts.Release()
	in := goldenInputs{sample: parity.Read(t, io, "sample"), context: parity.Read(t, io, "encoder_hidden_states"),
		g: parity.Read(t, io, "g"), timesteps: slices.Clone(ts.Data())}
	in.sample.SetRequiresGrad(true)
	in.context.SetRequiresGrad(true)
	t.Cleanup(func() { tensor.Release(in.sample, in.context, in.g) })
	return in
}

// TestUNetParity runs the reference forward call, model(sample, timestep,
// encoder_hidden_states).sample, and its vector-Jacobian product with cotangent g,
// and compares the output, both input gradients and every parameter gradient. It
// also checks that backward frees every saved activation and that nothing leaks.
func TestUNetParity(t *testing.T) {
	for _, ckpt := range []bool{false, true} {
		name := "plain"
		if ckpt {
			name = "checkpointed"
		}
		t.Run(name, func(t *testing.T) {
			m, dir := goldenModel(t)
			m.GradientCheckpointing = ckpt
			io := parity.Open(t, filepath.Join(dir, "io.safetensors"))
			in := readInputs(t, io)
			base := tensor.CPU.Stats().Live

			out := m.Forward(in.sample, in.timesteps, in.context)
			parity.Expect(t, "out", out, parity.Read(t, io, "out"), outTol)
			tensor.BackwardWith([]*tensor.Tensor{out}, []*tensor.Tensor{in.g})
			out.Release()
			if s := tensor.SavedBytes(); s != 0 {
				t.Fatalf("%d saved bytes remain after backward", s)
			}
			parity.Expect(t, "grad_sample", in.sample.Grad(), parity.Read(t, io, "grad_sample"), gradTol)
			parity.Expect(t, "grad_encoder_hidden_states", in.context.Grad(), parity.Read(t, io, "grad_encoder_hidden_states"), gradTol)

			grads := parity.Open(t, filepath.Join(dir, "param_grads.safetensors"))
			ps := m.Params("")
			if len(ps) != len(grads.Names()) {
				t.Fatalf("%d parameters, %d reference gradients", len(ps), len(grads.Names()))
			}
			worst, worstName := golden.Diff{}, ""
			var gradBytes int64
			for _, p := range ps {
				g := p.T().Grad()
				if g == nil {
					t.Fatalf("%s: no gradient", p.Name)
				}
				gradBytes += g.Bytes()
				want := parity.Read(t, grads, p.Name)
				d := golden.Compare(g.Float32s(), want.Float32s())
				want.Release()
				if d.MaxRel > gradTol {
					t.Errorf("grad %s: %v exceeds %.0e", p.Name, d, gradTol)
				}
				if d.MaxRel >= worst.MaxRel {
					worst, worstName = d, p.Name
				}
			}
			t.Logf("parameter gradients (%d): worst %s: %v", len(ps), worstName, worst)

			// Gradients of the inputs and parameters are the only storage left.
			gradBytes += in.sample.Grad().Bytes() + in.context.Grad().Bytes()
			if live := tensor.CPU.Stats().Live; live != base+gradBytes {
				t.Fatalf("live bytes after release = %d, want baseline %d + gradients %d", live, base, gradBytes)
			}
			in.sample.ZeroGrad()
			in.context.ZeroGrad()
			for _, p := range ps {
				p.T().ZeroGrad()
			}
			if live := tensor.CPU.Stats().Live; live != base {
				t.Fatalf("live bytes after ZeroGrad = %d, want %d", live, base)
			}
		})
	}
}
