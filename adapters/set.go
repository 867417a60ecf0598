package adapters

import (
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"strings"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// Set is the adapters attached to one model.
type Set struct {
	cfg      Config
	Adapters []*Adapter
	training bool
	step     uint64
}

// Config returns the configuration the set was made with.
func (s *Set) Config() Config { return s.cfg }

// Train turns dropout and module dropout on (training) or off (sampling).
func (s *Set) Train(on bool) { s.training = on }

// SetStep selects the dropout masks of a training step: the same step and seed give
// the same masks, on any machine and thread count.
func (s *Set) SetStep(step uint64) { s.step = step }

// stepState returns adapter i's input dropout, its seed for this step, and whether
// module dropout skips it this step.
func (s *Set) stepState(i int) (p float64, seed uint64, skip bool) {
	if !s.training {
		return 0, 0, false
	}
	seed = mix(s.cfg.Seed, s.step, uint64(i))
	skip = s.cfg.ModuleDropout > 0 && float64(mix(seed, 1, 2)>>11)/(1<<53) < s.cfg.ModuleDropout
	return s.cfg.Dropout, seed, skip
}

// mix hashes three words into one (splitmix64 finalizer over a combination).
func mix(a, b, c uint64) uint64 {
	z := a ^ (b+0x9E3779B97F4A7C15)*0xBF58476D1CE4E5B9 ^ (c+0x632BE59BD9B4E019)*0x94D049BB133111EB
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// Params returns every adapter tensor named as in a kohya file
// ("lora_unet_<path>.lora_down.weight") with the given key prefix ("lora_unet").
func (s *Set) Params() []nn.Param {
	var out []nn.Param
	for _, a := range s.Adapters {
		out = append(out, a.Params(KohyaName(a.Name)+".")...)
	}
	return out
}

// Trainable returns the adapters' trainable tensors.
func (s *Set) Trainable() []*tensor.Tensor {
	var out []*tensor.Tensor
	for _, a := range s.Adapters {
		out = append(out, a.leaves()...)
	}
	return out
}

// NumParams returns the number of trainable elements.
func (s *Set) NumParams() int64 {
	var n int64
	for _, t := range s.Trainable() {
		n += int64(t.Len())
	}
	return n
}

// Summary describes the set in one line: kind, rank, form, modules and parameters.
func (s *Set) Summary() string {
	var lin, conv int
	for _, a := range s.Adapters {
		if a.conv != nil {
			conv++
		} else {
			lin++
		}
	}
	return fmt.Sprintf("%s rank %d alpha %g, form %s: %d modules (%d linear, %d conv), %d trainable parameters",
		s.cfg.Kind, s.cfg.Rank, s.cfg.Alpha, s.cfg.Form, len(s.Adapters), lin, conv, s.NumParams())
}

// Attach makes the set's adapters the ones their layers run again, after another set
// was injected into the same model (to compare sets on one model).
func (s *Set) Attach() {
	for _, a := range s.Adapters {
		if a.linear != nil {
			a.linear.Adapter = a
		} else {
			a.conv.Adapter = a
		}
	}
}

// Remove detaches every adapter from its layer and releases the adapter tensors.
func (s *Set) Remove() {
	for _, a := range s.Adapters {
		if a.linear != nil && a.linear.Adapter == nn.LinearAdapter(a) {
			a.linear.Adapter = nil
		}
		if a.conv != nil && a.conv.Adapter == nn.ConvAdapter(a) {
			a.conv.Adapter = nil
		}
		tensor.Release(a.leaves()...)
	}
	s.Adapters = nil
}

// Targets selects the modules to adapt: presets and glob patterns over module paths
// ("*.attn1.to_q", "down_blocks.*"); a leading "!" excludes.
type Targets []string

// Target presets.
const (
	TargetAttn    = "attn"     // to_q, to_k, to_v, to_out.0; DiT qkv and proj
	TargetAttnMLP = "attn-mlp" // + feed-forward layers and proj_in/proj_out
	TargetFull    = "full"     // + every other Linear and Conv2d (resnets via LoCon), except conv_in/conv_out and embeddings
)

// ParseTargets splits a comma-separated --targets value.
func ParseTargets(s string) (Targets, error) {
	var t Targets
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if _, err := path.Match(strings.TrimPrefix(f, "!"), ""); err != nil {
			return nil, fmt.Errorf("--targets: pattern %q: %v", f, err)
		}
		t = append(t, f)
	}
	if len(t) == 0 {
		return nil, fmt.Errorf("--targets is empty: want attn, attn-mlp, full or module patterns")
	}
	return t, nil
}

var (
	attnLeaves = []string{"to_q", "to_k", "to_v", "to_out.0", "attn.qkv", "attn.proj"}
	mlpLeaves  = []string{"ff.net.0.proj", "ff.net.2", "mlp.fc1", "mlp.fc2", "proj_in", "proj_out"}
	// Excluded from "full": the model's input and output layers and embeddings.
	fullExcluded = []string{"conv_in", "conv_out", "x_embedder.proj", "pos_embed.proj", "final_layer.linear", "proj_out"}
)

func hasLeaf(name string, leaves []string) bool {
	for _, l := range leaves {
		if name == l || strings.HasSuffix(name, "."+l) {
			return true
		}
	}
	return false
}

// match reports whether the module at name (a Linear or, when conv, a Conv2d) is selected.
func (t Targets) match(name string, conv bool) bool {
	sel := false
	for _, p := range t {
		if strings.HasPrefix(p, "!") {
			if ok, _ := path.Match(p[1:], name); ok {
				return false
			}
			continue
		}
		switch p {
		case TargetAttn:
			sel = sel || (!conv && hasLeaf(name, attnLeaves))
		case TargetAttnMLP:
			sel = sel || (!conv && hasLeaf(name, attnLeaves)) || (hasLeaf(name, mlpLeaves) && !isTopLevel(name))
		case TargetFull:
			sel = sel || !(slices.Contains(fullExcluded, name))
		default:
			if ok, _ := path.Match(p, name); ok {
				sel = true
			}
		}
	}
	return sel
}

// isTopLevel reports whether name is a direct child of the model (PixArt's final
// proj_out), which the attn-mlp preset leaves alone.
func isTopLevel(name string) bool { return !strings.Contains(name, ".") }

// Inject attaches adapters of kind c.Kind to every Linear (and, for LoCon and the
// "full" preset, Conv2d) of m selected by targets, and freezes m. Kinds that do not
// support convolutions skip them. It returns an error naming the option when the
// config is invalid or nothing matches.
func Inject(m nn.Module, c Config, targets Targets) (*Set, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	nn.SetTrainable(m, false)
	s := &Set{cfg: c}
	rng := rand.New(rand.NewPCG(c.Seed, 0x61646170746572))
	for _, p := range m.Params("") {
		name, ok := strings.CutSuffix(p.Name, ".weight")
		if !ok {
			continue
		}
		a := &Adapter{Name: name, Kind: c.Kind, set: s, index: len(s.Adapters)}
		switch l := p.Owner.(type) {
		case *nn.Linear:
			if !targets.match(name, false) {
				continue
			}
			a.linear = l
		case *nn.Conv2d:
			if !targets.match(name, true) || c.Kind == IA3 || c.Kind == LoKr {
				continue
			}
			a.conv = l
		default:
			continue
		}
		w := a.baseWeight()
		// IA3 scales the feed-forward's second layer on its input, keys and values
		// (and everything else) on their output.
		onInput := c.Kind == IA3 && hasLeaf(name, []string{"ff.net.2", "mlp.fc2", "mlp.fc2"})
		im, err := newImpl(c, rng, w, onInput)
		if err != nil {
			return nil, fmt.Errorf("adapter for %s: %w", name, err)
		}
		a.impl = im
		a.Rank, a.Alpha = rankAlpha(c, w, im)
		if a.linear != nil {
			a.linear.Adapter = a
		} else {
			a.conv.Adapter = a
		}
		s.Adapters = append(s.Adapters, a)
	}
	if len(s.Adapters) == 0 {
		return nil, fmt.Errorf("--targets %s matched no layer of this model; try attn, attn-mlp or full", strings.Join(targets, ","))
	}
	return s, nil
}

// rankAlpha returns the rank and alpha an adapter records in its file.
func rankAlpha(c Config, w *tensor.Tensor, im impl) (int, float64) {
	rank, alpha := c.Rank, c.Alpha
	if w.Rank() == 4 && c.ConvRank > 0 {
		rank, alpha = c.ConvRank, c.ConvAlpha
	}
	if alpha == 0 {
		alpha = float64(rank)
	}
	if k, ok := im.(*lokr); ok && k.w2 != nil {
		rank = 0 // a full Kronecker factor has no rank; its scale is 1
	}
	return rank, alpha
}

// autoOverrides holds shapes, measured on the CPU this was tuned on, where auto's
// rule picks the path that is more than 10% slower (forward and backward of one
// Linear). Keys are {in, out, r, tokens rounded up to a power of two}; the value says
// whether to merge. Measure with
//
//	DIFFTUNE_AUTO_MEASURE=1 go test ./adapters -run TestMeasureAutoPaths -v
//
// on a quiet machine, which marks such points "<- override". On the AMD Zen 5 (2
// cores, AVX-512) this repository is developed on, with auto's merged path being
// tensor.LoRAMerged (merged forward, rank-r backward), the rule was within 7% of the
// faster path at all 100 points, from a quarter of the threshold to four times it,
// at DiT, SD1.5 and Llama widths (re-measured 2026-11-28), so the table is empty.
// Its earlier entries kept rank-r up to four times the threshold; they were measured
// when the merged path ran the weight form's backward, which spends 2·N·in·out
// multiply-adds on dW′ = dYᵀX.
var autoOverrides = map[[4]int]bool{}

func autoOverride(n, in, out, r int) (merge, ok bool) {
	b := 1
	for b < n {
		b <<= 1
	}
	merge, ok = autoOverrides[[4]int{in, out, r, b}]
	return merge, ok
}
