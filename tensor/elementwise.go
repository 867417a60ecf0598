package tensor

// This file holds the kernels behind the broadcasting binary ops (ops_elementwise.go):
// the forward binaryKernel, specialised per op so that the inner loops are plain
// slice loops with no call per element, and the backward gradKernel, which sums an
// op's output gradient into an operand, reducing over the axes it was broadcast
// along. A plain reference stays next to each (binaryRef, gradRef); the tests
// compare them over odd sizes and broadcast shapes.

// binaryRows holds the row loop of each op: o[i] = x[i·sx] op y[i·sy]. The
// strides are 0 (broadcast) or 1 on the coalesced inner axis; other values take the
// general loop.
var binaryRows = [...]func(o, x, y []float32, sx, sy int){addRow, subRow, mulRow, divRow}

func addRow(o, x, y []float32, sx, sy int) {
	n := binaryRowFast(opAdd, o, x, y, sx, sy)
	o, x, y = o[n:], x[n*sx:], y[n*sy:]
	switch {
	case sx == 1 && sy == 1:
		x, y := x[:len(o)], y[:len(o)]
		for i := range o {
			o[i] = x[i] + y[i]
		}
	case sx == 1 && sy == 0:
		x, c := x[:len(o)], y[0]
		for i := range o {
			o[i] = x[i] + c
		}
	case sx == 0 && sy == 1:
		c, y := x[0], y[:len(o)]
		for i := range o {
			o[i] = c + y[i]
		}
	default:
		for i := range o {
			o[i] = x[i*sx] + y[i*sy]
		}
	}
}

func subRow(o, x, y []float32, sx, sy int) {
	n := binaryRowFast(opSub, o, x, y, sx, sy)
	o, x, y = o[n:], x[n*sx:], y[n*sy:]
	switch {
	case sx == 1 && sy == 1:
		x, y := x[:len(o)], y[:len(o)]
		for i := range o {
			o[i] = x[i] - y[i]
		}
	case sx == 1 && sy == 0:
		x, c := x[:len(o)], y[0]
		for i := range o {
			o[i] = x[i] - c
		}
	case sx == 0 && sy == 1:
		c, y := x[0], y[:len(o)]
		for i := range o {
			o[i] = c - y[i]
		}
	default:
		for i := range o {
			o[i] = x[i*sx] - y[i*sy]
		}
	}
}

func mulRow(o, x, y []float32, sx, sy int) {
	n := binaryRowFast(opMul, o, x, y, sx, sy)
	o, x, y = o[n:], x[n*sx:], y[n*sy:]
	switch {
	case sx == 1 && sy == 1:
		x, y := x[:len(o)], y[:len(o)]
		for i := range o {
			o[i] = x[i] * y[i]
		}
	case sx == 1 && sy == 0:
		x, c := x[:len(o)], y[0]
		for i := range o {
			o[i] = x[i] * c
		}
	case sx == 0 && sy == 1:
		c, y := x[0], y[:len(o)]
		for i := range o {
			o[i] = c * y[i]
		}
	default:
		for i := range o {
			o[i] = x[i*sx] * y[i*sy]
		}
	}
}

func divRow(o, x, y []float32, sx, sy int) {
	n := binaryRowFast(opDiv, o, x, y, sx, sy)
	o, x, y = o[n:], x[n*sx:], y[n*sy:]
	switch {
	case sx == 1 && sy == 1:
		x, y := x[:len(o)], y[:len(o)]
		for i := range o {
			o[i] = x[i] / y[i]
		}
	case sx == 1 && sy == 0:
		// x/c, not x·(1/c): the result must round as the reference's division does.
		x, c := x[:len(o)], y[0]
		for i := range o {
			o[i] = x[i] / c
		}
	case sx == 0 && sy == 1:
		c, y := x[0], y[:len(o)]
		for i := range o {
			o[i] = c / y[i]
		}
	default:
		for i := range o {
			o[i] = x[i*sx] / y[i*sy]
		}
	}
}

