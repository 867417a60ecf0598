package membench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/dit"
	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
	"github.com/difftune/difftune/unet"
)

// Method is what a row trains: every parameter ("full"), or adapters of a kind in a
// form with an input dropout.
type Method struct {
	Name    string // "full" or "adapter"
	Adapter adapters.Kind
	Form    adapters.Form
	Dropout float64
}

// Label names the method in tables ("LoRA activation p=0.1").
func (m Method) Label() string {
	if m.Name == "full" {
		return "full finetuning"
	}
	s := fmt.Sprintf("%s %s", m.Adapter, m.Form)
	if m.Dropout > 0 {
		s += fmt.Sprintf(" p=%g", m.Dropout)
	}
	return s
}

// Key names the method on the command line: "full", "lora-auto-p0.1".
func (m Method) Key() string {
	if m.Name == "full" {
		return "full"
	}
	return strings.NewReplacer(" p=", "-p", " ", "-").Replace(m.Label())
}

// method is the Method a row was measured with.
func (r Row) method() Method {
	return Method{Name: r.Method, Adapter: adapters.Kind(r.Adapter), Form: adapters.Form(r.Form), Dropout: r.Dropout}
}

// Methods are the rows the issue asks for.
var Methods = []Method{
	{Name: "full"},
	{Name: "adapter", Adapter: adapters.LoRA, Form: adapters.Activation},
	{Name: "adapter", Adapter: adapters.LoRA, Form: adapters.Activation, Dropout: 0.1},
	{Name: "adapter", Adapter: adapters.LoRA, Form: adapters.Weight},
	{Name: "adapter", Adapter: adapters.LoRA, Form: adapters.Auto},
	{Name: "adapter", Adapter: adapters.LoRA, Form: adapters.Auto, Dropout: 0.1},
	{Name: "adapter", Adapter: adapters.DoRA, Form: adapters.Activation},
	{Name: "adapter", Adapter: adapters.DoRA, Form: adapters.Weight},
}

// Row is one line of `difftune bench memory --json`.
type Row struct {
	Model   string  `json:"model"`
	Tokens  int     `json:"tokens"` // sequence length (llama) or image tokens (dit, sd15)
	Batch   int     `json:"batch"`
	Method  string  `json:"method"`
	Adapter string  `json:"adapter"`
	Form    string  `json:"form"`
	Dropout float64 `json:"dropout"`
	Rank    int     `json:"rank"`
	// Activations is how saved activations are kept: "f32", or "bf16" when they are
	// packed as mixed-precision training keeps them (tensor.SetSavedBF16).
	Activations    string  `json:"activations"`
	Layers         int     `json:"layers,omitempty"`
	ParamsBytes    int64   `json:"params_bytes"`
	GradsBytes     int64   `json:"grads_bytes"`
	OptimizerBytes int64   `json:"optimizer_bytes"`
	SavedBytes     int64   `json:"saved_bytes"`
	TransientBytes int64   `json:"transient_bytes"`
	PeakBytes      int64   `json:"peak_bytes"`
	Measured       bool    `json:"measured"`
	StepS          float64 `json:"step_s"` // forward and backward (measured rows)
	// FitError, on evaluated rows, is the relative error of the same fit's peak at
	// the measured check shape.
	FitError float64 `json:"fit_error,omitempty"`
	// choices are the paths the adapters took, in order (see adapters.Adapter.Choice).
	choices string
	// moments is the step's course on the device (tensor.TraceMoments), which the fit
	// follows moment by moment.
	moments []tensor.Moment
}

// Shape selects a model size to run: the model name, its depth (0: the real one;
// llama and dit only) and tokens.
type Shape struct {
	Model          string
	Layers, Tokens int
	Batch          int
	// BF16 packs saved activations to bfloat16 (tensor.SetSavedBF16).
	BF16 bool
}

