package membench

import (
	"fmt"
	"math"

	"github.com/difftune/difftune/adapters"
)

// Plan says which shapes to measure for a model and which real size to evaluate.
type Plan struct {
	Model string
	Batch int
	// Depth is the real layer count; 0 means the model is measured whole (sd15).
	Depth int
	// Fit are the two token counts measured at depths 1 and 2 (or whole) to fit the
	// accounting; Check is a larger measured size compared with the fit, chosen away
	// from the crossover where saved activations and full-finetuning gradients are
	// about equal (there the peak holds part of both, which max(saved, grads) does
	// not model).
	Fit   [2]int
	Check int
	// Tokens are the sizes reported.
	Tokens []int
}

// Plans are the three models of the paper's comparison.
var Plans = []Plan{
	{Model: "llama-1b", Batch: 8, Depth: 16, Fit: [2]int{32, 64}, Check: 128, Tokens: []int{256, 512, 1024, 2048, 4096, 8192, 16384}},
	{Model: "dit-xl-2", Batch: 1, Depth: 28, Fit: [2]int{256, 1024}, Check: 2304, Tokens: []int{256, 1024, 4096}},
	{Model: "sd15", Batch: 1, Fit: [2]int{256, 576}, Check: 1024, Tokens: []int{1024, 4096}},
}

// fields lists a row's byte components in a fixed order for fitting.
func fields(r *Row) []*int64 {
	return []*int64{&r.ParamsBytes, &r.GradsBytes, &r.OptimizerBytes, &r.SavedBytes, &r.TransientBytes}
}

// Evaluate runs a plan for one method: it measures the fit shapes and the check shape,
// fits every byte component as a + b·N + L·(c + d·N) (exact for layer-stacked models
// whose saved tensors are proportional to the token count N — attention is fused, so
// nothing is quadratic), and evaluates it at the real depth for every reported size.
// It returns the measured rows, the evaluated rows, and the largest relative error
// of the fit's prediction of the check shape's peak.
//
// auto chooses its path per layer from the token count, so for auto the fit is made
// once per reported size, with auto deciding as it would at that size.
func Evaluate(p Plan, m Method, rank int) (measured, evaluated []Row, checkErr float64, err error) {
	if m.Form != adapters.Auto {
		return evaluate(p, m, rank, 0)
	}
	for _, n := range p.Tokens {
		q := p
		q.Tokens = []int{n}
		ms, ev, e, err := evaluate(q, m, rank, n)
		if err != nil {
			return nil, nil, 0, err
		}
		measured, evaluated, checkErr = append(measured, ms...), append(evaluated, ev...), max(checkErr, e)
	}
	return measured, evaluated, checkErr, nil
}

// evaluate fits and evaluates; autoAt, when > 0, makes auto decide every measured
// shape as it would at autoAt tokens.
func evaluate(p Plan, m Method, rank, autoAt int) (measured, evaluated []Row, checkErr float64, err error) {
	scale := func(n int) float64 {
		if autoAt == 0 {
			return 0
		}
		return float64(autoAt) / float64(n)
	}
	depths := []int{1, 2}
	if p.Depth == 0 {
		depths = []int{0}
	}
	type key struct{ l, n int }
	got := map[key]Row{}
	for _, l := range depths {
		for _, n := range p.Fit {
			r, err := measure(Shape{Model: p.Model, Layers: l, Tokens: n, Batch: p.Batch}, m, rank, scale(n))
			if err != nil {
				return nil, nil, 0, err
			}
			got[key{l, n}] = r
			measured = append(measured, r)
		}
	}
	n1, n2 := float64(p.Fit[0]), float64(p.Fit[1])
	predict := func(l, n int) Row {
		base := got[key{depths[0], p.Fit[0]}]
		out := base
		out.Tokens, out.Layers, out.Measured, out.StepS = n, l, false, 0
		if p.Depth == 0 {
			out.Layers = 0
		}
		for i, f := range fields(&out) {
			val := func(l, n int) float64 { r := got[key{l, n}]; return float64(*fields(&r)[i]) }
			// Linear in N at each depth, then linear in L.
			at := func(l int) float64 {
				a, b := val(l, p.Fit[0]), val(l, p.Fit[1])
				return a + (b-a)/(n2-n1)*(float64(n)-n1)
			}
			v := at(depths[0])
			if len(depths) == 2 {
				v += (at(2) - at(1)) * float64(l-1)
			}
			*f = int64(math.Round(v))
		}
		out.TransientBytes = max(0, out.TransientBytes)
		out.PeakBytes = out.ParamsBytes + out.OptimizerBytes + max(out.SavedBytes, out.GradsBytes) + out.TransientBytes
		return out
	}
	checkDepth := 2
	if p.Depth == 0 {
		checkDepth = 0
	}
	if p.Check > 0 {
		r, err := measure(Shape{Model: p.Model, Layers: checkDepth, Tokens: p.Check, Batch: p.Batch}, m, rank, scale(p.Check))
		if err != nil {
			return nil, nil, 0, err
		}
		measured = append(measured, r)
		e := predict(checkDepth, p.Check)
		checkErr = math.Abs(float64(e.PeakBytes-r.PeakBytes)) / float64(r.PeakBytes)
	}
	for _, n := range p.Tokens {
		r := predict(p.Depth, n)
		r.FitError = checkErr
		evaluated = append(evaluated, r)
	}
	return measured, evaluated, checkErr, nil
}

// Claims checks the paper's statements on evaluated rows and returns one line each.
func Claims(rows []Row) []string {
	find := func(model string, tokens int, label string) *Row {
		for i := range rows {
			r := &rows[i]
			if r.Model == model && r.Tokens == tokens && !r.Measured && methodLabel(*r) == label {
				return r
			}
		}
		return nil
	}
	var out []string
	maxTokens := map[string]int{}
	for _, r := range rows {
		maxTokens[r.Model] = max(maxTokens[r.Model], r.Tokens)
	}
	for _, n := range []int{2048, 4096, 8192, 16384} {
		full, act := find("llama-1b", n, "full finetuning"), find("llama-1b", n, "lora activation p=0.1")
		if full != nil && act != nil {
			out = append(out, fmt.Sprintf("(a) llama-1b, context %d, batch 8: LoRA activation p=0.1 peaks at %.1f GiB, full finetuning at %.1f GiB (%s)",
				n, gib(act.PeakBytes), gib(full.PeakBytes), above(act.PeakBytes > full.PeakBytes)))
		}
	}
	for _, model := range []string{"llama-1b", "dit-xl-2", "sd15"} {
		n := maxTokens[model]
		act := find(model, n, "lora activation p=0.1")
		for _, label := range []string{"lora weight", "lora auto", "lora auto p=0.1"} {
			if r := find(model, n, label); r != nil && act != nil {
				out = append(out, fmt.Sprintf("(b) %s at %d tokens: %s peaks at %.1f GiB, 1/%.2f of LoRA activation p=0.1 (%.1f GiB)",
					model, n, label, gib(r.PeakBytes), float64(act.PeakBytes)/float64(r.PeakBytes), gib(act.PeakBytes)))
			}
		}
	}
	return out
}

func methodLabel(r Row) string {
	if r.Method == "full" {
		return "full finetuning"
	}
	s := r.Adapter + " " + r.Form
	if r.Dropout > 0 {
		s += fmt.Sprintf(" p=%g", r.Dropout)
	}
	return s
}

func above(b bool) string {
	if b {
		return "above, as the paper reports"
	}
	return "not above"
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }
