package train

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/tensor"
)

// Weights is what a Trainer optimises: an adapter set (*adapters.Set) or a whole model
// (*FullModel).
type Weights interface {
	// Params names the trained tensors, as the resumable state stores them.
	Params() []nn.Param
	// Trainable returns the tensors the optimizer updates.
	Trainable() []*tensor.Tensor
	// Summary identifies the run's weights: a resumed run must match it.
	Summary() string
	// SetStep seeds the step's dropout masks; Train switches dropout on or off.
	SetStep(step uint64)
	Train(on bool)
}

// FullModel trains every weight of a difftune model (a pipeline with a Spec): the
// denoiser and the text encoder. It is pretraining's Weights.
type FullModel struct {
	P       *pipeline.Pipeline
	summary string
}

// NewFullModel makes all of p's weights trainable.
func NewFullModel(p *pipeline.Pipeline) (*FullModel, error) {
	if p.Spec == nil {
		return nil, fmt.Errorf("full training: %s is not a difftune model; full training builds one from a spec (difftune pretrain)", p.Name)
	}
	nn.SetTrainable(p.Denoiser, true)
	nn.SetTrainable(p.Text, true)
	spec, _ := json.Marshal(p.Spec)
	sum := sha256.Sum256(spec)
	f := &FullModel{P: p}
	var n int64
	for _, t := range f.Trainable() {
		n += int64(t.Len())
	}
	f.summary = fmt.Sprintf("full training of %s: %d parameters (spec sha256 %x)", p.Spec.Name, n, sum[:8])
	return f, nil
}

func (f *FullModel) Params() []nn.Param {
	return append(f.P.Text.Params("text."), f.P.Denoiser.Params("denoiser.")...)
}

func (f *FullModel) Trainable() []*tensor.Tensor {
	var out []*tensor.Tensor
	for _, p := range f.Params() {
		out = append(out, p.T())
	}
	return out
}

func (f *FullModel) Summary() string { return f.summary }

// SetStep and Train do nothing: a difftune model has no dropout.
func (f *FullModel) SetStep(uint64) {}
func (f *FullModel) Train(bool)     {}
