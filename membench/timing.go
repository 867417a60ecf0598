package membench

import (
	"math"
	"slices"
	"time"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/tensor"
)

// FormTimes is one shape's step times per adapter form: LoRA forward and backward in
// the activation, weight and auto forms (dropout 0), and activation and auto with
// dropout, each the median of interleaved repetitions.
type FormTimes struct {
	Model   string  `json:"model"`
	Layers  int     `json:"layers,omitempty"`
	Tokens  int     `json:"tokens"`
	Batch   int     `json:"batch"`
	Rank    int     `json:"rank"`
	Dropout float64 `json:"dropout"`
	Reps    int     `json:"reps"`
	// Seconds per form ("activation", "weight", "auto").
	StepS map[string]float64 `json:"step_s"`
	// AutoOverFastest is auto's time over the fastest other form's.
	AutoOverFastest float64 `json:"auto_over_fastest"`
	// Choices counts the paths auto took ("merged", "rank-r", ...).
	Choices map[string]int `json:"auto_choices"`
}

// TimeForms times LoRA's forms on shape s: one model, the forms injected in turn and
// the repetitions interleaved (activation, weight, auto, activation, ...), so that a
// shared machine's load drifts over all forms alike. With dropout > 0 the weight form
// is left out: it cannot express input dropout.
func TimeForms(s Shape, rank int, dropout float64, reps int) (FormTimes, error) {
	mod, err := build(s)
	if err != nil {
		return FormTimes{}, err
	}
	defer mod.release()
	forms := []adapters.Form{adapters.Activation, adapters.Weight, adapters.Auto}
	if dropout > 0 {
		forms = []adapters.Form{adapters.Activation, adapters.Auto}
	}
	sets := make([]*adapters.Set, len(forms))
	defer func() {
		for _, set := range sets {
			if set != nil {
				set.Remove()
			}
		}
	}()
	for i, f := range forms {
		// Each set is made once; a form is attached before its run by injecting its
		// set's adapters again (Inject replaces what a layer holds).
		set, err := adapters.Inject(mod.m, adapters.Config{Kind: adapters.LoRA, Rank: rank, Form: f, Dropout: dropout, Seed: 1}, mod.targets)
		if err != nil {
			return FormTimes{}, err
		}
		set.Train(true)
		sets[i] = set
	}
	step := func(set *adapters.Set) (float64, error) {
		set.Attach()
		t0 := time.Now()
		loss, err := mod.loss()
		if err != nil {
			return 0, err
		}
		tensor.Backward(loss)
		d := time.Since(t0).Seconds()
		loss.Release()
		for _, p := range set.Trainable() {
			p.ZeroGrad()
		}
		return d, nil
	}
	// One untimed round first: it fills the allocator's pool and the caches.
	for _, set := range sets {
		if _, err := step(set); err != nil {
			return FormTimes{}, err
		}
	}
	times := make([][]float64, len(forms))
	for range reps {
		for i, set := range sets {
			d, err := step(set)
			if err != nil {
				return FormTimes{}, err
			}
			times[i] = append(times[i], d)
		}
	}
	r := FormTimes{Model: s.Model, Layers: s.Layers, Tokens: s.Tokens, Batch: s.Batch, Rank: rank, Dropout: dropout, Reps: reps,
		StepS: map[string]float64{}, Choices: map[string]int{}}
	fastest := math.Inf(1)
	for i, f := range forms {
		slices.Sort(times[i])
		r.StepS[string(f)] = times[i][len(times[i])/2]
		if f != adapters.Auto {
			fastest = min(fastest, r.StepS[string(f)])
		}
	}
	r.AutoOverFastest = r.StepS[string(adapters.Auto)] / fastest
	for _, a := range sets[len(sets)-1].Adapters {
		r.Choices[a.Choice]++
	}
	return r, nil
}
