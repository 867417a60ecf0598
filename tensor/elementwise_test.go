package tensor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// elementwiseShapes are operand pairs over odd sizes and every broadcast pattern the
// kernels special-case: same shape (one long row), a bias row [C], per-sample rows
// [N, 1, C], per-row scalars [.., 1], a broadcast first operand, both operands
// broadcast, scalars, size-1 and empty axes.
var elementwiseShapes = [][2][]int{
	{{1}, {1}},
	{{7}, {7}},
	{{257, 33}, {257, 33}},
	{{3, 257, 33}, {33}},
	{{7, 33, 257}, {7, 1, 257}},
	{{7, 1, 257}, {7, 33, 257}},
	{{33, 257}, {33, 1}},
	{{2, 7, 33, 5}, {7, 1, 1}},
	{{1, 7}, {5, 1}},
	{{2, 1, 33}, {1, 7, 1}},
	{{}, {33, 7}},
	{{257, 7}, {}},
	{{4, 65, 1}, {4, 65, 1}},
	{{3, 0, 5}, {5}},
	{{5, 8193}, {8193}},
	{{2, 9000}, {2, 1}},
}

// TestBinaryKernel checks that the forward kernel gives the reference's values bit for
// bit (both compute one float32 operation per element).
func TestBinaryKernel(t *testing.T) {
	for _, s := range elementwiseShapes {
		for op := opAdd; op <= opDiv; op++ {
			t.Run(fmt.Sprintf("%s%v%v", binaryNames[op], s[0], s[1]), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(5, uint64(numel(s[0])+numel(s[1]))))
				a, b := ktRand(rng, numel(s[0]), -2, 2), ktRand(rng, numel(s[1]), 0.5, 2)
				shape := broadcastShapes("test", s[0], s[1])
				got, want := make([]float32, numel(shape)), make([]float32, numel(shape))
				binaryKernel(got, a, b, newBcast(shape, s[0], s[1]), op)
				binaryRef(want, a, b, shape, s[0], s[1], op)
				if i := firstDiff(got, want); i >= 0 {
					t.Fatalf("at %d: got %v, want %v", i, got[i], want[i])
				}
			})
		}
	}
}

func firstDiff(a, b []float32) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestGradKernel compares the gradient reduction with its reference for every operand
// of every shape pair, with and without a factor, and checks that the result is bit
// for bit the same for 1, 2 and 3 threads.
func TestGradKernel(t *testing.T) {
	for _, s := range elementwiseShapes {
		out := broadcastShapes("test", s[0], s[1])
		for which, dst := range s {
			other := s[1-which]
			for _, y := range [][]int{nil, other, out} {
				t.Run(fmt.Sprintf("%v%v/dst%d/y%v", s[0], s[1], which, y), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(6, uint64(numel(out)+which)))
					x := ktRand(rng, numel(out), -1, 1)
					var yd []float32
					if y != nil {
						yd = ktRand(rng, numel(y), -1, 1)
					}
					init := ktRand(rng, numel(dst), -1, 1)
					want := slices.Clone(init)
					gradRef(want, x, yd, out, dst, y, -0.75)
					var first []float32
					for _, threads := range []int{1, 2, 3} {
						got := slices.Clone(init)
						ktWithThreads(threads, func() {
							w, ok := newGradWalk(out, dst, y)
							if !ok {
								t.Fatal("walk has too many axes")
							}
							gradKernel(got, x, yd, &w, -0.75)
						})
						// Both sum the same float32 terms in float64, in different orders:
						// they agree to float32 rounding of the result (1 ulp ≈ 6e-8 rel.);
						// 1e-6 of the largest |want| leaves room for cancellation.
						ktClose(t, fmt.Sprintf("threads %d", threads), got, want, 1e-6)
						if first == nil {
							first = got
						} else if i := firstDiff(got, first); i >= 0 {
							t.Fatalf("threads %d: at %d got %v, 1 thread gave %v (not deterministic)", threads, i, got[i], first[i])
						}
					}
				})
			}
		}
	}
}

// TestReduceMatchesRef checks Sum over various axes against gradRef.
func TestReduceMatchesRef(t *testing.T) {
	for _, c := range []struct {
		shape []int
		axes  []int
	}{
		{[]int{257, 33}, nil}, {[]int{257, 33}, []int{0}}, {[]int{257, 33}, []int{1}},
		{[]int{7, 33, 65}, []int{0, 2}}, {[]int{7, 33, 65}, []int{1}}, {[]int{1, 7, 1}, []int{1}},
	} {
		rng := rand.New(rand.NewPCG(7, uint64(numel(c.shape))))
		x := randTensor(rng, c.shape...)
		got := Sum(x, true, c.axes...)
		kept := reduceShape("Sum", c.shape, c.axes)
		want := make([]float32, numel(kept))
		gradRef(want, x.Data(), nil, c.shape, kept, nil, 1)
		// float64 sums rounded once on both sides; see TestGradKernel.
		ktClose(t, fmt.Sprintf("Sum%v%v", c.shape, c.axes), got.Data(), want, 1e-6)
		Release(x, got)
	}
}

func BenchmarkBinaryBias(b *testing.B)   { benchBinary(b, opAdd, []int{1024, 1536}, []int{1536}) }
func BenchmarkBinaryRowMul(b *testing.B) { benchBinary(b, opMul, []int{4, 256, 384}, []int{4, 1, 384}) }
func BenchmarkBinarySame(b *testing.B)   { benchBinary(b, opAdd, []int{4, 256, 384}, []int{4, 256, 384}) }
func BenchmarkGradBias(b *testing.B)     { benchGrad(b, []int{1024, 1536}, []int{1536}, nil) }
func BenchmarkGradRowMul(b *testing.B) {
	benchGrad(b, []int{4, 256, 384}, []int{4, 1, 384}, []int{4, 256, 384})
}
func BenchmarkGradRowMulDst(b *testing.B) {
	benchGrad(b, []int{4, 256, 384}, []int{4, 256, 384}, []int{4, 1, 384})
}

func benchBinary(b *testing.B, op binaryOp, as, bs []int) {
	shape := broadcastShapes("bench", as, bs)
	rng := rand.New(rand.NewPCG(1, 1))
	x, y, out := ktRand(rng, numel(as), -1, 1), ktRand(rng, numel(bs), 1, 2), make([]float32, numel(shape))
	p := newBcast(shape, as, bs)
	b.SetBytes(int64(4 * (len(x) + len(y) + len(out))))
	b.ReportAllocs()
	for b.Loop() {
		binaryKernel(out, x, y, p, op)
	}
}

func benchGrad(b *testing.B, out, dst, y []int) {
	rng := rand.New(rand.NewPCG(1, 1))
	x, d := ktRand(rng, numel(out), -1, 1), make([]float32, numel(dst))
	var yd []float32
	if y != nil {
		yd = ktRand(rng, numel(y), -1, 1)
	}
	w, _ := newGradWalk(out, dst, y)
	b.SetBytes(int64(4 * (len(x) + len(d) + len(yd))))
	b.ReportAllocs()
	for b.Loop() {
		gradKernel(d, x, yd, &w, 1)
	}
}
