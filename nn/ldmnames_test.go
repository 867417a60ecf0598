package nn

import (
	"maps"
	"strings"
	"testing"
)

// TestModulePaths places a two-scope table and converts keys both ways: the longest
// module path wins, an empty path names the block itself, only prefixed keys are
// taken when some carry the prefix, and an unplaced key is an error naming it.
func TestModulePaths(t *testing.T) {
	table := []Alias{
		{Scope: "", LDM: "out.0", Diffusers: "conv_norm_out"},
		{Scope: "resnet", LDM: "in_layers.0", Diffusers: "norm1"},
		{Scope: "resnet", LDM: "in_layers", Diffusers: "never_longest"},
		{Scope: "attention", LDM: "", Diffusers: ""},
	}
	blocks := []Alias{
		{Scope: "resnet", LDM: "input_blocks.1.0", Diffusers: "down_blocks.0.resnets.0"},
		{Scope: "attention", LDM: "input_blocks.1.1", Diffusers: "down_blocks.0.attentions.0"},
	}
	p := PlaceAliases(table, blocks)
	if len(p) != 4 {
		t.Fatalf("placed %d paths, want 4: %v", len(p), p)
	}
	for _, tc := range []struct {
		name string
		keys []string
		want map[string]string
	}{
		{"bare keys", []string{"out.0.weight", "input_blocks.1.0.in_layers.0.bias", "input_blocks.1.1.attn1.to_q.weight"},
			map[string]string{
				"out.0.weight":                       "conv_norm_out.weight",
				"input_blocks.1.0.in_layers.0.bias":  "down_blocks.0.resnets.0.norm1.bias",
				"input_blocks.1.1.attn1.to_q.weight": "down_blocks.0.attentions.0.attn1.to_q.weight",
			}},
		{"prefixed keys, others left out", []string{"m.out.0.bias", "other.out.0.bias"},
			map[string]string{"m.out.0.bias": "conv_norm_out.bias"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.FromLDM("m.", tc.keys)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("FromLDM = %v, want %v", got, tc.want)
			}
			var back []string
			for _, v := range got {
				back = append(back, v)
			}
			rev, err := p.ToLDM("m.", back)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range got {
				if want := "m." + strings.TrimPrefix(k, "m."); rev[v] != want {
					t.Errorf("ToLDM(%q) = %q, want %q", v, rev[v], want)
				}
			}
		})
	}
	if _, err := p.FromLDM("m.", []string{"nowhere.weight"}); err == nil || !strings.Contains(err.Error(), `"nowhere.weight"`) {
		t.Fatalf("unplaced key: error %v, want one naming it", err)
	}
}
