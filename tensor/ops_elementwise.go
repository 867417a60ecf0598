package tensor

import (
	"fmt"
	"slices"
)

// bcast describes a broadcast between an output and two operands after merging
// adjacent axes that can be walked as one. Strides are 0 along broadcast axes.
type bcast struct {
	shape  []int // output shape, coalesced
	sa, sb []int // operand strides in elements
}

// broadcastShapes returns the numpy-style broadcast of a and b, panicking with the
// op's name and both shapes when they are incompatible.
func broadcastShapes(op string, a, b []int) []int {
	r := max(len(a), len(b))
	out := make([]int, r)
	for i := range r {
		da, db := 1, 1
		if j := i - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (r - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db, db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			panic(fmt.Sprintf("tensor.%s: shapes %v and %v do not broadcast", op, a, b))
		}
	}
	return out
}

// stridesFor returns the strides of shape in when broadcast to out (0 on broadcast axes).
func stridesFor(in, out []int) []int {
	s := make([]int, len(out))
	st := 1
	for i := len(out) - 1; i >= 0; i-- {
		j := i - (len(out) - len(in))
		if j >= 0 && in[j] != 1 {
			s[i] = st
		}
		if j >= 0 {
			st *= in[j]
		}
	}
	return s
}

func newBcast(out, a, b []int) bcast {
	sa, sb := stridesFor(a, out), stridesFor(b, out)
	var p bcast
	for i, d := range out {
		if d == 1 {
			continue // size-1 axes move no operand
		}
		// Merge axis i into the previous kept axis when both operands step through
		// the pair as through one axis.
		if l := len(p.shape) - 1; l >= 0 && p.sa[l] == sa[i]*d && p.sb[l] == sb[i]*d {
			p.shape[l] *= d
			p.sa[l], p.sb[l] = sa[i], sb[i]
			continue
		}
		p.shape = append(p.shape, d)
		p.sa = append(p.sa, sa[i])
		p.sb = append(p.sb, sb[i])
	}
	if len(p.shape) == 0 {
		p = bcast{shape: []int{1}, sa: []int{0}, sb: []int{0}}
	}
	return p
}

// rows returns how many inner rows the walk has and the inner row length.
func (p bcast) rows() (rows, inner int) {
	inner = p.shape[len(p.shape)-1]
	if inner == 0 {
		return 0, 0
	}
	return numel(p.shape) / inner, inner
}

// offsets returns the operand offsets of inner row r.
func (p bcast) offsets(r int) (ia, ib int) {
	for d := len(p.shape) - 2; d >= 0; d-- {
		i := r % p.shape[d]
		r /= p.shape[d]
		ia += i * p.sa[d]
		ib += i * p.sb[d]
	}
	return ia, ib
}

type binaryOp int

const (
	opAdd binaryOp = iota
	opSub
	opMul
	opDiv
)

var binaryNames = [...]string{"Add", "Sub", "Mul", "Div"}

// Add returns a + b with broadcasting.
func Add(a, b *Tensor) *Tensor { return binary(opAdd, a, b) }

// Sub returns a - b with broadcasting.
func Sub(a, b *Tensor) *Tensor { return binary(opSub, a, b) }

// Mul returns a ⊙ b with broadcasting.
func Mul(a, b *Tensor) *Tensor { return binary(opMul, a, b) }

// Div returns a / b with broadcasting.
func Div(a, b *Tensor) *Tensor { return binary(opDiv, a, b) }

func binary(op binaryOp, a, b *Tensor) *Tensor {
	name := binaryNames[op]
	shape := broadcastShapes(name, a.shape, b.shape)
	p := newBcast(shape, a.shape, b.shape)
	ad, bd := mustF32(name, a), mustF32(name, b)
	out := newTensor(false, shape...)
	binaryKernel(out.Data(), ad, bd, p, op)
	if !needsGrad(a, b) {
		return out
	}
	var saved []*Tensor
	switch op {
	case opMul:
		if wants(a) {
			saved = append(saved, b)
		}
		if wants(b) {
			saved = append(saved, a)
		}
	case opDiv:
		saved = append(saved, b)
		if wants(b) {
			saved = append(saved, a)
		}
	}
	as, bs := a.shape, b.shape
	ae, be := elemsOf(a), elemsOf(b)
	keepA, keepB := slices.Contains(saved, a), slices.Contains(saved, b)
	record(out, name, []*Tensor{a, b}, saved, func(dout []float32, dx gradFn) {
		// Only what was saved is read, through its storage: it may be packed (SetSavedBF16).
		ad, doneA := ae.f32If(keepA)
		bd, doneB := be.f32If(keepB)
		defer doneA()
		defer doneB()
		binaryBackward(op, dx(0), dx(1), dout, ad, bd, shape, as, bs)
	})
	return out
}

