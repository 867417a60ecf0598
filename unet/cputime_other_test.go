//go:build !unix

package unet

import "time"

// cpuTime is not measured off Unix.
func cpuTime() time.Duration { return 0 }
