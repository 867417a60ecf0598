package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestUpsampleNearest2x(t *testing.T) {
	for _, c := range []struct{ NC, H, W int }{{1, 1, 1}, {3, 7, 5}, {2, 33, 65}, {64, 32, 32}} {
		t.Run(fmt.Sprintf("%dx%dx%d", c.NC, c.H, c.W), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(13, uint64(c.NC*c.H*c.W)))
			x := ktRand(rng, c.NC*c.H*c.W, -1, 1)
			got, want := ktRand(rng, 4*len(x), -9, 9), make([]float32, 4*len(x))
			upsampleNearest2xForward(got, x, c.NC, c.H, c.W)
			upsampleNearest2xRef(want, x, c.NC, c.H, c.W)
			ktClose(t, "forward", got, want, 0) // pure copies: exact
			dout := ktRand(rng, 4*len(x), -1, 1)
			ktBackwardCheck(t, []string{"dx"}, []int{len(x)}, false,
				func(g [][]float32) { upsampleNearest2xBackward(g[0], dout, c.NC, c.H, c.W) },
				func(g [][]float32) { upsampleNearest2xBackwardRef(g[0], dout, c.NC, c.H, c.W) })
		})
	}
	ktPanics(t, func() { upsampleNearest2xForward(make([]float32, 15), make([]float32, 4), 1, 2, 2) }, "upsampleNearest2xForward", "15", "16")
}

func TestUpsampleNearest2xGradCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 14))
	NC, H, W := 2, 3, 5
	x := ktRand(rng, NC*H*W, -1, 1)
	g := ktRand(rng, 4*len(x), -1, 1)
	out := make([]float32, len(g))
	dx := make([]float32, len(x))
	upsampleNearest2xBackward(dx, g, NC, H, W)
	ktGradCheck(t, "dx", x, dx, func() float64 {
		upsampleNearest2xForward(out, x, NC, H, W)
		return ktDot(out, g)
	}, ktFDStep, ktFDTol)
}