// parallelRows runs body(r, lo, hi) over every row r < rows of length n, split into
// column blocks of at most kernelGrain elements so that a single long row (a
// same-shape op coalesces to one) still uses every worker.
func parallelRows(rows, n int, body func(r, lo, hi int)) {
	if rows == 0 || n == 0 {
		return
	}
	blk := min(n, kernelGrain)
	per := (n + blk - 1) / blk
	parallelFor(rows*per, max(1, kernelGrain/blk), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			r, c := t/per, t%per*blk
			body(r, c, min(c+blk, n))
		}
	})
}

// binaryKernel computes out = a op b elementwise under the broadcast p. Every output
// element is computed exactly as binaryRef computes it.
func binaryKernel(out, a, b []float32, p bcast, op binaryOp) {
	rows, n := p.rows()
	sa, sb := p.sa[len(p.sa)-1], p.sb[len(p.sb)-1]
	row := binaryRows[op]
	parallelRows(rows, n, func(r, lo, hi int) {
		ia, ib := p.offsets(r)
		row(out[r*n+lo:r*n+hi], a[ia+lo*sa:], b[ib+lo*sb:], sa, sb)
	})
}

// binaryRef is the plain reference for binaryKernel: one element at a time, with
// the operand offsets computed from the full index.
func binaryRef(out, a, b []float32, shape, aShape, bShape []int, op binaryOp) {
	sa, sb := stridesFor(aShape, shape), stridesFor(bShape, shape)
	for o := range out {
		ia, ib := 0, 0
		for d, rem := len(shape)-1, o; d >= 0; d-- {
			i := rem % shape[d]
			rem /= shape[d]
			ia += i * sa[d]
			ib += i * sb[d]
		}
		x, y := a[ia], b[ib]
		switch op {
		case opAdd:
			out[o] = x + y
		case opSub:
			out[o] = x - y
		case opMul:
			out[o] = x * y
		default:
			out[o] = x / y
		}
	}
}

// ---------------------------------------------------------------------------------
// Gradient reduction.

// maxWalkAxes bounds the axes a gradWalk keeps after merging (a rank-8 broadcast
// with no mergeable neighbours); newGradWalk reports ok = false beyond it and the
// callers fall back to gradRef. Fixed arrays keep a walk free of heap allocations.
const maxWalkAxes = 8

// maxRank bounds the rank newGradWalk takes (its stride scratch is on the stack).
const maxRank = 32

// walkAxes are outer axes of a gradWalk with the strides of the output (o), the
// factor y and the destination (d) along each.
type walkAxes struct {
	n                 int
	shape, so, sy, sd [maxWalkAxes]int
}

// size returns the number of multi-indices over the axes.
func (w *walkAxes) size() int {
	s := 1
	for _, d := range w.shape[:w.n] {
		s *= d
	}
	return s
}

// at returns the three offsets of multi-index number r (row-major) over the axes.
func (w *walkAxes) at(r int) (o, y, d int) {
	for i := w.n - 1; i >= 0; i-- {
		j := r % w.shape[i]
		r /= w.shape[i]
		o += j * w.so[i]
		y += j * w.sy[i]
		d += j * w.sd[i]
	}
	return o, y, d
}

func (w *walkAxes) push(d, so, sy, sd int) {
	w.shape[w.n], w.so[w.n], w.sy[w.n], w.sd[w.n] = d, so, sy, sd
	w.n++
}

// gradWalk describes how the elements of an op's output map onto a destination
// operand (whose gradient is accumulated) and a factor y, both broadcast to the
// output. After merging axes, the last output axis is the inner row; the outer axes
// are split into keep (the destination moves along them) and red (it is broadcast
// along them: their contributions are summed).
type gradWalk struct {
	n          int // inner row length
	incY, incD int // inner strides of y and of the destination
	keep, red  walkAxes
}

