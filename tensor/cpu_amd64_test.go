//go:build !purego

package tensor

import (
	"os"
	"strings"
)

// hostHasAVX512 reads /proc/cpuinfo (Linux) to cross-check the CPUID detection.
func hostHasAVX512() bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	return err == nil && strings.Contains(string(b), " avx512f")
}
