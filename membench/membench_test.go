package membench

import (
	"testing"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// TestFitPredictsMeasured: on a small decoder, the accounting fitted from depths 1
// and 2 at two token counts predicts a measured larger shape within 1%, and LoRA's
// weight form saves less than its activation form with dropout.
func TestFitPredictsMeasured(t *testing.T) {
	small := Llama32_1B
	small.Vocab, small.Hidden, small.Intermediate, small.Heads, small.KVHeads = 64, 64, 128, 4, 2
	old := Llama32_1B
	Llama32_1B = small
	defer func() { Llama32_1B = old }()
	p := Plan{Model: "llama-1b", Batch: 2, Depth: 4, Fit: [2]int{8, 16}, Check: 24, Tokens: []int{32}}
	var act, weight Row
	for _, m := range []Method{
		{Name: "adapter", Adapter: adapters.LoRA, Form: adapters.Activation, Dropout: 0.1},
		{Name: "adapter", Adapter: adapters.LoRA, Form: adapters.Weight},
		{Name: "full"},
	} {
		_, ev, e, err := Evaluate(p, m, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: check error %.2g%%", m.Label(), 100*e)
		if e > 0.01 {
			t.Errorf("%s: the fit misses the measured check shape by %.2g%%", m.Label(), 100*e)
		}
		switch m.Form {
		case adapters.Activation:
			act = ev[0]
		case adapters.Weight:
			weight = ev[0]
		}
	}
	if weight.SavedBytes >= act.SavedBytes {
		t.Fatalf("weight form saved %d bytes, activation p=0.1 %d", weight.SavedBytes, act.SavedBytes)
	}
}