// binaryBackward accumulates the gradients of out = a op b (shapes out, as, bs) from
// dout into da and db (either may be nil).
func binaryBackward(op binaryOp, da, db, dout, ad, bd []float32, out, as, bs []int) {
	if da != nil {
		switch op {
		case opAdd, opSub:
			gradReduce(da, dout, nil, out, as, nil, 1)
		case opMul:
			gradReduce(da, dout, bd, out, as, bs, 1)
		default: // d(a/b)/da = 1/b: divide first, so that the terms round as a/b does
			t := CPU.alloc(F32, len(dout), false)
			binaryKernel(t.f32, dout, bd, newBcast(out, out, bs), opDiv)
			gradReduce(da, t.f32, nil, out, as, nil, 1)
			t.release()
		}
	}
	if db != nil {
		switch op {
		case opAdd:
			gradReduce(db, dout, nil, out, bs, nil, 1)
		case opSub:
			gradReduce(db, dout, nil, out, bs, nil, -1)
		case opMul:
			gradReduce(db, dout, ad, out, bs, as, 1)
		default: // d(a/b)/db = −a/b²: dout·((a/b)/b)
			t := CPU.alloc(F32, len(dout), false)
			binaryKernel(t.f32, ad, bd, newBcast(out, as, bs), opDiv)
			binaryKernel(t.f32, t.f32, bd, newBcast(out, out, bs), opDiv)
			gradReduce(db, dout, t.f32, out, bs, out, -1)
			t.release()
		}
	}
}

// Scale returns s·x.
func Scale(x *Tensor, s float32) *Tensor {
	xd := mustF32("Scale", x)
	out := newTensor(false, x.shape...)
	o := out.Data()
	parallelFor(len(o), 1<<15, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			o[i] = s * xd[i]
		}
	})
	if needsGrad(x) {
		record(out, "Scale", []*Tensor{x}, nil, func(dout []float32, dx gradFn) {
			d := dx(0)
			parallelFor(len(d), 2*kernelGrain, func(lo, hi int) { axpyRow(d[lo:hi], dout[lo:hi], s) })
		})
	}
	return out
}

// reduceShape returns x's shape with the given axes set to 1, and the normalised axes.
func reduceShape(op string, shape []int, axes []int) []int {
	out := slices.Clone(shape)
	if len(axes) == 0 {
		for i := range out {
			out[i] = 1
		}
		return out
	}
	for _, a := range axes {
		out[axis(a, len(shape), op)] = 1
	}
	return out
}

// Sum sums x over the given axes (all axes when none are given). With keepDim the
// reduced axes stay as size 1; otherwise they are removed.
func Sum(x *Tensor, keepDim bool, axes ...int) *Tensor { return reduce("Sum", x, keepDim, 1, axes) }

// Mean averages x over the given axes (all axes when none are given); see Sum.
func Mean(x *Tensor, keepDim bool, axes ...int) *Tensor {
	kept := reduceShape("Mean", x.shape, axes)
	return reduce("Mean", x, keepDim, float32(float64(numel(kept))/float64(max(x.Len(), 1))), axes)
}

func reduce(op string, x *Tensor, keepDim bool, scale float32, axes []int) *Tensor {
	kept := reduceShape(op, x.shape, axes)
	p := newBcast(x.shape, x.shape, kept)
	xd := mustF32(op, x)
	shape := kept
	if !keepDim {
		reduced := normAxes(axes, len(x.shape))
		shape = shape[:0:0]
		for i, d := range kept {
			if !slices.Contains(reduced, i) {
				shape = append(shape, d)
			}
		}
	}
	out := newTensor(true, shape...)
	o := out.Data()
	// float64 sums per output element, in a fixed order (see gradKernel).
	gradReduce(o, xd, nil, x.shape, kept, nil, scale)
	if needsGrad(x) {
		record(out, op, []*Tensor{x}, nil, func(dout []float32, dx gradFn) {
			d := dx(0)
			rows, n := p.rows()
			sb := p.sb[len(p.sb)-1]
			for r := range rows {
				ia, ib := p.offsets(r)
				for i := range n {
					d[ia+i] += scale * dout[ib+i*sb]
				}
			}
		})
	}
	return out
}

// normAxes returns axes normalised to [0, rank), or every axis when axes is empty.
func normAxes(axes []int, rank int) []int {
	if len(axes) == 0 {
		all := make([]int, rank)
		for i := range all {
			all[i] = i
		}
		return all
	}
	out := make([]int, len(axes))
	for i, a := range axes {
		out[i] = axis(a, rank, "reduce")
	}
	return out
}

// AddScalar returns x + c.
func AddScalar(x *Tensor, c float32) *Tensor {
	xd := mustF32("AddScalar", x)
	out := newTensor(false, x.shape...)
	o := out.Data()
	parallelFor(len(o), 1<<15, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			o[i] = xd[i] + c
		}
	})
	if needsGrad(x) {
		record(out, "AddScalar", []*Tensor{x}, nil, func(dout []float32, dx gradFn) { add(dx(0), dout) })
	}
	return out
}
