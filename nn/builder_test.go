package nn

import (
	"maps"
	"slices"
	"testing"
)

// TestBuilderModes builds the same ResnetBlock2D in each mode and checks that
// ParamShapes lists exactly the names and shapes the allocating modes make, that
// placeholders are zero with norm weights one, and that the random mode draws values.
func TestBuilderModes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in, temb  int
		wantNames int
	}{
		{"unet form", 4, 6, 12},     // norms, convs, time_emb_proj, conv_shortcut: 6 layers × 2
		{"vae form", 8, 0, 8},       // no time_emb_proj, no shortcut (in == out)
		{"shortcut only", 4, 0, 10}, // no time_emb_proj
	} {
		t.Run(tc.name, func(t *testing.T) {
			build := func(b *Builder) (*ResnetBlock2D, error) { return b.ResnetBlock2D(tc.in, 8, tc.temb, 2, 1e-6, 1), nil }
			shapes, err := ParamShapes(build)
			if err != nil {
				t.Fatal(err)
			}
			if len(shapes) != tc.wantNames {
				t.Fatalf("ParamShapes: %d names %v, want %d", len(shapes), slices.Sorted(maps.Keys(shapes)), tc.wantNames)
			}
			for _, b := range []*Builder{ZeroBuilder(), RandomBuilder(1)} {
				r, _ := build(b)
				got := map[string][]int{}
				for _, p := range r.Params("") {
					got[p.Name] = p.T().Shape()
				}
				if !maps.EqualFunc(got, shapes, slices.Equal) {
					t.Errorf("mode %d: shapes %v, ParamShapes %v", b.mode, got, shapes)
				}
				zero := b.mode == modeZeros
				if w := r.Conv1.Weight.Float32s(); (w[0] == 0) != zero {
					t.Errorf("mode %d: conv1.weight[0] = %g", b.mode, w[0])
				}
				if w := r.Norm1.Weight.Float32s(); w[0] != 1 {
					t.Errorf("mode %d: norm1.weight[0] = %g, want 1", b.mode, w[0])
				}
				ReleaseParams(r)
			}
		})
	}
}
