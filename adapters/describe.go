package adapters

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/difftune/difftune/safetensors"
)

// IsAdapterFile reports whether a safetensors header looks like an adapter file: some
// key ends in an adapter tensor suffix (lora_down.weight, lora_A.weight, hada_w1_a,
// lokr_w1, on_input, ...), as Load reads them.
func IsAdapterFile(h *safetensors.Header) bool {
	for _, t := range h.Tensors {
		if _, s := splitKey(t.Name); s != "" && s != "weight" && s != "alpha" {
			return true
		}
	}
	return false
}

// rankOf is a module's rank: the inner dimension of its factors, 0 when it has none
// (IA3, a full LoKr factor pair).
func rankOf(m *Module) int {
	for _, k := range []struct {
		name string
		dim  int
	}{{"lora_down.weight", 0}, {"hada_w1_b", 0}, {"lokr_w2_b", 0}, {"lokr_w1_b", 0}} {
		if t, ok := m.Tensors[k.name]; ok {
			return t.Dim(k.dim)
		}
	}
	return 0
}

// Describe reads an adapter file (kohya or PEFT naming, as Load does) and returns a
// summary: format, adapter type(s), rank(s), alpha(s), how many modules it targets
// (with a few named), the skipped text-encoder tensors, and the base model its
// metadata names (ss_base_model_version, modelspec.architecture, ss_sd_model_name).
// It fails as Load does.
func Describe(path string) (string, error) {
	f, skipped, err := Load(path)
	if err != nil {
		return "", err
	}
	defer f.Release()
	kinds, ranks, alphas := map[string]int{}, map[int]int{}, map[string]int{}
	format := "PEFT/diffusers"
	for _, m := range f.Modules {
		kinds[string(m.Kind)]++
		if r := rankOf(m); r > 0 {
			ranks[r]++
		}
		a := "none (scale 1)"
		if m.Alpha != 0 {
			a = strconv.FormatFloat(m.Alpha, 'g', -1, 64)
		}
		alphas[a]++
		if strings.HasPrefix(m.Key, KohyaPrefix) {
			format = "kohya"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s adapter file, %d module(s)\n", path, format, len(f.Modules))
	fmt.Fprintf(&b, "  type:    %s\n", tallied(kinds, func(k string) string { return k }))
	fmt.Fprintf(&b, "  rank:    %s\n", tallied(ranks, strconv.Itoa))
	fmt.Fprintf(&b, "  alpha:   %s\n", tallied(alphas, func(k string) string { return k }))
	base := "unknown (no ss_base_model_version or modelspec.architecture metadata)"
	var said []string
	for _, k := range []string{"modelspec.architecture", "ss_base_model_version", "ss_sd_model_name"} {
		if v := f.Metadata[k]; v != "" {
			said = append(said, fmt.Sprintf("%s (%s)", v, k))
		}
	}
	if len(said) > 0 {
		base = strings.Join(said, ", ")
	}
	fmt.Fprintf(&b, "  base:    %s\n", base)
	fmt.Fprintf(&b, "  modules:\n")
	for i, m := range f.Modules {
		if i == 6 {
			fmt.Fprintf(&b, "    ... and %d more\n", len(f.Modules)-i)
			break
		}
		fmt.Fprintf(&b, "    %s\n", m.Key)
	}
	if len(skipped) > 0 {
		fmt.Fprintf(&b, "  %d text-encoder tensor(s) (not applied by difftune)\n", len(skipped))
	}
	return b.String(), nil
}

// tallied formats counts as "4 (10 modules), 8 (2 modules)", or the one value alone.
func tallied[K cmp.Ordered](m map[K]int, str func(K) string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(m))
	if len(keys) == 1 {
		return str(keys[0])
	}
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s (%d modules)", str(k), m[k]))
	}
	return strings.Join(parts, ", ")
}
