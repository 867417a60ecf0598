//go:build !amd64 || purego

package tensor

// siluFast handles nothing in this build: siluForward's Go loop does all of x.
func siluFast(out, x []float32) int { return 0 }

// siluBackwardFast handles nothing in this build.
func siluBackwardFast(dx, dout, x []float32) int { return 0 }
