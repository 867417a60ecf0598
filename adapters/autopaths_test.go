package adapters

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// TestMeasureAutoPaths times LoRA's rank-r and merged paths (forward and backward)
// on Linear shapes around auto's FLOP threshold and prints where the faster path
// differs from the rule — the measurements behind autoOverrides. It runs only with
// DIFFTUNE_AUTO_MEASURE=1, on a quiet machine.
func TestMeasureAutoPaths(t *testing.T) {
	if os.Getenv("DIFFTUNE_AUTO_MEASURE") != "1" {
		t.Skip("set DIFFTUNE_AUTO_MEASURE=1 to measure")
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, sh := range [][2]int{{384, 1152}, {384, 384}, {384, 1536}, {1536, 384}, {768, 768}, {1152, 3456}, {320, 320}, {640, 640}, {2048, 2048}, {2048, 8192}} {
		in, out := sh[0], sh[1]
		for _, r := range []int{8, 16} {
			thr := in * out / (in + out)
			for _, n := range []int{thr / 4, thr / 2, thr, 2 * thr, 4 * thr} {
				n = max(8, n)
				var times [2]time.Duration
				for path := range 2 {
					l := nn.NewLinear(rng, in, out, true)
					l.Weight.SetRequiresGrad(false)
					l.Bias.SetRequiresGrad(false)
					lo := newLoRA(rng, l.Weight, r, 1)
					x := randT(rng, n, in).SetRequiresGrad(true)
					var best time.Duration = 1 << 62
					for range 5 {
						t0 := time.Now()
						var y *tensor.Tensor
						if path == 0 {
							y = tensor.LoRARankR(x, l.Weight, l.Bias, lo.down, lo.up, lo.s, 0, 0)
						} else {
							y = tensor.LoRAMerged(x, l.Weight, l.Bias, lo.down, lo.up, lo.s)
						}
						loss := tensor.Sum(y, false)
						tensor.Backward(loss)
						tensor.Release(y, loss)
						best = min(best, time.Since(t0))
						x.ZeroGrad()
						lo.down.ZeroGrad()
						lo.up.ZeroGrad()
					}
					times[path] = best
					tensor.Release(x, lo.down, lo.up)
					nn.ReleaseParams(l)
				}
				rule := n*(in+out) > in*out
				faster := times[1] < times[0]
				mark := ""
				if rule != faster && (float64(max(times[0], times[1]))/float64(min(times[0], times[1])) > 1.1) {
					mark = "  <- override"
				}
				fmt.Printf("in %5d out %5d r %2d n %6d: rank-r %8.3f ms, merged %8.3f ms, rule merges %v%s\n", in, out, r, n,
					float64(times[0].Microseconds())/1000, float64(times[1].Microseconds())/1000, rule, mark)
			}
		}
	}
}

// TestAutoOverride: auto follows the FLOP rule (merge iff N > in·out/(in+out)) except
// where the table of measured overrides has an entry for the shape, keyed by the
// token count rounded up to a power of two.
func TestAutoOverride(t *testing.T) {
	in, out, r := 640, 640, 16 // threshold 320 tokens
	if mergeFaster(320, in, out, r) || !mergeFaster(321, in, out, r) {
		t.Fatal("the rule's threshold is not N = in·out/(in+out)")
	}
	autoOverrides[[4]int{in, out, r, 512}] = false
	defer delete(autoOverrides, [4]int{in, out, r, 512})
	if mergeFaster(400, in, out, r) || mergeFaster(512, in, out, r) {
		t.Error("an override for 257..512 tokens is not followed")
	}
	if !mergeFaster(513, in, out, r) || !mergeFaster(400, in, out, 8) {
		t.Error("an override applies beyond its shape")
	}
}

// TestAutoTokens: Config.AutoTokens changes the token count auto decides with, per
// adapter, and nothing else.
func TestAutoTokens(t *testing.T) {
	set := &Set{cfg: Config{Form: Auto, AutoTokens: func(name string, n int) int {
		if name == "ctx" {
			return n
		}
		return 8 * n
	}}}
	for _, c := range []struct {
		name string
		n    int
		want string
	}{{"img", 100, "merged"}, {"ctx", 100, "rank-r"}, {"img", 30, "rank-r"}} {
		a := &Adapter{Name: c.name, Kind: LoRA, Rank: 16, set: set}
		// 640 -> 640: the rule merges above 320 tokens.
		if got := a.choose(c.n, 640, 640, 0); got != c.want {
			t.Errorf("%s at %d tokens: %s, want %s", c.name, c.n, got, c.want)
		}
	}
}
