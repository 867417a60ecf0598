package tensor

import (
	"fmt"
	"slices"
	"sync/atomic"
)

// gradFn returns the gradient accumulator of an op's i-th input as a float32 slice,
// or nil when that input needs no gradient. Backward closures add into it.
type gradFn func(i int) []float32

// node is one recorded op: its inputs, what it saved, and its backward.
type node struct {
	op       string
	inputs   []*Tensor
	needs    []bool // whether input i needed a gradient when the op was recorded
	saved    []*Storage
	backward func(dout []float32, dx gradFn)
	freed    bool
	// Backing arrays for needs and saved: most ops have few inputs, and a node is then
	// one Go allocation.
	needsArr [4]bool
	savedArr [4]*Storage
}

// noGrad counts nested NoGrad calls. Recording is process-wide, as in PyTorch's grad
// mode: do not run NoGrad on one goroutine while another builds a graph.
var noGrad atomic.Int32

// NoGrad runs f without recording any op: nothing is saved and results require no
// gradient. Inference and sampling run under it.
func NoGrad(f func()) {
	noGrad.Add(1)
	defer noGrad.Add(-1)
	f()
}

// GradEnabled reports whether ops are being recorded.
func GradEnabled() bool { return noGrad.Load() == 0 }

// needsGrad reports whether an op on these inputs must be recorded.
func needsGrad(ins ...*Tensor) bool {
	if !GradEnabled() {
		return false
	}
	for _, t := range ins {
		if t != nil && t.requiresGrad {
			return true
		}
	}
	return false
}

// wants reports whether gradient must flow to t.
func wants(t *Tensor) bool { return t != nil && t.requiresGrad && GradEnabled() }

// record attaches a node to out. inputs are the op's tensor inputs in the order the
// backward's gradFn indexes them; saved are the tensors backward reads, retained until
// the node is freed.
func record(out *Tensor, op string, inputs []*Tensor, saved []*Tensor, backward func(dout []float32, dx gradFn)) {
	n := &node{op: op, inputs: inputs, backward: backward}
	n.needs, n.saved = n.needsArr[:0], n.savedArr[:0]
	if len(inputs) > len(n.needsArr) {
		n.needs = make([]bool, 0, len(inputs))
	}
	n.needs = n.needs[:len(inputs)]
	for i, in := range inputs {
		// What the op saved was decided by which inputs needed gradients now; a
		// parameter unfrozen before Backward must not make backward read an input
		// that was never kept.
		n.needs[i] = in != nil && in.requiresGrad
	}
	for _, s := range saved {
		if s == nil {
			continue
		}
		st := s.live()
		if slices.Contains(n.saved, st) {
			continue
		}
		st.save()
		n.saved = append(n.saved, st)
	}
	out.node = n
	out.requiresGrad = true
	CPU.traceAt(op)
}

func (n *node) free() {
	for _, s := range n.saved {
		s.unsave()
	}
	n.saved = nil
	n.freed = true
}

// SavedBytes returns the activation bytes the CPU device currently keeps for backward,
// each storage counted once (see MemStats.Saved).
func SavedBytes() int64 { return CPU.Stats().Saved }

// Backward backpropagates from a one-element loss, accumulating into the Grad of every
// leaf that requires it, and frees the graph. It panics if loss has more than one
// element or has no graph.
func Backward(loss *Tensor) {
	if loss.Len() != 1 {
		panic(fmt.Sprintf("tensor.Backward: loss has shape %v; use BackwardWith for non-scalar outputs", loss.shape))
	}
	g := Full(1, loss.shape...)
	defer g.Release()
	BackwardWith([]*Tensor{loss}, []*Tensor{g})
}

