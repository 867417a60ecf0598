package train

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// runState is the JSON record stored with a resumable state.
type runState struct {
	Step     int     `json:"step"`
	OptSteps int     `json:"optimizer_steps"`
	RNGPos   uint64  `json:"rng_position"`
	Data     string  `json:"data_state"` // the data loader's own state
	Adapter  string  `json:"adapter"`    // the set's summary: a resumed run must match it
	Version  int     `json:"version"`
	LossEMA  float64 `json:"loss_ema"`
}

const stateVersion = 1

// SaveState writes everything a run needs to continue exactly — adapter weights,
// optimizer moments and counter, EMA weights, the step, the noise RNG position and the
// data loader's state (dataState) — to one safetensors file, atomically.
func (t *Trainer) SaveState(path, dataState string, lossEMA float64) error {
	if t.micro != 0 {
		return fmt.Errorf("save state: in the middle of a gradient-accumulation step (%d of %d micro-batches)", t.micro, t.cfg.GradAccum)
	}
	var recs []safetensors.Tensor
	for _, p := range t.set.Params() {
		recs = append(recs, f32Record("adapter."+p.Name, p.T()))
	}
	m, v := t.opt.Moments()
	for i := range m {
		recs = append(recs, f32Record(fmt.Sprintf("optimizer.m.%d", i), m[i]), f32Record(fmt.Sprintf("optimizer.v.%d", i), v[i]))
	}
	for i, e := range t.ema {
		recs = append(recs, f32Record(fmt.Sprintf("ema.%d", i), e))
	}
	st := runState{Step: t.Step, OptSteps: t.opt.Steps(), RNGPos: t.rng.Pos(), Data: dataState,
		Adapter: t.set.Summary(), Version: stateVersion, LossEMA: lossEMA}
	js, _ := json.Marshal(st)
	if err := safetensors.Write(path, recs, map[string]string{"difftune_state": string(js)}); err != nil {
		return fmt.Errorf("save resumable state: %w", err)
	}
	return nil
}

// LoadState restores a state written by SaveState into this trainer (built with the
// same model, adapter settings and config) and returns the data loader's state. It
// fails, naming the file and the mismatch, for a state of another run.
func (t *Trainer) LoadState(path string) (dataState string, lossEMA float64, err error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	var st runState
	if err := json.Unmarshal([]byte(f.Metadata()["difftune_state"]), &st); err != nil || st.Version != stateVersion {
		return "", 0, fmt.Errorf("%s: not a difftune training state (version %d, want %d)", path, st.Version, stateVersion)
	}
	if st.Adapter != t.set.Summary() {
		return "", 0, fmt.Errorf("%s: the state is for %q, this run has %q; resume with the same --adapter, --rank, --targets and model", path, st.Adapter, t.set.Summary())
	}
	m, v := t.opt.Moments()
	var dst []*tensor.Tensor
	var names []string
	for _, p := range t.set.Params() {
		dst, names = append(dst, p.T()), append(names, "adapter."+p.Name)
	}
	for i := range m {
		dst = append(dst, m[i], v[i])
		names = append(names, fmt.Sprintf("optimizer.m.%d", i), fmt.Sprintf("optimizer.v.%d", i))
	}
	for i, e := range t.ema {
		dst, names = append(dst, e), append(names, fmt.Sprintf("ema.%d", i))
	}
	// Check everything before changing anything.
	for i, name := range names {
		info, ok := f.Info(name)
		if !ok {
			return "", 0, fmt.Errorf("%s: tensor %q missing; was EMA or the optimizer different in that run?", path, name)
		}
		if !slices.Equal(info.Shape, dst[i].Shape()) || info.DType != safetensors.F32 {
			return "", 0, fmt.Errorf("%s: tensor %q is %s %v, want F32 %v", path, name, info.DType, info.Shape, dst[i].Shape())
		}
	}
	for i, name := range names {
		src, err := nn.ReadTensor(f, name)
		if err != nil {
			return "", 0, err
		}
		copy(dst[i].Data(), src.Data())
		src.Release()
	}
	t.Step, t.micro = st.Step, 0
	t.opt.SetSteps(st.OptSteps)
	t.rng.SetPos(st.RNGPos)
	return st.Data, st.LossEMA, nil
}

func f32Record(name string, t *tensor.Tensor) safetensors.Tensor {
	d := t.Data()
	b := make([]byte, 4*len(d))
	for i, v := range d {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: slices.Clone(t.Shape()), Data: b}
}

// EMAWeights copies the EMA weights into the adapter tensors and returns a function
// that puts the trained weights back (for saving or previewing with EMA). With EMA
// off it does nothing.
func (t *Trainer) EMAWeights() (restore func()) {
	if len(t.ema) == 0 {
		return func() {}
	}
	params := t.set.Trainable()
	saved := make([][]float32, len(params))
	for i, p := range params {
		saved[i] = slices.Clone(p.Data())
		copy(p.Data(), t.ema[i].Data())
	}
	return func() {
		for i, p := range params {
			copy(p.Data(), saved[i])
		}
	}
}
