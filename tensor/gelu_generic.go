//go:build !amd64 || purego

package tensor

// geluTanhFast handles nothing in this build: geluForward's Go loop does all of x.
func geluTanhFast(out, x []float32) int { return 0 }

// geluTanhBackwardFast handles nothing in this build.
func geluTanhBackwardFast(dx, dout, x []float32) int { return 0 }