// model is a runnable benchmark model: its modules, a training loss, and cleanup.
type model struct {
	m       nn.Module
	loss    func() (*tensor.Tensor, error)
	release func()
	targets adapters.Targets
	// context reports the adapters whose calls see a fixed number of tokens, whatever
	// the image's (SD1.5's cross-attention keys and values read the 77-token text).
	context func(name string) bool
}

// build makes the model of s with zero or small random weights (memory does not
// depend on the values) and a loss closure over fixed inputs.
func build(s Shape) (model, error) {
	rng := rand.New(rand.NewPCG(1, 1))
	switch s.Model {
	case "llama-1b":
		c := Llama32_1B
		if s.Layers > 0 {
			c.Layers = s.Layers
		}
		m := NewLlama(c)
		ids := make([][]int, s.Batch)
		for i := range ids {
			ids[i] = make([]int, s.Tokens)
			for j := range ids[i] {
				ids[i][j] = rng.IntN(c.Vocab)
			}
		}
		return model{m: m, loss: func() (*tensor.Tensor, error) { return m.Loss(ids) },
			release: func() { nn.ReleaseParams(m) },
			targets: adapters.Targets{"*.self_attn.*_proj", "*.mlp.*_proj"}}, nil
	case "dit-xl-2":
		c := dit.Presets["dit-xl-2"].(dit.DiTConfig)
		if s.Layers > 0 {
			c.Depth = s.Layers
		}
		side := int(math.Round(math.Sqrt(float64(s.Tokens))))
		if side*side != s.Tokens {
			return model{}, fmt.Errorf("dit-xl-2: %d tokens is not a square grid", s.Tokens)
		}
		c.InputSize = side * c.PatchSize
		m, err := dit.NewDiT(c, rng) // DiT's init is cheap next to a 1B embedding table
		if err != nil {
			return model{}, err
		}
		x := tensor.Zeros(s.Batch, c.InChannels, c.InputSize, c.InputSize)
		eps := tensor.Zeros(x.Shape()...)
		ts, ys := make([]float32, s.Batch), make([]int, s.Batch)
		return model{m: m, loss: func() (*tensor.Tensor, error) {
			out, err := m.Forward(x, ts, ys)
			if err != nil {
				return nil, err
			}
			pred := tensor.Slice(out, 1, 0, c.InChannels)
			defer tensor.Release(out, pred)
			return tensor.MSELoss(pred, eps), nil
		}, release: func() { m.Release(); tensor.Release(x, eps) }, targets: adapters.Targets{adapters.TargetAttnMLP}}, nil
	case "sd15":
		c := unet.Presets["sd15"].Config
		side := int(math.Round(math.Sqrt(float64(s.Tokens))))
		if side*side != s.Tokens || side%8 != 0 {
			return model{}, fmt.Errorf("sd15: %d tokens is not a square latent with a side divisible by 8", s.Tokens)
		}
		m, err := unet.New(c)
		if err != nil {
			return model{}, err
		}
		x := tensor.Zeros(s.Batch, c.InChannels, side, side)
		ctx := tensor.Zeros(s.Batch, 77, c.CrossAttentionDim[0])
		eps := tensor.Zeros(x.Shape()...)
		ts := make([]float32, s.Batch)
		return model{m: m, loss: func() (*tensor.Tensor, error) {
			out := m.Forward(x, ts, ctx)
			defer out.Release()
			return tensor.MSELoss(out, eps), nil
		}, release: func() { nn.ReleaseParams(m); tensor.Release(x, ctx, eps) }, targets: adapters.Targets{adapters.TargetAttnMLP},
			context: unetContext}, nil
	}
	return model{}, fmt.Errorf("model %q: want llama-1b, dit-xl-2 or sd15", s.Model)
}

// unetContext reports the UNet adapters that read the text context: the
// cross-attention's keys and values.
func unetContext(name string) bool {
	return strings.HasSuffix(name, ".attn2.to_k") || strings.HasSuffix(name, ".attn2.to_v")
}

