package tensor

import (
	"fmt"
	"slices"
)

// Embedding returns the rows of table [V, C] picked by ids, as [len(ids), C]. The table
// may be stored as BF16 or F16. It panics when an id is outside [0, V); callers that
// take ids from files or users check them first.
func Embedding(table *Tensor, ids []int) *Tensor {
	if table.Rank() != 2 {
		panic(fmt.Sprintf("tensor.Embedding: table shape %v is not [V, C]", table.shape))
	}
	v, c := table.shape[0], table.shape[1]
	ids = slices.Clone(ids)
	out := newTensor(false, len(ids), c)
	o := out.Data()
	for i, id := range ids {
		if id < 0 || id >= v {
			panic(fmt.Sprintf("tensor.Embedding: id %d at position %d outside table %v", id, i, table.shape))
		}
		if table.DType() == F32 {
			copy(o[i*c:(i+1)*c], table.Data()[id*c:])
		} else {
			widen(o[i*c:(i+1)*c], table.Bits()[id*c:(id+1)*c], table.DType())
		}
	}
	if needsGrad(table) {
		record(out, "Embedding", []*Tensor{table}, nil, func(dout []float32, dx gradFn) {
			d := dx(0)
			for i, id := range ids {
				add(d[id*c:(id+1)*c], dout[i*c:(i+1)*c])
			}
		})
	}
	return out
}

// dropKeep reports whether element i survives dropout with probability p under seed.
// The decision is a hash of (seed, i), so backward regenerates the mask instead of
// saving it, and any thread count gives the same mask.
func dropKeep(seed uint64, i int, threshold uint32) bool {
	z := seed + uint64(i)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return uint32(z>>32) >= threshold
}

// Dropout zeroes each element with probability p and scales the rest by 1/(1-p). The
// mask is a function of seed and the element index; backward regenerates it, so
// nothing is saved. p == 0 returns a view of x. It panics unless 0 <= p < 1.
func Dropout(x *Tensor, p float64, seed uint64) *Tensor {
	if p < 0 || p >= 1 {
		panic(fmt.Sprintf("tensor.Dropout: p = %g outside [0, 1)", p))
	}
	if p == 0 {
		return Reshape(x, x.shape...)
	}
	threshold := uint32(p * (1 << 32))
	scale := float32(1 / (1 - p))
	xd := mustF32("Dropout", x)
	out := newTensor(false, x.shape...)
	o := out.Data()
	parallelFor(len(o), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if dropKeep(seed, i, threshold) {
				o[i] = xd[i] * scale
			} else {
				o[i] = 0
			}
		}
	})
	if needsGrad(x) {
		record(out, "Dropout", []*Tensor{x}, nil, func(dout []float32, dx gradFn) {
			d := dx(0)
			parallelFor(len(d), 1<<14, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					if dropKeep(seed, i, threshold) {
						d[i] += dout[i] * scale
					}
				}
			})
		})
	}
	return out
}

// MSELoss returns mean((pred - target)²) as a one-element tensor. Shapes must match;
// a nil target stands for zeros (the loss is then mean(pred²) and keeps only pred).
func MSELoss(pred, target *Tensor) *Tensor {
	if target != nil && !slices.Equal(pred.shape, target.shape) {
		panic(fmt.Sprintf("tensor.MSELoss: shapes %v and %v", pred.shape, target.shape))
	}
	pd, td := mustF32("MSELoss", pred), optF32("MSELoss", target)
	var s float64
	for i := range pd {
		d := float64(pd[i])
		if td != nil {
			d -= float64(td[i])
		}
		s += d * d
	}
	n := float64(max(len(pd), 1))
	out := newTensor(false, 1)
	out.Data()[0] = float32(s / n)
	if needsGrad(pred, target) {
		pe, te := elemsOf(pred), optElems(target)
		record(out, "MSELoss", []*Tensor{pred, target}, []*Tensor{pred, target}, func(dout []float32, dx gradFn) {
			pd, doneP := pe.f32()
			td, doneT := te.f32()
			defer doneP()
			defer doneT()
			g := 2 * dout[0] / float32(n)
			diff := func(i int) float32 {
				if td == nil {
					return pd[i]
				}
				return pd[i] - td[i]
			}
			if d := dx(0); d != nil {
				for i := range d {
					d[i] += g * diff(i)
				}
			}
			if d := dx(1); d != nil {
				for i := range d {
					d[i] -= g * diff(i)
				}
			}
		})
	}
	return out
}
