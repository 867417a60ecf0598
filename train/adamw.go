package train

import (
	"fmt"
	"math"

	"github.com/difftune/difftune/tensor"
)

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter), float32 moments,
// bias correction as torch.optim.AdamW: p ← p − lr·(m̂/(√v̂ + ε) + wd·p).
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	params                             []*tensor.Tensor
	m, v                               []*tensor.Tensor
	step                               int
}

// NewAdamW returns an optimizer for params with PyTorch's defaults for the betas and
// epsilon (0.9, 0.999, 1e-8). It panics if a parameter is not trainable float32.
func NewAdamW(params []*tensor.Tensor, lr, weightDecay float64) *AdamW {
	o := &AdamW{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay, params: params}
	for _, p := range params {
		if !p.RequiresGrad() || p.DType() != tensor.F32 {
			panic(fmt.Sprintf("train.NewAdamW: parameter %v is not a trainable F32 tensor", p.Shape()))
		}
		o.m = append(o.m, tensor.Zeros(p.Shape()...))
		o.v = append(o.v, tensor.Zeros(p.Shape()...))
	}
	return o
}

// StateBytes returns the bytes of the optimizer's moments.
func (o *AdamW) StateBytes() int64 {
	var n int64
	for i := range o.m {
		n += o.m[i].Bytes() + o.v[i].Bytes()
	}
	return n
}

// Step applies one update from the parameters' gradients (a parameter without a
// gradient this step is left alone, its moments too) and releases the gradients.
func (o *AdamW) Step() {
	o.step++
	b1, b2 := o.Beta1, o.Beta2
	c1 := 1 - math.Pow(b1, float64(o.step))
	c2 := 1 - math.Pow(b2, float64(o.step))
	decay := float32(1 - o.LR*o.WeightDecay)
	stepSize := float32(o.LR / c1)
	rc2 := float32(1 / math.Sqrt(c2))
	eps := float32(o.Eps)
	fb1, fb2 := float32(b1), float32(b2)
	for i, p := range o.params {
		g := p.Grad()
		if g == nil {
			continue
		}
		tensor.AdamWUpdate(p.Data(), g.Data(), o.m[i].Data(), o.v[i].Data(), fb1, fb2, eps, decay, stepSize, rc2)
		p.ZeroGrad()
	}
}

// Release frees the optimizer state.
func (o *AdamW) Release() {
	tensor.Release(o.m...)
	tensor.Release(o.v...)
	o.m, o.v = nil, nil
}

// Moments returns the first and second moment tensors, one per parameter (for saving
// and restoring a run).
func (o *AdamW) Moments() (m, v []*tensor.Tensor) { return o.m, o.v }

// Steps returns how many updates were applied (the bias-correction counter).
func (o *AdamW) Steps() int { return o.step }

// SetSteps restores the update counter of a resumed run.
func (o *AdamW) SetSteps(n int) { o.step = n }