// BackwardWith backpropagates the vector-Jacobian product L = Σ_k <outs[k], grads[k]>
// and frees the graph. grads[k] must have outs[k]'s shape; it is not consumed.
func BackwardWith(outs, grads []*Tensor) {
	if len(outs) != len(grads) {
		panic(fmt.Sprintf("tensor.BackwardWith: %d outputs, %d gradients", len(outs), len(grads)))
	}
	acc := map[*Tensor]*Tensor{}
	dx := func(t *Tensor) []float32 {
		if t == nil || !t.requiresGrad {
			return nil
		}
		if t.node == nil { // leaf: persistent gradient
			if t.st == nil {
				return nil // released by its owner: nobody can read a gradient
			}
			if t.grad == nil {
				t.grad = Zeros(t.shape...)
			}
			return t.grad.Data()
		}
		g := acc[t]
		if g == nil {
			g = newTensor(true, t.shape...)
			acc[t] = g
		}
		return g.Data()
	}
	recorded := false
	for _, o := range outs {
		recorded = recorded || o.node != nil
	}
	if !recorded {
		panic("tensor.BackwardWith: no output has a graph (no input requires a gradient, or it ran under NoGrad)")
	}
	order := topoOrder(outs) // panics on a freed graph before anything is allocated
	for k, o := range outs {
		if numel(grads[k].shape) != o.Len() {
			panic(fmt.Sprintf("tensor.BackwardWith: gradient %v for output %v", grads[k].shape, o.shape))
		}
		if d := dx(o); d != nil {
			add(d, grads[k].Data())
		}
	}
	var n *node // the node being run; one closure serves them all
	nodeDx := func(i int) []float32 {
		if !n.needs[i] {
			return nil
		}
		return dx(n.inputs[i])
	}
	for _, t := range order {
		n = t.node
		CPU.traceAt(n.op)
		g := acc[t]
		delete(acc, t)
		if g != nil {
			n.backward(g.Data(), nodeDx)
			g.Release()
		}
		n.free()
	}
	for _, g := range acc { // gradients of tensors whose graph was already freed
		g.Release()
	}
}

// topoOrder returns the non-leaf tensors reachable from outs, outputs first, each after
// every tensor that consumes it.
func topoOrder(outs []*Tensor) []*Tensor {
	var order []*Tensor
	seen := map[*Tensor]bool{}
	type frame struct {
		t    *Tensor
		next int
	}
	var stack []frame
	for _, o := range outs {
		if o.node == nil || seen[o] {
			continue
		}
		if o.node.freed {
			panic("tensor.Backward: graph already freed (Backward or DropGraph ran on it)")
		}
		seen[o] = true
		stack = append(stack, frame{t: o})
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.next < len(f.t.node.inputs) {
				in := f.t.node.inputs[f.next]
				f.next++
				if in != nil && in.node != nil && in.node.freed {
					panic(fmt.Sprintf("tensor.Backward: input %d of %s was already freed by an earlier Backward or DropGraph; "+
						"run one BackwardWith over every output that shares it", f.next-1, f.t.node.op))
				}
				if in != nil && in.node != nil && !seen[in] {
					seen[in] = true
					stack = append(stack, frame{t: in})
				}
				continue
			}
			order = append(order, f.t)
			stack = stack[:len(stack)-1]
		}
	}
	slices.Reverse(order)
	return order
}

// DropGraph frees the graph behind outs without computing gradients, releasing every
// saved tensor. Use it when a recorded forward pass is abandoned.
func DropGraph(outs ...*Tensor) {
	for _, t := range topoOrder(outs) {
		t.node.free()
	}
}

// Checkpoint runs f on inputs without saving anything inside it and records one node
// that keeps only the inputs; Backward runs f again with recording and backpropagates
// through the recomputed graph. f must be deterministic (dropout seeds fixed) and may
// use parameters that require gradients; they receive them during Backward.
func Checkpoint(f func(in []*Tensor) *Tensor, inputs ...*Tensor) *Tensor {
	if !GradEnabled() {
		return f(inputs)
	}
	var out *Tensor
	NoGrad(func() { out = f(inputs) })
	// Keep the inputs' storage and flags, not the *Tensors: callers may release their
	// inputs after the forward pass, as with any other op.
	kept := make([]elems, len(inputs))
	shapes := make([][]int, len(inputs))
	grads := make([]bool, len(inputs))
	for i, in := range inputs {
		kept[i], shapes[i], grads[i] = elemsOf(in), slices.Clone(in.shape), in.requiresGrad
	}
	record(out, "checkpoint", inputs, inputs, func(dout []float32, dx gradFn) {
		leaves := make([]*Tensor, len(inputs))
		for i, e := range kept {
			e.st.unpack() // recomputation reads its inputs as float32 (SetSavedBF16)
			e.st.retain()
			leaves[i] = &Tensor{st: e.st, off: e.off, shape: shapes[i], requiresGrad: grads[i]}
		}
		re := f(leaves)
		if re.node != nil { // nothing inside may need a gradient (a frozen block)
			g := FromFloat32(dout, re.shape...)
			BackwardWith([]*Tensor{re}, []*Tensor{g})
			g.Release()
		}
		re.Release()
		for i, l := range leaves {
			if d := dx(i); d != nil && l.grad != nil {
				add(d, l.grad.Data())
			}
			l.Release()
		}
	})
	return out
}
