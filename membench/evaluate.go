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
	// Fit are the token counts (ascending, at least two) measured at depths 2 and 3
	// (or whole) to fit the accounting: linear in N between neighbouring counts, and
	// beyond the last two.
	Fit []int
	// Check is a shape measured and compared with the fit: CheckDepth layers (0: the
	// whole model) and Check tokens.
	Check, CheckDepth int
	// Tokens are the sizes reported.
	Tokens []int
	// BF16 packs saved activations to bfloat16, as mixed-precision training keeps them.
	BF16 bool
}

// Plans are the three models of the paper's comparison.
var Plans = []Plan{
	{Model: "llama-1b", Batch: 8, Depth: 16, Fit: []int{32, 64, 512}, Check: 1024, CheckDepth: 2, Tokens: []int{256, 512, 1024, 2048, 4096, 8192, 16384}},
	{Model: "dit-xl-2", Batch: 1, Depth: 28, Fit: []int{256, 1024, 4096}, Check: 4096, CheckDepth: 4, Tokens: []int{256, 1024, 4096}},
	{Model: "sd15", Batch: 1, Fit: []int{256, 576}, Check: 1024, Tokens: []int{1024, 4096}},
}

// The byte components of a row in the order fields lists them.
const (
	fParams = iota
	fGrads
	fOptimizer
	fSaved
	fTransient
)

// fields lists a row's byte components in a fixed order for fitting.
func fields(r *Row) []*int64 {
	return []*int64{&r.ParamsBytes, &r.GradsBytes, &r.OptimizerBytes, &r.SavedBytes, &r.TransientBytes}
}

// Evaluate runs a plan for one method: it measures the fit shapes and the check shape
// and evaluates the real depth at every reported size. Parameters, gradients,
// optimizer state and saved activations are fitted linear in the token count N
// between neighbouring fit counts and linear in the depth L (exact for layer-stacked
// models whose saved tensors are proportional to N — attention is fused, so nothing
// is quadratic). The peak is followed moment by moment: at each fit depth, every
// moment of the step (tensor.TraceMoments) is evaluated linear in N on its own and
// the largest taken, and what that peak holds beyond the resident components (the
// transient) is then linear in L, which holds while the peak falls at the same place
// in the layer stack at every depth (the check shape, deeper than the fit, tests it).
// It returns the measured rows (without their traces), the evaluated rows, and the
// relative error of the prediction of the check shape's peak.
//
// auto chooses its path per layer from the token count, so for auto the fit is made
// with auto deciding as it would at each reported size: a first measured shape shows
// the choices every adapter makes there, and sizes with the same choices share one
// fit.
func Evaluate(p Plan, m Method, rank int) (measured, evaluated []Row, checkErr float64, err error) {
	c := &measureCache{rows: map[measureKey]Row{}}
	if m.Form != adapters.Auto {
		ev, e, err := evaluate(c, p, m, rank, 0)
		return c.rowsOut(), ev, e, err
	}
	fitAt := map[string]int{} // auto's choices -> the size whose fit makes them
	depths, _ := p.depths()
	first := p.Shape(p.Fit[0], depths[0])
	for _, n := range p.Tokens {
		probe, err := c.measure(first, m, rank, n)
		if err != nil {
			return nil, nil, 0, err
		}
		at, ok := fitAt[probe.choices]
		if !ok {
			at, fitAt[probe.choices] = n, n
		}
		q := p
		q.Tokens = []int{n}
		ev, e, err := evaluate(c, q, m, rank, at)
		if err != nil {
			return nil, nil, 0, err
		}
		evaluated, checkErr = append(evaluated, ev...), max(checkErr, e)
	}
	return c.rowsOut(), evaluated, checkErr, nil
}

// measureKey identifies one measurement: a shape, and the size auto decides as if it
// ran at (0: the shape's own).
type measureKey struct {
	s      Shape
	autoAt int
}

// measureCache runs each measurement once and keeps the measured rows in order.
type measureCache struct {
	rows     map[measureKey]Row
	measured []Row
}

// rowsOut returns the measured rows without their traces, which only the fit reads.
func (c *measureCache) rowsOut() []Row {
	for i := range c.measured {
		c.measured[i].moments = nil
	}
	return c.measured
}

