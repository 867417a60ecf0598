// Package leakcheck fails a test binary whose tests leave tensor storage live or
// saved for backward: every test releases what it made, so the counters must end at
// zero. Use it from a package's TestMain: func TestMain(m *testing.M) { leakcheck.Main(m) }.
package leakcheck

import (
	"fmt"
	"os"
	"testing"

	"github.com/difftune/difftune/tensor"
)

// Main runs the tests, then exits non-zero if they failed or leaked.
func Main(m *testing.M) {
	code := m.Run()
	if s := tensor.CPU.Stats(); code == 0 && (s.Live != 0 || s.Saved != 0) {
		fmt.Fprintf(os.Stderr, "tests leaked tensor storage: %v\n", s)
		code = 1
	}
	os.Exit(code)
}
