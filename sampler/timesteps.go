package sampler

import (
	"fmt"
	"math"
)

// This file reproduces the NumPy arithmetic of diffusers' set_timesteps: timesteps
// are spaced in float64 (np.linspace, np.arange, np.round = round half to even) and
// the sigma tables are interpolated in float64 from float32 tables (np.interp).

// npLinspace is np.linspace(start, stop, n) in float64: i·step + start, the last
// value exactly stop.
func npLinspace(start, stop float64, n int) []float64 {
	out := make([]float64, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (stop - start) / float64(n-1)
	for i := range out {
		out[i] = float64(float64(i)*step) + start
	}
	out[n-1] = stop
	return out
}

// spacedTimesteps returns the n inference timesteps, in descending order and not yet
// rounded for linspace, of the DDIM/DDPM/Euler/Heun schedulers:
// linspace: np.linspace(0, T−1, n)[::-1];
// leading: (arange(n)·(T//n))[::-1] + steps_offset;
// trailing: round(arange(T, 0, −T/n)) − 1.
func spacedTimesteps(spacing string, T, n, offset int) ([]float64, error) {
	if n < 1 || n > T {
		return nil, fmt.Errorf("sampler: %d inference steps, want 1 to num_train_timesteps (%d)", n, T)
	}
	out := make([]float64, n)
	switch spacing {
	case "linspace":
		l := npLinspace(0, float64(T-1), n)
		for i := range out {
			out[i] = l[n-1-i]
		}
	case "leading":
		ratio := T / n
		for i := range out {
			out[i] = float64((n-1-i)*ratio + offset)
		}
	case "trailing":
		ratio := float64(T) / float64(n)
		for i := range out {
			out[i] = math.RoundToEven(float64(T)-float64(float64(i)*ratio)) - 1
		}
	default:
		return nil, fmt.Errorf("sampler: timestep_spacing %q is not one of leading, trailing, linspace", spacing)
	}
	return out, nil
}

// fullSigmas returns √((1−ᾱ)/ᾱ) for every training timestep, in float32 as torch.
func fullSigmas(ac []float32) []float32 {
	s := make([]float32, len(ac))
	for i, a := range ac {
		s[i] = sqrt32((1 - a) / a)
	}
	return s
}

// npInterp is np.interp(x, arange(len(fp)), fp) in float64.
func npInterp(x float64, fp []float32) float64 {
	n := len(fp)
	switch {
	case math.IsNaN(x):
		return x
	case x < 0:
		return float64(fp[0])
	case x >= float64(n-1):
		return float64(fp[n-1])
	}
	j := int(math.Floor(x))
	if float64(j) == x {
		return float64(fp[j])
	}
	slope := (float64(fp[j+1]) - float64(fp[j])) / 1
	return float64(slope*(x-float64(j))) + float64(fp[j])
}

// karrasSigmas is diffusers' _convert_to_karras: the Karras et al. (2022) ρ = 7 ramp
// from sigmaMax to sigmaMin over n values, in float64.
func karrasSigmas(sigmaMin, sigmaMax float64, n int) []float64 {
	const rho = 7.0
	ramp := npLinspace(0, 1, n)
	minInv, maxInv := math.Pow(sigmaMin, 1/rho), math.Pow(sigmaMax, 1/rho)
	out := make([]float64, n)
	for i, r := range ramp {
		out[i] = math.Pow(maxInv+float64(r*(minInv-maxInv)), rho)
	}
	return out
}

// sigmaToT is diffusers' _sigma_to_t: the fractional training timestep whose log
// sigma, interpolated linearly between the float32 log sigmas, is ln sigma.
func sigmaToT(sigma float64, logSigmas []float32) float64 {
	ls := math.Log(math.Max(sigma, 1e-10))
	low := 0
	for i, l := range logSigmas {
		if ls-float64(l) >= 0 {
			low = i
		}
	}
	low = min(low, len(logSigmas)-2)
	lo, hi := float64(logSigmas[low]), float64(logSigmas[low+1])
	w := (lo - ls) / (lo - hi)
	w = math.Min(math.Max(w, 0), 1)
	return float64((1-w)*float64(low)) + float64(w*float64(low+1))
}

func logSigmas(full []float32) []float32 {
	l := make([]float32, len(full))
	for i, s := range full {
		l[i] = float32(math.Log(float64(s)))
	}
	return l
}
