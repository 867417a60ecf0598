//go:build !amd64 || purego

package tensor

// kernelExpShift overwrites s[i] with exp(s[i] − m) and returns the float32 sum of
// the results (kernelExpShiftGo; no assembly in this build).
func kernelExpShift(s []float32, m float32) float32 { return kernelExpShiftGo(s, m) }