// newGradWalk returns the walk of an output of shape out into a destination of shape
// dst with a factor of shape y (both broadcastable to out; y may be nil for none). ok
// is false when more than maxWalkAxes axes remain after merging.
func newGradWalk(out, dst, y []int) (w gradWalk, ok bool) {
	if y == nil {
		y = dst
	}
	if len(out) > maxRank {
		return w, false
	}
	// Strides of out (contiguous), y and dst along each output axis (0 where
	// broadcast); then merge, front to back, axes that every operand walks as one.
	var so, sy, sd [maxRank]int
	for i, st := len(out)-1, [3]int{1, 1, 1}; i >= 0; i-- {
		so[i] = st[0]
		st[0] *= out[i]
		if j := i - (len(out) - len(y)); j >= 0 {
			if y[j] != 1 {
				sy[i] = st[1]
			}
			st[1] *= y[j]
		}
		if j := i - (len(out) - len(dst)); j >= 0 {
			if dst[j] != 1 {
				sd[i] = st[2]
			}
			st[2] *= dst[j]
		}
	}
	var all walkAxes
	for i, d := range out {
		if d == 1 {
			continue
		}
		if l := all.n - 1; l >= 0 && all.so[l] == so[i]*d && all.sy[l] == sy[i]*d && all.sd[l] == sd[i]*d {
			all.shape[l] *= d
			all.so[l], all.sy[l], all.sd[l] = so[i], sy[i], sd[i]
			continue
		}
		if all.n == maxWalkAxes {
			return w, false
		}
		all.push(d, so[i], sy[i], sd[i])
	}
	w.n = 1
	if l := all.n - 1; l >= 0 {
		w.n, w.incY, w.incD = all.shape[l], all.sy[l], all.sd[l]
		if numel(out) == 0 {
			w.n = 0
		}
		for i := range l {
			if all.sd[i] != 0 {
				w.keep.push(all.shape[i], all.so[i], all.sy[i], all.sd[i])
			} else {
				w.red.push(all.shape[i], all.so[i], all.sy[i], 0)
			}
		}
	}
	return w, true
}

// gradReduce is gradKernel over the walk of out into dst with factor y (shapes as for
// newGradWalk), or gradRef where the walk has too many axes.
func gradReduce(dst, x, y []float32, out, dstShape, yShape []int, scale float32) {
	if w, ok := newGradWalk(out, dstShape, yShape); ok {
		gradKernel(dst, x, y, &w, scale)
		return
	}
	gradRef(dst, x, y, out, dstShape, yShape, scale)
}

// gradColBlock is the widest column block of a reduction: its float64 accumulators
// live on the stack.
const gradColBlock = 256

// gradKernel accumulates into dst, for every output element i of the walk,
// scale·x[i]·y[i] (y nil: scale·x[i]), where x is contiguous over the output and y and
// dst are read through the walk's broadcast. Contributions that meet in one dst
// element (dst broadcast along red axes or the inner row) are summed in float64 in
// row-major output order, so the result does not depend on the thread count. Work is
// split over dst elements only, hence without races.
func gradKernel(dst, x, y []float32, w *gradWalk, scale float32) {
	if (w.incD != 0 && w.incD != 1) || (y != nil && w.incY != 0 && w.incY != 1) {
		panic("tensor: gradKernel on a walk whose inner strides are not 0 or 1") // coalescing rules this out
	}
	nk, nr, n := w.keep.size(), w.red.size(), w.n
	if n == 0 || nk == 0 || nr == 0 {
		return
	}
	s64 := float64(scale)
	switch {
	case w.incD == 0:
		// Each dst element is one scalar sum over red rows and the inner row.
		parallelFor(nk, max(1, kernelGrain/(nr*n)), func(lo, hi int) {
			for k := lo; k < hi; k++ {
				ko, ky, kd := w.keep.at(k)
				var s float64
				for r := range nr {
					ro, ry, _ := w.red.at(r)
					xs := x[ko+ro : ko+ro+n]
					switch {
					case y == nil:
						s += sumRow64(xs)
					default:
						s += dotRow64(xs, y[ky+ry:], w.incY)
					}
				}
				dst[kd] += float32(s64 * s)
			}
		})
	case nr == 1:
		// No reduction: an elementwise accumulate over rows.
		parallelRows(nk, n, func(k, lo, hi int) {
			ko, ky, kd := w.keep.at(k)
			d, xs := dst[kd+lo:kd+hi], x[ko+lo:ko+hi]
			if y == nil {
				axpyRow(d, xs, scale)
			} else {
				mulAccRow(d, xs, y[ky+lo*w.incY:], w.incY, scale)
			}
		})
	default:
		// Column blocks of the inner row, each summed over the red rows into float64
		// accumulators. With few dst rows, split the columns finer so every worker
		// gets a block (the sums do not depend on the blocking).
		nb := (n + gradColBlock - 1) / gradColBlock
		if t := Threads(); nk < t {
			nb = min(n, (nb+t-1)/t*t)
		}
		cb := (n + nb - 1) / nb
		nb = (n + cb - 1) / cb
		parallelFor(nk*nb, max(1, kernelGrain/(nr*cb)), func(lo, hi int) {
			var acc [gradColBlock]float64
			for t := lo; t < hi; t++ {
				k, c0 := t/nb, t%nb*cb
				c1 := min(c0+cb, n)
				a := acc[:c1-c0]
				clear(a)
				ko, ky, kd := w.keep.at(k)
				for r := range nr {
					ro, ry, _ := w.red.at(r)
					xs := x[ko+ro+c0 : ko+ro+c1]
					switch {
					case y == nil:
						accRow64(a, xs)
					case w.incY == 1:
						accMulRow64(a, xs, y[ky+ry+c0:])
					default:
						accScaledRow64(a, xs, y[ky+ry])
					}
				}
				d := dst[kd+c0 : kd+c1]
				for i, v := range a {
					d[i] += float32(s64 * v)
				}
			}
		})
	}
}

