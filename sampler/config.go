package sampler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// Config is a diffusers scheduler config (scheduler/scheduler_config.json) with the
// fields difftune's samplers use. The zero value of a field means "the default of the
// scheduler class that New builds", as diffusers' from_config does when a field is
// missing; the fields whose class default is true are *bool so that false can be
// said. Fields not listed here are ignored when loading.
type Config struct {
	ClassName         string    `json:"_class_name"`         // informational; New decides the class
	NumTrainTimesteps int       `json:"num_train_timesteps"` // T; default 1000
	BetaStart         float64   `json:"beta_start"`          // default 0.0001
	BetaEnd           float64   `json:"beta_end"`            // default 0.02
	BetaSchedule      string    `json:"beta_schedule"`       // linear (default), scaled_linear, squaredcos_cap_v2
	TrainedBetas      []float64 `json:"trained_betas"`       // overrides the schedule when set
	PredictionType    string    `json:"prediction_type"`     // epsilon (default), v_prediction, sample; flow for flow_euler

	// RescaleBetasZeroSNR rescales the betas to zero terminal SNR; the sigma-based
	// samplers then use ᾱ_T = 2⁻²⁴ instead of 0, as diffusers does.
	RescaleBetasZeroSNR bool `json:"rescale_betas_zero_snr"`

	// TimestepSpacing is leading, trailing or linspace; the default depends on the class
	// (DDIM/DDPM leading, the others linspace).
	TimestepSpacing string `json:"timestep_spacing"`
	StepsOffset     int    `json:"steps_offset"` // added to leading timesteps

	// DDIM / DDPM.
	ClipSample      *bool   `json:"clip_sample"`       // clamp x̂₀ to ±ClipSampleRange; default true
	ClipSampleRange float64 `json:"clip_sample_range"` // default 1
	SetAlphaToOne   *bool   `json:"set_alpha_to_one"`  // DDIM: ᾱ after the last step is 1 (else ᾱ_0); default true
	Thresholding    bool    `json:"thresholding"`      // dynamic thresholding: not supported, an error
	VarianceType    string  `json:"variance_type"`     // DDPM: fixed_small (default) or fixed_small_log

	// Euler family and DPM-Solver.
	UseKarrasSigmas   bool     `json:"use_karras_sigmas"`
	SigmaMin          *float64 `json:"sigma_min"`          // Karras range override (Euler); nil: from the schedule
	SigmaMax          *float64 `json:"sigma_max"`          // Karras range override (Euler)
	FinalSigmasType   string   `json:"final_sigmas_type"`  // zero (default) or sigma_min
	InterpolationType string   `json:"interpolation_type"` // linear (only)
	TimestepType      string   `json:"timestep_type"`      // discrete (default) or continuous (Euler, v-prediction)

	// DPM-Solver++.
	AlgorithmType    string  `json:"algorithm_type"`     // dpmsolver++ (only)
	SolverOrder      int     `json:"solver_order"`       // 1 or 2 (default 2)
	SolverType       string  `json:"solver_type"`        // midpoint (default) or heun
	LowerOrderFinal  *bool   `json:"lower_order_final"`  // default true
	EulerAtFinal     bool    `json:"euler_at_final"`     // last step first order
	LambdaMinClipped float64 `json:"lambda_min_clipped"` // default −Inf; ignored unless finite

	// Flow matching (FlowMatchEulerDiscreteScheduler).
	Shift              float64 `json:"shift"`                // default 1
	UseDynamicShifting bool    `json:"use_dynamic_shifting"` // resolution-dependent shift: set Mu
	BaseShift          float64 `json:"base_shift"`           // default 0.5
	MaxShift           float64 `json:"max_shift"`            // default 1.15
	BaseImageSeqLen    int     `json:"base_image_seq_len"`   // default 256
	MaxImageSeqLen     int     `json:"max_image_seq_len"`    // default 4096

	// Eta is DDIM's η (a step argument in diffusers, difftune's field): 0 is
	// deterministic DDIM, 1 ancestral DDPM-like noise drawn from the NoiseSource.
	Eta float64 `json:"-"`

	// Mu is the dynamic shift μ (difftune's, not in diffusers' file; see FlowShiftMu).
	Mu float64 `json:"-"`
	// FlowShiftOnce applies the flow shift once (difftune's, not in diffusers' file):
	// timesteps are spaced linearly in the unshifted σ and then shifted. The default
	// false reproduces diffusers v0.31.0, which shifts twice (see flow_euler in New).
	FlowShiftOnce bool `json:"-"`
}

// Bool returns a pointer to b, for Config's tri-state fields.
func Bool(b bool) *bool { return &b }

// FlowShiftMu returns the dynamic shift μ that diffusers' Flux/SD3 pipelines compute
// (calculate_shift) for an image of seqLen latent tokens: μ is linear in seqLen from
// base_shift at base_image_seq_len to max_shift at max_image_seq_len.
func (c Config) FlowShiftMu(seqLen int) float64 {
	c = c.withDefaults("flow_euler")
	m := (c.MaxShift - c.BaseShift) / float64(c.MaxImageSeqLen-c.BaseImageSeqLen)
	b := c.BaseShift - m*float64(c.BaseImageSeqLen)
	return float64(seqLen)*m + b
}

// withDefaults fills unset fields with the defaults of the diffusers class behind
// sampler name ("" for the generic ones).
func (c Config) withDefaults(name string) Config {
	if c.NumTrainTimesteps == 0 {
		c.NumTrainTimesteps = 1000
	}
	if c.BetaStart == 0 {
		c.BetaStart = 0.0001
	}
	if c.BetaEnd == 0 {
		c.BetaEnd = 0.02
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.BetaSchedule, Linear)
	if name == "flow_euler" {
		def(&c.PredictionType, Flow)
	}
	def(&c.PredictionType, Epsilon)
	switch name {
	case "ddim", "ddpm":
		def(&c.TimestepSpacing, "leading")
	default:
		def(&c.TimestepSpacing, "linspace")
	}
	defb := func(p **bool, v bool) {
		if *p == nil {
			*p = Bool(v)
		}
	}
	defb(&c.ClipSample, name == "ddim" || name == "ddpm")
	defb(&c.SetAlphaToOne, true)
	defb(&c.LowerOrderFinal, true)
	if c.ClipSampleRange == 0 {
		c.ClipSampleRange = 1
	}
	def(&c.VarianceType, "fixed_small")
	def(&c.FinalSigmasType, "zero")
	def(&c.InterpolationType, "linear")
	def(&c.TimestepType, "discrete")
	def(&c.AlgorithmType, "dpmsolver++")
	def(&c.SolverType, "midpoint")
	if c.SolverOrder == 0 {
		c.SolverOrder = 2
	}
	if c.LambdaMinClipped == 0 {
		c.LambdaMinClipped = math.Inf(-1)
	}
	if c.Shift == 0 {
		c.Shift = 1
	}
	if c.BaseShift == 0 {
		c.BaseShift = 0.5
	}
	if c.MaxShift == 0 {
		c.MaxShift = 1.15
	}
	if c.BaseImageSeqLen == 0 {
		c.BaseImageSeqLen = 256
	}
	if c.MaxImageSeqLen == 0 {
		c.MaxImageSeqLen = 4096
	}
	return c
}

// validate checks the resolved config's enumerations, naming the field at fault.
// Fields that only one sampler reads are checked only for that sampler (name; ""
// checks the shared fields), so that a config written for one class can drive
// another, as diffusers' from_config allows.
func (c Config) validate(name string) error {
	oneOf := func(field, v string, ok ...string) error {
		if slices.Contains(ok, v) {
			return nil
		}
		return fmt.Errorf("field %q: %q is not one of %s", field, v, strings.Join(ok, ", "))
	}
	checks := []error{
		oneOf("beta_schedule", c.BetaSchedule, Linear, ScaledLinear, SquaredCosCapV2),
		oneOf("prediction_type", c.PredictionType, Epsilon, VPrediction, OriginalSample, Flow),
		oneOf("timestep_spacing", c.TimestepSpacing, "leading", "trailing", "linspace"),
	}
	dpm := name == "dpmpp_2m" || name == "dpmpp_2m_karras"
	switch {
	case name == "euler":
		checks = append(checks,
			oneOf("final_sigmas_type", c.FinalSigmasType, "zero", "sigma_min"),
			oneOf("interpolation_type", c.InterpolationType, "linear"),
			oneOf("timestep_type", c.TimestepType, "discrete", "continuous"))
	case dpm:
		checks = append(checks,
			oneOf("final_sigmas_type", c.FinalSigmasType, "zero", "sigma_min"),
			oneOf("algorithm_type", c.AlgorithmType, "dpmsolver++"),
			oneOf("solver_type", c.SolverType, "midpoint", "heun"))
	case name == "ddpm":
		checks = append(checks, oneOf("variance_type", c.VarianceType, "fixed_small", "fixed_small_log"))
	}
	for _, e := range checks {
		if e != nil {
			return e
		}
	}
	switch {
	case c.NumTrainTimesteps < 2:
		return fmt.Errorf("field \"num_train_timesteps\": %d, want at least 2", c.NumTrainTimesteps)
	case dpm && (c.SolverOrder < 1 || c.SolverOrder > 2):
		return fmt.Errorf("field \"solver_order\": %d, want 1 or 2 (third order is not implemented)", c.SolverOrder)
	case c.Thresholding && (dpm || name == "ddim" || name == "ddpm"):
		return fmt.Errorf("field \"thresholding\": dynamic thresholding is not supported; set it to false")
	case name == "flow_euler" && c.Shift <= 0:
		return fmt.Errorf("field \"shift\": %v, want > 0", c.Shift)
	case c.TrainedBetas != nil && len(c.TrainedBetas) != c.NumTrainTimesteps:
		return fmt.Errorf("field \"trained_betas\": %d values, num_train_timesteps is %d", len(c.TrainedBetas), c.NumTrainTimesteps)
	}
	return nil
}