func (c *measureCache) measure(s Shape, m Method, rank int, autoAt int) (Row, error) {
	k := measureKey{s, autoAt}
	if r, ok := c.rows[k]; ok {
		return r, nil
	}
	r, err := measure(s, m, rank, autoAt)
	if err != nil {
		return Row{}, err
	}
	c.rows[k] = r
	c.measured = append(c.measured, r)
	return r, nil
}

// evaluate fits and evaluates; autoAt, when > 0, makes auto decide every measured
// shape as it would at autoAt tokens.
func evaluate(c *measureCache, p Plan, m Method, rank, autoAt int) (evaluated []Row, checkErr float64, err error) {
	depths, checkDepth := p.depths()
	type key struct{ l, n int }
	got := map[key]Row{}
	for _, l := range depths {
		for _, n := range p.Fit {
			r, err := c.measure(p.Shape(n, l), m, rank, autoAt)
			if err != nil {
				return nil, 0, err
			}
			got[key{l, n}] = r
		}
	}
	// seg returns the fit counts whose line evaluates n: the neighbours around it, or
	// the first or last two.
	seg := func(n int) (int, int) {
		i := 1
		for i < len(p.Fit)-1 && n > p.Fit[i] {
			i++
		}
		return p.Fit[i-1], p.Fit[i]
	}
	line := func(a, b float64, n1, n2, n int) float64 { return a + (b-a)/float64(n2-n1)*float64(n-n1) }
	// peakAt is the device's peak at a fit depth and n tokens: every moment of the
	// step's course is linear in N (it is a sum of tensors each of a fixed size or
	// proportional to N), so each is evaluated on its own and the peak is the largest.
	// Fitting the peak itself would not do: which moment holds it changes with N, from
	// token-independent temporaries (merged weights, full gradients) at few tokens to
	// per-token ones at many.
	peakAt := func(l, n int) (float64, error) {
		n1, n2 := seg(n)
		a, b := got[key{l, n1}].moments, got[key{l, n2}].moments
		if len(a) != len(b) || len(a) == 0 {
			return 0, fmt.Errorf("%s %s: the step has %d moments at %d tokens and %d at %d; the fit needs the same graph at every size",
				p.Model, m.Label(), len(a), n1, len(b), n2)
		}
		peak := 0.0
		for i := range a {
			if a[i].Op != b[i].Op {
				return 0, fmt.Errorf("%s %s: moment %d is %s at %d tokens and %s at %d; the fit needs the same graph at every size",
					p.Model, m.Label(), i, a[i].Op, n1, b[i].Op, n2)
			}
			peak = max(peak, line(float64(a[i].Live), float64(b[i].Live), n1, n2, n))
		}
		return peak, nil
	}
	predict := func(l, n int) (Row, error) {
		base := got[key{depths[0], p.Fit[0]}]
		out := base
		out.Tokens, out.Layers, out.Measured, out.StepS, out.moments = n, l, false, 0, nil
		if p.Depth == 0 {
			out.Layers = 0
		}
		// at evaluates a component linear in N at a fit depth.
		at := func(i, l int) float64 {
			n1, n2 := seg(n)
			r1, r2 := got[key{l, n1}], got[key{l, n2}]
			return line(float64(*fields(&r1)[i]), float64(*fields(&r2)[i]), n1, n2, n)
		}
		// The transient at a fit depth is what the peak holds beyond the resident
		// components.
		transient := func(l int) (float64, error) {
			peak, err := peakAt(l, n)
			return peak - at(fParams, l) - max(at(fSaved, l), at(fGrads, l)), err
		}
		for i, f := range fields(&out) {
			v0, v1 := 0.0, 0.0
			var err error
			if i == fTransient {
				v0, err = transient(depths[0])
				if err == nil && len(depths) == 2 {
					v1, err = transient(depths[1])
				}
			} else {
				v0 = at(i, depths[0])
				if len(depths) == 2 {
					v1 = at(i, depths[1])
				}
			}
			if err != nil {
				return Row{}, err
			}
			// Linear in L from the fit depths.
			if len(depths) == 2 {
				v0 += (v1 - v0) * float64(l-depths[0])
			}
			*f = int64(math.Round(v0))
		}
		out.TransientBytes = max(0, out.TransientBytes)
		out.PeakBytes = out.ParamsBytes + out.OptimizerBytes + max(out.SavedBytes, out.GradsBytes) + out.TransientBytes
		return out, nil
	}
	if p.Check > 0 {
		r, err := c.measure(p.Shape(p.Check, checkDepth), m, rank, autoAt)
		if err != nil {
			return nil, 0, err
		}
		e, err := predict(checkDepth, p.Check)
		if err != nil {
			return nil, 0, err
		}
		checkErr = math.Abs(float64(e.PeakBytes-r.PeakBytes)) / float64(r.PeakBytes)
	}
	for _, n := range p.Tokens {
		r, err := predict(p.Depth, n)
		if err != nil {
			return nil, 0, err
		}
		r.FitError = checkErr
		evaluated = append(evaluated, r)
	}
	return evaluated, checkErr, nil
}

