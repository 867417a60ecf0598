package tensor

import "slices"

// Recompute is Checkpoint for inputs that the caller releases as soon as it returns,
// as the ownership rule allows for every other op. Checkpoint's backward detaches
// the input *Tensor values themselves, so it panics ("use of a released tensor") when
// an input was released in between; Recompute captures each input's storage, offset,
// shape and gradient flag when it records (the node keeps the storage alive, as for
// any saved tensor) and rebuilds the leaves from them. Otherwise it is Checkpoint: f
// runs without saving anything, one node keeps only the inputs, and Backward runs f
// again with recording and backpropagates through the recomputed graph. f must be
// deterministic and may use parameters that require gradients.
func Recompute(f func(in []*Tensor) *Tensor, inputs ...*Tensor) *Tensor {
	if !GradEnabled() {
		return f(inputs)
	}
	type held struct {
		st    *Storage
		off   int
		shape []int
		grad  bool
	}
	hs := make([]held, len(inputs))
	for i, in := range inputs {
		hs[i] = held{in.live(), in.off, slices.Clone(in.shape), in.requiresGrad}
	}
	var out *Tensor
	NoGrad(func() { out = f(inputs) })
	record(out, "recompute", inputs, inputs, func(dout []float32, dx gradFn) {
		leaves := make([]*Tensor, len(hs))
		for i, h := range hs {
			h.st.retain()
			leaves[i] = &Tensor{st: h.st, off: h.off, shape: h.shape, requiresGrad: h.grad}
		}
		re := f(leaves)
		g := FromFloat32(dout, re.shape...)
		BackwardWith([]*Tensor{re}, []*Tensor{g})
		Release(g, re)
		for i, l := range leaves {
			if d := dx(i); d != nil && l.grad != nil {
				add(d, l.grad.Data())
			}
			l.Release()
		}
	})
	return out
}