// Measure runs one training step (forward, backward, AdamW) of shape s with method m
// and adapter rank, and splits the step's peak live bytes into parameters, gradients,
// optimizer state, saved activations (their peak) and the rest (transients).
func Measure(s Shape, m Method, rank int) (Row, error) {
	r, err := measure(s, m, rank, 0)
	r.moments = nil
	return r, err
}

// measure is Measure with auto deciding as it would at autoAt tokens (0: at the
// shape's own): each adapter call's token count is scaled by autoAt/s.Tokens, except
// where the call reads the text context.
func measure(s Shape, m Method, rank int, autoAt int) (Row, error) {
	mod, err := build(s)
	if err != nil {
		return Row{}, err
	}
	defer mod.release()
	var params []*tensor.Tensor
	var set *adapters.Set
	row := Row{Model: s.Model, Tokens: s.Tokens, Batch: s.Batch, Method: m.Name, Layers: s.Layers, Measured: true, Activations: "f32"}
	if s.BF16 {
		row.Activations = "bf16"
	}
	defer tensor.SetSavedBF16(tensor.SetSavedBF16(s.BF16))
	if m.Name == "full" {
		nn.SetTrainable(mod.m, true)
		for _, p := range mod.m.Params("") {
			params = append(params, p.T())
		}
	} else {
		cfg := adapters.Config{Kind: m.Adapter, Rank: rank, Form: m.Form, Dropout: m.Dropout, Seed: 1}
		if autoAt > 0 {
			cfg.AutoTokens = func(name string, n int) int {
				if mod.context != nil && mod.context(name) {
					return n
				}
				return (n*autoAt + s.Tokens/2) / s.Tokens
			}
		}
		set, err = adapters.Inject(mod.m, cfg, mod.targets)
		if err != nil {
			return Row{}, err
		}
		defer set.Remove()
		set.Train(true)
		params = set.Trainable()
		row.Adapter, row.Form, row.Dropout, row.Rank = string(m.Adapter), string(m.Form), m.Dropout, rank
	}
	for _, p := range mod.m.Params("") {
		row.ParamsBytes += p.T().Bytes()
	}
	if m.Name != "full" {
		for _, p := range params {
			row.ParamsBytes += p.Bytes()
		}
	}
	// AdamW's two float32 moments per trainable element are resident for the whole
	// step, so they are added to the measured peak rather than allocated: a full
	// finetuning of SD1.5 would otherwise need 7 GB more to be measured at all.
	for _, p := range params {
		row.GradsBytes += p.Bytes()
	}
	row.OptimizerBytes = 2 * row.GradsBytes
	tensor.CPU.ResetPeak()
	t0 := time.Now()
	row.moments = tensor.TraceMoments(func() {
		var loss *tensor.Tensor
		if loss, err = mod.loss(); err == nil {
			tensor.Backward(loss)
			loss.Release()
		}
	})
	if err != nil {
		return Row{}, err
	}
	row.StepS = time.Since(t0).Seconds() // forward and backward
	if set != nil {
		var cs []string
		for _, a := range set.Adapters {
			cs = append(cs, a.Choice)
		}
		row.choices = strings.Join(cs, ",")
	}
	for _, p := range params {
		p.ZeroGrad()
	}
	st := tensor.CPU.Stats()
	row.PeakBytes = st.Peak + row.OptimizerBytes
	row.SavedBytes = st.PeakSaved
	// Saved activations and gradients do not peak together: backward frees the
	// activations as the gradients appear. So peak = params + optimizer +
	// max(saved, grads) + transient, and the transient (the largest op temporaries and
	// the input batch) is what remains; it is never negative, since the peak covers both
	// the moment of most saved bytes and the end of backward.
	row.TransientBytes = row.PeakBytes - row.ParamsBytes - row.OptimizerBytes - max(row.SavedBytes, row.GradsBytes)
	return row, nil
}
