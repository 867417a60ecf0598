package nn

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/tensor"
)

func randInput(rng *rand.Rand, shape ...int) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(rng.NormFloat64())
	}
	return tensor.FromFloat32(d, shape...)
}

func TestAttentionNamesAndCrossShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a := NewAttention(rng, 12, 10, 3, 4, false)
	defer ReleaseParams(a)
	var names []string
	for _, p := range a.Params("attn2.") {
		names = append(names, p.Name)
	}
	want := []string{"attn2.to_q.weight", "attn2.to_k.weight", "attn2.to_v.weight", "attn2.to_out.0.weight", "attn2.to_out.0.bias"}
	if !slices.Equal(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	x, ctx := randInput(rng, 2, 5, 12), randInput(rng, 2, 7, 10)
	var y *tensor.Tensor
	tensor.NoGrad(func() { y = a.Forward(x, ctx, nil) })
	if !slices.Equal(y.Shape(), []int{2, 5, 12}) {
		t.Fatalf("cross-attention output %v", y.Shape())
	}
	tensor.Release(x, ctx, y)
}

// TestAttentionMatchesComposition checks nn.Attention against projections, a naive
// softmax attention per head and the output projection, written out with ops.
func TestAttentionMatchesComposition(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const b, tq, dim, heads, hd = 2, 6, 8, 2, 4
	a := NewAttention(rng, dim, dim, heads, hd, true)
	defer ReleaseParams(a)
	SetTrainable(a, false) // forward only
	x := randInput(rng, b, tq, dim)
	defer x.Release()
	got := a.Forward(x, nil, nil)
	defer got.Release()
	q, k, v := a.ToQ.Forward(x), a.ToK.Forward(x), a.ToV.Forward(x)
	defer tensor.Release(q, k, v)
	o := make([]float32, b*tq*heads*hd)
	qd, kd, vd := q.Data(), k.Data(), v.Data()
	for n := range b {
		for h := range heads {
			for i := range tq {
				s := make([]float64, tq)
				var m float64 = -1e30
				for j := range tq {
					for c := range hd {
						s[j] += float64(qd[(n*tq+i)*dim+h*hd+c]) * float64(kd[(n*tq+j)*dim+h*hd+c])
					}
					s[j] /= 2 // √hd
					m = max(m, s[j])
				}
				var z float64
				for j := range s {
					s[j] = math.Exp(s[j] - m)
					z += s[j]
				}
				for c := range hd {
					var acc float64
					for j := range tq {
						acc += s[j] / z * float64(vd[(n*tq+j)*dim+h*hd+c])
					}
					o[(n*tq+i)*dim+h*hd+c] = float32(acc)
				}
			}
		}
	}
	ot := tensor.FromFloat32(o, b, tq, dim)
	defer ot.Release()
	want := a.ToOut.Forward(ot)
	// float32 attention against a float64 loop: 1e-5 of the values' scale.
	if !tensor.AllClose(got, want, 1e-5, 1e-5) {
		t.Fatalf("attention differs from its composition:\n%v\n%v", got.Float32s()[:6], want.Float32s()[:6])
	}
	want.Release()
}

func TestFeedForwardGEGLU(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ff, err := NewFeedForward(rng, 6, 10, 6, ActGEGLU)
	if err != nil {
		t.Fatal(err)
	}
	defer ReleaseParams(ff)
	SetTrainable(ff, false) // forward only
	if got := ff.Proj.Weight.Shape(); !slices.Equal(got, []int{20, 6}) {
		t.Fatalf("GEGLU projection %v, want [20 6]", got)
	}
	x := randInput(rng, 3, 6)
	defer x.Release()
	got := ff.Forward(x)
	defer got.Release()
	h := ff.Proj.Forward(x)
	hd := h.Data()
	a := make([]float32, 3*10)
	for r := range 3 {
		for c := range 10 {
			g := float64(hd[r*20+10+c])
			a[r*10+c] = hd[r*20+c] * float32(0.5*g*(1+math.Erf(g/math.Sqrt2)))
		}
	}
	at := tensor.FromFloat32(a, 3, 10)
	want := ff.Out.Forward(at)
	if !tensor.AllClose(got, want, 1e-5, 1e-6) {
		t.Fatalf("GEGLU differs: %v vs %v", got.Float32s()[:4], want.Float32s()[:4])
	}
	tensor.Release(h, at, want)
	if _, err := NewFeedForward(rng, 6, 0, 6, "relu"); err == nil || !strings.Contains(err.Error(), "geglu") {
		t.Fatalf("unknown activation: %v", err)
	}
}

func TestEmbeddingRejectsBadID(t *testing.T) {
	e := NewEmbedding(rand.New(rand.NewPCG(1, 1)), 4, 3)
	defer ReleaseParams(e)
	if _, err := e.Forward([]int{1, 4}); err == nil || !strings.Contains(err.Error(), "id 4") {
		t.Fatalf("out-of-range id: %v", err)
	}
	y, err := e.Forward([]int{3, 0})
	if err != nil || !slices.Equal(y.Float32s()[:3], e.Weight.Float32s()[9:12]) {
		t.Fatalf("lookup: %v", err)
	}
	y.Release()
}