func sumRow64(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	return s
}

// dotRow64 is Σ x[i]·y[i·inc] with the products rounded to float32, as the
// reference forms them, and summed in float64.
func dotRow64(x, y []float32, inc int) float64 {
	var s float64
	if inc == 0 {
		c := y[0]
		for _, v := range x {
			s += float64(v * c)
		}
		return s
	}
	y = y[:len(x)]
	for i, v := range x {
		s += float64(v * y[i])
	}
	return s
}

func mulAccRow(d, x, y []float32, inc int, a float32) {
	if inc == 1 && a == 1 {
		mulAccPlusRow(d, x, y, negZero) // 1·p is p: the same results
		return
	}
	x = x[:len(d)]
	if inc == 0 {
		c := y[0]
		for i, v := range x {
			d[i] += a * (v * c)
		}
		return
	}
	y = y[:len(d)]
	for i, v := range x {
		d[i] += a * (v * y[i])
	}
}

func accRow64(a []float64, x []float32) {
	n := acc64Fast(a, x, nil)
	a, x = a[n:], x[n:len(a)]
	for i, v := range x {
		a[i] += float64(v)
	}
}

func accMulRow64(a []float64, x, y []float32) {
	n := acc64Fast(a, x, y)
	a, x, y = a[n:], x[n:len(a)], y[n:len(a)]
	for i, v := range x {
		a[i] += float64(v * y[i])
	}
}

func accScaledRow64(a []float64, x []float32, c float32) {
	x = x[:len(a)]
	for i, v := range x {
		a[i] += float64(v * c)
	}
}

// gradRef is the plain reference for gradKernel: every output element's contribution
// summed in float64 per dst element, then added to dst.
func gradRef(dst, x, y []float32, out, dstShape, yShape []int, scale float32) {
	if y == nil {
		yShape = dstShape
	}
	sy, sd := stridesFor(yShape, out), stridesFor(dstShape, out)
	acc := make([]float64, len(dst))
	for o := range numel(out) {
		iy, id := 0, 0
		for d, rem := len(out)-1, o; d >= 0; d-- {
			i := rem % out[d]
			rem /= out[d]
			iy += i * sy[d]
			id += i * sd[d]
		}
		v := x[o]
		if y != nil {
			v *= y[iy]
		}
		acc[id] += float64(v)
	}
	for i, v := range acc {
		dst[i] += float32(float64(scale) * v)
	}
}

// add accumulates src into dst, in parallel when it is long.
func add(dst, src []float32) {
	if len(dst) <= 2*kernelGrain || Threads() == 1 {
		axpyRow(dst, src, 1) // no closure: views and slices call this once per row
		return
	}
	parallelFor(len(dst), 2*kernelGrain, func(lo, hi int) {
		axpyRow(dst[lo:hi], src[lo:hi], 1)
	})
}
