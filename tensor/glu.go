package tensor

import (
	"fmt"
	"slices"
)

// GateAct is the activation of a gated linear unit.
type GateAct int

const (
	GateSiLU     GateAct = iota // SwiGLU (Llama's MLP)
	GateGELU                    // GEGLU with exact GELU (diffusers' GEGLU)
	GateGELUTanh                // GEGLU with the tanh approximation
)

// GatedAct returns value ⊙ act(gate), the gated linear unit of SwiGLU and GEGLU, for
// value and gate of one shape. It saves value and gate only: backward recomputes
// act(gate) and act′(gate) in blocks, where the composition Mul(value, act(gate))
// also keeps act(gate), a third tensor of the same size. The results equal the
// composition's bit for bit.
func GatedAct(value, gate *Tensor, act GateAct) *Tensor {
	if !slices.Equal(value.shape, gate.shape) {
		panic(fmt.Sprintf("tensor.GatedAct: value %v and gate %v differ", value.shape, gate.shape))
	}
	vd, gd := mustF32("GatedAct", value), mustF32("GatedAct", gate)
	out := newTensor(false, value.shape...)
	od := out.Data()
	actForward(od, gd, act)
	parallelFor(len(od), kernelGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			od[i] = vd[i] * od[i]
		}
	})
	if !needsGrad(value, gate) {
		return out
	}
	ve, ge := elemsOf(value), elemsOf(gate)
	record(out, "GatedAct", []*Tensor{value, gate}, []*Tensor{value, gate}, func(dout []float32, dx gradFn) {
		gatedActBackward(dx(0), dx(1), dout, ve, ge, act)
	})
	return out
}

// actForward writes act(x) into out.
func actForward(out, x []float32, act GateAct) {
	switch act {
	case GateSiLU:
		siluForward(out, x)
	case GateGELU, GateGELUTanh:
		geluForward(out, x, act == GateGELUTanh)
	default:
		panic(fmt.Sprintf("tensor: gate activation %d", act))
	}
}

// actBackward accumulates dout ⊙ act′(x) into dx.
func actBackward(dx, dout, x []float32, act GateAct) {
	if act == GateSiLU {
		siluBackward(dx, dout, x)
		return
	}
	geluBackward(dx, dout, x, act == GateGELUTanh)
}

// gatedActBackward accumulates dvalue += dout ⊙ act(gate) and dgate += (dout ⊙ value)
// ⊙ act′(gate) (either may be nil), a block of kernelGrain elements at a time so that
// the recomputed terms, and value and gate when they are packed (SetSavedBF16), need
// no full-size buffer. Each block is at most one kernel grain, so the activation
// kernels run it inline.
func gatedActBackward(dvalue, dgate, dout []float32, value, gate elems, act GateAct) {
	parallelFor(len(dout), kernelGrain, func(lo, hi int) {
		var buf, vbuf, gbuf [kernelGrain]float32
		for b := lo; b < hi; b += kernelGrain {
			e := min(b+kernelGrain, hi)
			t, g := buf[:e-b], gate.block(b, e, gbuf[:])
			if dvalue != nil {
				actForward(t, g, act)
				for i, a := range t {
					dvalue[b+i] += float32(dout[b+i] * a)
				}
			}
			if dgate != nil {
				v := value.block(b, e, vbuf[:])
				for i := range t {
					t[i] = dout[b+i] * v[i]
				}
				actBackward(dgate[b:e], t, g, act)
			}
		}
	})
}
