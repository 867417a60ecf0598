package tensor

import (
	"fmt"
	"slices"
)

// Reshape returns a view of x with a new shape of the same size; one dimension may be
// -1 and is inferred. It panics naming both shapes when the sizes differ.
func Reshape(x *Tensor, shape ...int) *Tensor {
	shape = slices.Clone(shape)
	infer, known := -1, 1
	for i, d := range shape {
		switch {
		case d == -1 && infer < 0:
			infer = i
		case d < 0:
			panic(fmt.Sprintf("tensor.Reshape: %v to %v (one -1 at most, no other negative size)", x.shape, shape))
		default:
			known *= d
		}
	}
	if infer >= 0 && known > 0 {
		shape[infer] = x.Len() / known
	}
	if numel(shape) != x.Len() {
		panic(fmt.Sprintf("tensor.Reshape: %v to %v", x.shape, shape))
	}
	return view(x, "Reshape", x.off, shape)
}

// view returns a tensor sharing x's storage from element off, recording a node that
// passes the gradient through to that region of x.
func view(x *Tensor, op string, off int, shape []int) *Tensor {
	s := x.live()
	s.retain()
	out := newView(s, off, shape)
	if needsGrad(x) {
		rel := off - x.off
		record(out, op, []*Tensor{x}, nil, func(dout []float32, dx gradFn) {
			add(dx(0)[rel:rel+len(dout)], dout)
		})
	}
	return out
}

// Permute returns a copy of x with its axes reordered: output axis i is input axis perm[i].
func Permute(x *Tensor, perm ...int) *Tensor {
	if len(perm) != x.Rank() {
		panic(fmt.Sprintf("tensor.Permute: permutation %v for shape %v", perm, x.shape))
	}
	shape := make([]int, len(perm))
	seen := make([]bool, len(perm))
	inStrides := contiguousStrides(x.shape)
	strides := make([]int, len(perm)) // input strides in output axis order
	for i, p := range perm {
		p = axis(p, x.Rank(), "Permute")
		if seen[p] {
			panic(fmt.Sprintf("tensor.Permute: permutation %v for shape %v repeats an axis", perm, x.shape))
		}
		seen[p] = true
		shape[i], strides[i] = x.shape[p], inStrides[p]
	}
	xd := mustF32("Permute", x)
	out := newTensor(false, shape...)
	gather(out.Data(), xd, shape, strides)
	if needsGrad(x) {
		record(out, "Permute", []*Tensor{x}, nil, func(dout []float32, dx gradFn) {
			scatterAdd(dx(0), dout, shape, strides)
		})
	}
	return out
}

// Transpose swaps axes a and b (a copy).
func Transpose(x *Tensor, a, b int) *Tensor {
	perm := make([]int, x.Rank())
	for i := range perm {
		perm[i] = i
	}
	a, b = axis(a, x.Rank(), "Transpose"), axis(b, x.Rank(), "Transpose")
	perm[a], perm[b] = perm[b], perm[a]
	return Permute(x, perm...)
}

func contiguousStrides(shape []int) []int {
	s := make([]int, len(shape))
	st := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = st
		st *= shape[i]
	}
	return s
}

// gather copies src, read with the given strides over shape, into contiguous dst.
func gather(dst, src []float32, shape, strides []int) {
	walkStrided(shape, strides, func(o, i, n, inner int) {
		d := dst[o : o+n]
		for j := range d {
			d[j] = src[i+j*inner]
		}
	})
}

// scatterAdd is gather's adjoint: dst (strided) += src (contiguous).
func scatterAdd(dst, src []float32, shape, strides []int) {
	walkStrided(shape, strides, func(o, i, n, inner int) {
		s := src[o : o+n]
		for j := range s {
			dst[i+j*inner] += s[j]
		}
	})
}

// walkStrided calls f for each innermost row of shape: the contiguous offset o, the
// strided offset i, the row length n and the inner stride.
func walkStrided(shape, strides []int, f func(o, i, n, inner int)) {
	if len(shape) == 0 {
		f(0, 0, 1, 0)
		return
	}
	r := len(shape) - 1
	n, inner := shape[r], strides[r]
	idx := make([]int, r)
	off := 0
	for o := 0; o < numel(shape); o += n {
		if n > 0 {
			f(o, off, n, inner)
		}
		for d := r - 1; d >= 0; d-- {
			idx[d]++
			off += strides[d]
			if idx[d] < shape[d] {
				break
			}
			off -= idx[d] * strides[d]
			idx[d] = 0
		}
	}
}

