package adapters

import (
	"fmt"
	"math"
	"strings"
)

// Kind is an adapter type.
type Kind string

// Adapter kinds. LoRA on a Conv2d is LoCon; naming LoCon targets convolutions too.
const (
	LoRA  Kind = "lora"
	LoCon Kind = "locon"
	DoRA  Kind = "dora"
	LoHa  Kind = "loha"
	LoKr  Kind = "lokr"
	IA3   Kind = "ia3"
)

// Kinds lists every adapter kind.
var Kinds = []Kind{LoRA, LoCon, DoRA, LoHa, LoKr, IA3}

// Form is how an adapter is computed during training.
type Form string

// Adapter forms (see the package documentation).
const (
	Activation Form = "activation"
	Weight     Form = "weight"
	Auto       Form = "auto"
)

// Config describes the adapters to attach.
type Config struct {
	Kind  Kind
	Rank  int     // r; LoKr: the rank of its low-rank factor (0 or >= the factor size: full)
	Alpha float64 // scale numerator; 0 means Alpha = Rank (scale 1)
	// RSLoRA scales by alpha/√r instead of alpha/r (rank-stabilised LoRA).
	RSLoRA bool
	// ConvRank and ConvAlpha apply to convolutions (LoCon); 0 means Rank and Alpha.
	ConvRank  int
	ConvAlpha float64
	Form      Form
	// Dropout is input dropout (LoRA, LoCon, DoRA, LoHa, LoKr in the activation form;
	// LoRA in auto); ModuleDropout skips an adapter for a whole step.
	Dropout, ModuleDropout float64
	// LoKrFactor bounds the first Kronecker factor's size; -1 picks the most square split.
	LoKrFactor int
	// Seed drives initialisation and every dropout decision.
	Seed uint64
	// AutoTokens, when set, maps the token count a call of the named adapter sees to
	// the count auto decides with. The memory benchmark measures small shapes with the
	// choices auto makes at the real size.
	AutoTokens func(name string, n int) int
}

// Validate reports the first invalid setting, naming the option and the remedy.
func (c Config) Validate() error {
	if !containsKind(c.Kind) {
		return fmt.Errorf("adapter %q: want one of %s", c.Kind, kindList())
	}
	if c.Kind != IA3 && c.Rank <= 0 && !(c.Kind == LoKr && c.Rank == 0) {
		return fmt.Errorf("rank %d: want a positive rank (8-32 is typical)", c.Rank)
	}
	if c.Alpha < 0 || c.ConvAlpha < 0 || c.ConvRank < 0 {
		return fmt.Errorf("alpha %g, conv rank %d, conv alpha %g: none may be negative", c.Alpha, c.ConvRank, c.ConvAlpha)
	}
	switch c.Form {
	case Activation, Weight, Auto:
	case "":
		return fmt.Errorf("form is empty: want auto, weight or activation")
	default:
		return fmt.Errorf("form %q: want auto, weight or activation", c.Form)
	}
	if c.Dropout < 0 || c.Dropout >= 1 || c.ModuleDropout < 0 || c.ModuleDropout >= 1 {
		return fmt.Errorf("dropout %g, module dropout %g: each must be in [0, 1)", c.Dropout, c.ModuleDropout)
	}
	if c.Dropout > 0 && c.Form == Weight {
		return fmt.Errorf("form weight with dropout %g: input dropout changes each token's input, which no single "+
			"merged weight can express; use --form auto (same memory as weight, exact dropout from a seed) or --dropout 0", c.Dropout)
	}
	if c.Dropout > 0 && c.Kind == IA3 {
		return fmt.Errorf("ia3 with dropout %g: IA3 scales weights and has no input branch to drop; use --dropout 0", c.Dropout)
	}
	return nil
}

func containsKind(k Kind) bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

func kindList() string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// scale returns alpha/r (or alpha/√r), with alpha defaulting to r.
func scale(alpha float64, rank int, rs bool) float32 {
	if rank <= 0 {
		return 1
	}
	if alpha == 0 {
		alpha = float64(rank)
	}
	if rs {
		return float32(alpha / math.Sqrt(float64(rank)))
	}
	return float32(alpha / float64(rank))
}