// LoadConfig reads a diffusers scheduler config.json. Python's bare Infinity, -Infinity
// and NaN (json.dumps writes them, e.g. lambda_min_clipped) are accepted. Unknown keys
// are ignored; null means "default". The shared fields are checked here, the fields
// of one class by New. Errors name the file and the field.
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load scheduler config: %w", err)
	}
	c, err := ParseConfig(raw)
	if err != nil {
		return Config{}, fmt.Errorf("load scheduler config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses the bytes of a diffusers scheduler config (see LoadConfig).
func ParseConfig(raw []byte) (Config, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(pythonJSON(raw), &fields); err != nil {
		return Config{}, fmt.Errorf("not a JSON object: %w", err)
	}
	var c Config
	set := func(key string, dst any) error {
		v, ok := fields[key]
		if !ok || string(v) == "null" {
			return nil
		}
		if f, isFloat := dst.(*float64); isFloat {
			var s string
			if json.Unmarshal(v, &s) == nil {
				switch s {
				case "Infinity":
					*f = math.Inf(1)
				case "-Infinity":
					*f = math.Inf(-1)
				case "NaN":
					*f = math.NaN()
				default:
					return fmt.Errorf("field %q: %s is not a number", key, v)
				}
				return nil
			}
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("field %q: %s: want %s", key, v, kindOf(dst))
		}
		return nil
	}
	var sigmaMin, sigmaMax float64
	var clip, alphaOne, lowerFinal bool
	for _, f := range []struct {
		key string
		dst any
	}{
		{"_class_name", &c.ClassName}, {"num_train_timesteps", &c.NumTrainTimesteps},
		{"beta_start", &c.BetaStart}, {"beta_end", &c.BetaEnd}, {"beta_schedule", &c.BetaSchedule},
		{"trained_betas", &c.TrainedBetas}, {"prediction_type", &c.PredictionType},
		{"rescale_betas_zero_snr", &c.RescaleBetasZeroSNR}, {"timestep_spacing", &c.TimestepSpacing},
		{"steps_offset", &c.StepsOffset}, {"clip_sample_range", &c.ClipSampleRange},
		{"thresholding", &c.Thresholding}, {"variance_type", &c.VarianceType},
		{"use_karras_sigmas", &c.UseKarrasSigmas}, {"final_sigmas_type", &c.FinalSigmasType},
		{"interpolation_type", &c.InterpolationType}, {"timestep_type", &c.TimestepType},
		{"algorithm_type", &c.AlgorithmType}, {"solver_order", &c.SolverOrder},
		{"solver_type", &c.SolverType}, {"euler_at_final", &c.EulerAtFinal},
		{"lambda_min_clipped", &c.LambdaMinClipped}, {"shift", &c.Shift},
		{"use_dynamic_shifting", &c.UseDynamicShifting}, {"base_shift", &c.BaseShift},
		{"max_shift", &c.MaxShift}, {"base_image_seq_len", &c.BaseImageSeqLen},
		{"max_image_seq_len", &c.MaxImageSeqLen},
		{"sigma_min", &sigmaMin}, {"sigma_max", &sigmaMax},
		{"clip_sample", &clip}, {"set_alpha_to_one", &alphaOne}, {"lower_order_final", &lowerFinal},
	} {
		if err := set(f.key, f.dst); err != nil {
			return Config{}, err
		}
	}
	present := func(k string) bool { v, ok := fields[k]; return ok && string(v) != "null" }
	if present("sigma_min") {
		c.SigmaMin = &sigmaMin
	}
	if present("sigma_max") {
		c.SigmaMax = &sigmaMax
	}
	if present("clip_sample") {
		c.ClipSample = Bool(clip)
	}
	if present("set_alpha_to_one") {
		c.SetAlphaToOne = Bool(alphaOne)
	}
	if present("lower_order_final") {
		c.LowerOrderFinal = Bool(lowerFinal)
	}
	for _, b := range []string{"use_beta_sigmas", "use_exponential_sigmas", "use_lu_lambdas"} {
		var on bool
		if err := set(b, &on); err != nil {
			return Config{}, err
		}
		if on {
			return Config{}, fmt.Errorf("field %q: true is not supported (use use_karras_sigmas or the default spacing)", b)
		}
	}
	if err := c.withDefaults("").validate(""); err != nil {
		return Config{}, err
	}
	return c, nil
}

func kindOf(dst any) string {
	switch dst.(type) {
	case *string:
		return "a string"
	case *int:
		return "an integer"
	case *float64:
		return "a number"
	case *bool:
		return "true or false"
	case *[]float64:
		return "a list of numbers"
	}
	return fmt.Sprintf("%T", dst)
}

// pythonJSON quotes the bare Infinity, -Infinity and NaN tokens that Python's json
// module writes, outside strings, so that encoding/json accepts the file.
func pythonJSON(raw []byte) []byte {
	var out bytes.Buffer
	inStr, esc := false, false
	for i := 0; i < len(raw); i++ {
		ch := raw[i]
		if inStr {
			out.WriteByte(ch)
			switch {
			case esc:
				esc = false
			case ch == '\\':
				esc = true
			case ch == '"':
				inStr = false
			}
			continue
		}
		if ch == '"' {
			inStr = true
			out.WriteByte(ch)
			continue
		}
		matched := false
		for _, tok := range []string{"-Infinity", "Infinity", "NaN"} {
			if bytes.HasPrefix(raw[i:], []byte(tok)) {
				out.WriteString(`"` + tok + `"`)
				i += len(tok) - 1
				matched = true
				break
			}
		}
		if !matched {
			out.WriteByte(ch)
		}
	}
	return out.Bytes()
}