// Claims checks the paper's statements on evaluated rows and returns one line each,
// for each way of keeping saved activations the rows hold.
func Claims(rows []Row) []string {
	var out []string
	for _, act := range []string{"f32", "bf16"} {
		var sub []Row
		for _, r := range rows {
			if r.Activations == act {
				sub = append(sub, r)
			}
		}
		for _, c := range claims(sub) {
			out = append(out, fmt.Sprintf("[%s saved activations] %s", act, c))
		}
	}
	return out
}

func claims(rows []Row) []string {
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
	// (c), memory: auto at or below both other forms at every evaluated size.
	for _, model := range []string{"llama-1b", "dit-xl-2", "sd15"} {
		sizes, worst := 0, 0.0
		for _, r := range rows {
			if r.Model != model || r.Measured || methodLabel(r) != "lora auto" {
				continue
			}
			w, a := find(model, r.Tokens, "lora weight"), find(model, r.Tokens, "lora activation")
			ad, a1 := find(model, r.Tokens, "lora auto p=0.1"), find(model, r.Tokens, "lora activation p=0.1")
			if w == nil || a == nil || ad == nil || a1 == nil {
				continue
			}
			sizes++
			worst = max(worst, float64(r.PeakBytes)/float64(min(w.PeakBytes, a.PeakBytes)), float64(ad.PeakBytes)/float64(a1.PeakBytes))
		}
		if sizes > 0 {
			out = append(out, fmt.Sprintf("(c) %s, %d sizes: auto's peak is at most %.3f× the lower of the weight and activation forms' (dropout 0), and of the activation form's with dropout 0.1",
				model, sizes, worst))
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

func methodLabel(r Row) string { return r.method().Label() }

func above(b bool) string {
	if b {
		return "above, as the paper reports"
	}
	return "not above"
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }

// TimedShapes are the shapes bench forms times for p: the two smallest fit token
// counts at the first fit depth (the whole model for sd15). The larger measured
// shapes take minutes per step on two cores.
func (p Plan) TimedShapes() []Shape {
	depths, _ := p.depths()
	var out []Shape
	for _, n := range p.Fit[:2] {
		out = append(out, p.Shape(n, depths[0]))
	}
	return out
}

// Shape is the plan's shape of tokens at layers layers (ignored for a model measured
// whole), with its batch and way of keeping saved activations.
func (p Plan) Shape(tokens, layers int) Shape {
	if p.Depth == 0 {
		layers = 0
	}
	return Shape{Model: p.Model, Layers: layers, Tokens: tokens, Batch: p.Batch, BF16: p.BF16}
}

// depths returns the depths the fit measures, 2 and 3 for layer-stacked models and 0
// (the whole model) for sd15, and the depth of the check shape. The first layer is not
// typical (under an adapter its input, the frozen embedding, needs no gradient, so it
// saves less, and with packed activations that moves where the peak falls); from the
// second layer on, every layer adds the same bytes.
func (p Plan) depths() (fit []int, check int) {
	if p.Depth == 0 {
		return []int{0}, 0
	}
	return []int{2, 3}, p.CheckDepth
}
