package golden

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the golden folder: $DIFFTUNE_GOLDEN when set, otherwise ../shared/golden
// next to the module root. It fails the test when the folder does not exist, since
// parity tests that silently skip would prove nothing.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("DIFFTUNE_GOLDEN"); d != "" {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("DIFFTUNE_GOLDEN=%s: %v", d, err)
		}
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			g := filepath.Join(d, "..", "shared", "golden")
			if _, err := os.Stat(g); err != nil {
				t.Fatalf("golden folder %s not found: set DIFFTUNE_GOLDEN to the reference outputs folder", g)
			}
			return g
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s; set DIFFTUNE_GOLDEN", wd)
		}
	}
}

// Diff describes how far got is from want: the largest absolute difference, that
// difference relative to max|want|, and the flat index where it occurs.
type Diff struct {
	MaxAbs, MaxRel float64
	Worst          int
	WantMax        float64
}

func (d Diff) String() string {
	return fmt.Sprintf("max abs %.3g, rel %.3g (of max|want| %.3g) at index %d", d.MaxAbs, d.MaxRel, d.WantMax, d.Worst)
}

// Compare returns the Diff of got against want. It panics if the lengths differ.
// NaN in got counts as an infinite difference.
func Compare(got, want []float32) Diff {
	if len(got) != len(want) {
		panic(fmt.Sprintf("golden.Compare: len(got)=%d, len(want)=%d", len(got), len(want)))
	}
	var d Diff
	for i := range want {
		d.WantMax = math.Max(d.WantMax, math.Abs(float64(want[i])))
		diff := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(diff) {
			diff = math.Inf(1)
		}
		if diff > d.MaxAbs {
			d.MaxAbs, d.Worst = diff, i
		}
	}
	d.MaxRel = d.MaxAbs / math.Max(d.WantMax, 1e-30)
	return d
}