// Concat joins tensors along axis; all other dimensions must match.
func Concat(ax int, ts ...*Tensor) *Tensor {
	if len(ts) == 0 {
		panic("tensor.Concat: no tensors")
	}
	ax = axis(ax, ts[0].Rank(), "Concat")
	shape := slices.Clone(ts[0].shape)
	shape[ax] = 0
	for _, t := range ts {
		if t.Rank() != len(shape) {
			panic(fmt.Sprintf("tensor.Concat: shapes %v and %v", ts[0].shape, t.shape))
		}
		for i := range shape {
			if i != ax && t.shape[i] != ts[0].shape[i] {
				panic(fmt.Sprintf("tensor.Concat: shapes %v and %v differ off axis %d", ts[0].shape, t.shape, ax))
			}
		}
		shape[ax] += t.shape[ax]
	}
	outer := numel(shape[:ax])
	rowOut := numel(shape[ax:])
	out := newTensor(false, shape...)
	o := out.Data()
	at := 0
	for _, t := range ts {
		d := mustF32("Concat", t)
		row, off := numel(t.shape[ax:]), at
		parallelFor(outer, max(1, kernelGrain/max(row, 1)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				copy(o[r*rowOut+off:r*rowOut+off+row], d[r*row:r*row+row])
			}
		})
		at += row
	}
	if needsGrad(ts...) {
		record(out, "Concat", ts, nil, func(dout []float32, dx gradFn) {
			at := 0
			for i, t := range ts {
				row := numel(t.shape[ax:])
				if d := dx(i); d != nil {
					parallelFor(outer, max(1, kernelGrain/max(row, 1)), func(lo, hi int) {
						for r := lo; r < hi; r++ {
							axpyRow(d[r*row:r*row+row], dout[r*rowOut+at:r*rowOut+at+row], 1)
						}
					})
				}
				at += row
			}
		})
	}
	return out
}

// Slice returns x[..., start:end, ...] along axis. It is a view when every axis before
// ax has size 1, a copy otherwise.
func Slice(x *Tensor, ax, start, end int) *Tensor {
	ax = axis(ax, x.Rank(), "Slice")
	if start < 0 || end > x.shape[ax] || start > end {
		panic(fmt.Sprintf("tensor.Slice: [%d:%d] on axis %d of shape %v", start, end, ax, x.shape))
	}
	shape := append(make([]int, 0, 8), x.shape...)
	shape[ax] = end - start
	inner := numel(x.shape[ax+1:])
	outer := numel(x.shape[:ax])
	if outer == 1 {
		return view(x, "Slice", x.off+start*inner, shape)
	}
	rowIn, rowOut := x.shape[ax]*inner, shape[ax]*inner
	xd := mustF32("Slice", x)
	out := newTensor(false, shape...)
	o := out.Data()
	parallelFor(outer, max(1, kernelGrain/max(rowOut, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			copy(o[r*rowOut:(r+1)*rowOut], xd[r*rowIn+start*inner:])
		}
	})
	if needsGrad(x) {
		record(out, "Slice", []*Tensor{x}, nil, func(dout []float32, dx gradFn) {
			d := dx(0)
			parallelFor(outer, max(1, kernelGrain/max(rowOut, 1)), func(lo, hi int) {
				for r := lo; r < hi; r++ {
					axpyRow(d[r*rowIn+start*inner:r*rowIn+start*inner+rowOut], dout[r*rowOut:(r+1)*rowOut], 1)
				}
			})
		})
	}
	return out
}

// Split cuts x along axis into pieces of the given sizes, which must add up to the
// axis length.
func Split(x *Tensor, ax int, sizes ...int) []*Tensor {
	ax = axis(ax, x.Rank(), "Split")
	total := 0
	for _, s := range sizes {
		total += s
	}
	if total != x.shape[ax] {
		panic(fmt.Sprintf("tensor.Split: sizes %v for axis %d of shape %v", sizes, ax, x.shape))
	}
	out := make([]*Tensor, len(sizes))
	at := 0
	for i, s := range sizes {
		out[i] = Slice(x, ax, at, at+s)
		at += s
	}
	return out
}

// Chunk cuts x along axis into n equal pieces; the axis length must divide by n.
func Chunk(x *Tensor, n, ax int) []*Tensor {
	a := axis(ax, x.Rank(), "Chunk")
	if n <= 0 || x.shape[a]%n != 0 {
		panic(fmt.Sprintf("tensor.Chunk: %d chunks of axis %d of shape %v", n, ax, x.shape))
	}
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = x.shape[a] / n
	}
	return Split(x, a, sizes...)
}
