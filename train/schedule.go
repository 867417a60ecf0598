package train

import (
	"fmt"
	"math"
	"strings"
)

// LR schedules (diffusers' get_scheduler names).
var Schedules = []string{"constant", "constant_with_warmup", "cosine", "linear", "cosine_with_restarts"}

// CheckSchedule reports an unknown schedule name, listing the valid ones.
func CheckSchedule(name string) error {
	for _, s := range Schedules {
		if s == name {
			return nil
		}
	}
	return fmt.Errorf("--lr-schedule %q: want one of %s", name, strings.Join(Schedules, ", "))
}

// LRAt returns the learning rate at step (0-based) of total steps, as diffusers'
// schedulers compute it: a linear warm-up over warmup steps (all but "constant"),
// then constant, cosine to 0, linear to 0, or cosine with hard restarts over cycles.
func LRAt(base float64, schedule string, step, total, warmup, cycles int) float64 {
	if schedule == "constant" {
		return base
	}
	if step < warmup {
		return base * float64(step) / float64(max(1, warmup))
	}
	progress := float64(step-warmup) / float64(max(1, total-warmup))
	switch schedule {
	case "cosine":
		return base * math.Max(0, 0.5*(1+math.Cos(math.Pi*progress)))
	case "linear":
		return base * math.Max(0, float64(total-step)/float64(max(1, total-warmup)))
	case "cosine_with_restarts":
		if progress >= 1 {
			return 0
		}
		c := float64(max(1, cycles))
		return base * math.Max(0, 0.5*(1+math.Cos(math.Pi*math.Mod(c*progress, 1))))
	}
	return base // constant_with_warmup after the warm-up
}
