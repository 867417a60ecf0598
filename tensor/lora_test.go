package tensor

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestGradLoRA checks LoRARankR (without and with dropout, in one block and in blocks
// of 4 rows) and LoRAMerged against finite differences, the frozen weight and bias
// held constant.
func TestGradLoRA(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	w, bias := randTensor(rng, 6, 8), randTensor(rng, 6)
	defer Release(w, bias)
	for _, blockElems := range []int{1 << 18, 4 * 8} {
		old := loraBlockElems
		loraBlockElems = blockElems
		cases := []gradCase{
			{name: "LoRARankR", shapes: [][]int{{3, 5, 8}, {4, 8}, {6, 4}}, f: func(in []*Tensor) *Tensor {
				return LoRARankR(in[0], w, bias, in[1], in[2], 0.5, 0, 0)
			}},
			{name: "LoRARankRDropout", shapes: [][]int{{3, 5, 8}, {4, 8}, {6, 4}}, f: func(in []*Tensor) *Tensor {
				return LoRARankR(in[0], w, bias, in[1], in[2], 0.5, 0.3, 77)
			}},
			{name: "LoRAMerged", shapes: [][]int{{3, 5, 8}, {4, 8}, {6, 4}}, f: func(in []*Tensor) *Tensor {
				return LoRAMerged(in[0], w, nil, in[1], in[2], 0.5)
			}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { checkGrad(t, c) })
		}
		loraBlockElems = old
	}
}

// TestLoRAPathsAgree: the merged forward, the rank-r path in one block and in blocks,
// and the same with x packed to bf16 give one output and one set of gradients (the
// packed run within bf16's rounding), and without dropout the rank-r path saves x only.
func TestLoRAPathsAgree(t *testing.T) {
	const rows, in, out, r = 37, 24, 16, 4
	type result struct{ y, dx, da, db []float32 }
	run := func(merge, pack bool, blockElems int, p float64, w16 bool) result {
		defer SetSavedBF16(SetSavedBF16(pack))
		old := loraBlockElems
		loraBlockElems = blockElems
		defer func() { loraBlockElems = old }()
		rng := rand.New(rand.NewPCG(10, 10))
		// W's values are bf16's, so that a BF16 base weight (w16) is the same weight.
		w0, bias := randTensor(rng, out, in), randTensor(rng, out)
		bits := make([]uint16, out*in)
		narrow(bits, w0.Data(), BF16)
		w0.Release()
		w := FromBits(BF16, bits, out, in)
		if !w16 {
			wf := make([]float32, out*in)
			widen(wf, bits, BF16)
			w.Release()
			w = FromFloat32(wf, out, in)
		}
		a, b := randTensor(rng, r, in).SetRequiresGrad(true), randTensor(rng, out, r).SetRequiresGrad(true)
		x, x0, sx := activation(rng, rows, in)
		defer Release(w, bias, a, b, x0, sx)
		var y *Tensor
		if merge {
			y = LoRAMerged(x, w, bias, a, b, 0.7)
		} else {
			y = LoRARankR(x, w, bias, a, b, 0.7, p, 5)
		}
		x.Release() // from here only the graph holds x: packed when pack is set
		if got, want := SavedBytes(), int64(4*rows*in); !pack && got != want {
			t.Fatalf("saved %d bytes, want x only (%d)", got, want)
		}
		g := randTensor(rand.New(rand.NewPCG(11, 11)), rows, out)
		res := result{y: slices.Clone(y.Data())}
		BackwardWith([]*Tensor{y}, []*Tensor{g})
		res.dx, res.da, res.db = slices.Clone(sx.Grad().Data()), slices.Clone(a.Grad().Data()), slices.Clone(b.Grad().Data())
		Release(y, g)
		return res
	}
	for _, p := range []float64{0, 0.2} {
		ref := run(false, false, 1<<18, p, false)
		variants := map[string]result{"blocks of 3 rows": run(false, false, 3*in, p, false), "packed x": run(false, true, 3*in, p, false),
			"bf16 base weight": run(false, false, 1<<18, p, true)}
		if p == 0 {
			variants["merged forward"] = run(true, false, 1<<18, 0, false)
			variants["merged forward, bf16 base weight"] = run(true, false, 1<<18, 0, true)
		}
		for name, got := range variants {
			tol := 1e-5
			if name == "packed x" {
				tol = 1e-2
			}
			for i, pair := range [][2][]float32{{got.y, ref.y}, {got.dx, ref.dx}, {got.da, ref.da}, {got.db, ref.db}} {
				if e := relMaxDiff(pair[0], pair[1]); e > tol {
					t.Errorf("dropout %g, %s: output/gradient %d differs by %.2g", p, name, i, e)
				}
			}
		}
	}
}
