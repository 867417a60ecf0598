package tensor

// Recompute is Checkpoint for callers that follow the release rule: the inputs may be
// released as soon as it returns. Checkpoint rebuilds its recompute leaves from the
// input *Tensors during Backward (in.Detach), which panics once the caller has released
// them — the usual case for a block input such as the previous block's output.
// Recompute takes the storages, offsets and shapes when it records, so the node's
// saved references (released by Backward or DropGraph) are all that keep the inputs.
//
// f runs without recording; Backward runs it again on leaves over the saved inputs,
// with recording, and backpropagates through that graph. f must be deterministic and
// must not release its inputs.
func Recompute(f func(in []*Tensor) *Tensor, inputs ...*Tensor) *Tensor {
	if !GradEnabled() {
		return f(inputs)
	}
	var out *Tensor
	NoGrad(func() { out = f(inputs) })
	type leaf struct {
		st    *Storage
		off   int
		shape []int
		grad  bool
	}
	leaves := make([]leaf, len(inputs))
	for i, in := range inputs {
		leaves[i] = leaf{st: in.live(), off: in.off, shape: in.shape, grad: in.requiresGrad}
	}
	record(out, "recompute", inputs, inputs, func(dout []float32, dx gradFn) {
		ins := make([]*Tensor, len(leaves))
		for i, l := range leaves {
			l.st.retain() // the node's saved reference keeps it alive until here
			ins[i] = &Tensor{st: l.st, off: l.off, shape: l.shape, requiresGrad: l.grad}
		}
		re := f(ins)
		g := FromFloat32(dout, re.shape...)
		BackwardWith([]*Tensor{re}, []*Tensor{g})
		Release(g, re)
		for i, in := range ins {
			if d := dx(i); d != nil && in.grad != nil {
				add(d, in.grad.Data())
			}
			in.Release()
		}
	})
	return out
}
