package tensor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPad2d compares Pad2d with an index-by-index reference (a pure copy: exact) and
// checks its gradient by finite differences.
func TestPad2d(t *testing.T) {
	for _, c := range []struct{ n, ch, h, w, l, r, top, b int }{
		{1, 1, 1, 1, 0, 1, 0, 1}, {2, 3, 4, 5, 0, 1, 0, 1}, {1, 2, 3, 2, 2, 0, 1, 3}, {1, 1, 2, 2, 0, 0, 0, 0},
	} {
		t.Run(fmt.Sprintf("%v", c), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(21, uint64(c.h*7+c.w)))
			x := randTensor(rng, c.n, c.ch, c.h, c.w)
			defer x.Release()
			var got *Tensor
			NoGrad(func() { got = Pad2d(x, c.l, c.r, c.top, c.b) })
			defer got.Release()
			oh, ow := c.top+c.h+c.b, c.l+c.w+c.r
			if want := []int{c.n, c.ch, oh, ow}; !slices.Equal(got.Shape(), want) {
				t.Fatalf("shape %v, want %v", got.Shape(), want)
			}
			for p := range c.n * c.ch {
				for i := range oh {
					for j := range ow {
						var want float32
						if h, w := i-c.top, j-c.l; h >= 0 && h < c.h && w >= 0 && w < c.w {
							want = x.Data()[(p*c.h+h)*c.w+w]
						}
						if g := got.Data()[(p*oh+i)*ow+j]; g != want {
							t.Fatalf("plane %d (%d, %d): %g, want %g", p, i, j, g, want)
						}
					}
				}
			}
			checkGrad(t, gradCase{name: "Pad2d", shapes: [][]int{{c.n, c.ch, c.h, c.w}},
				f: func(in []*Tensor) *Tensor { return Pad2d(in[0], c.l, c.r, c.top, c.b) }})
		})
	}
	x := Zeros(2, 3)
	defer x.Release()
	ktPanics(t, func() { Pad2d(x, 0, 1, 0, 1) }, "Pad2d", "[2 3]")
}
