package nn

import (
	"fmt"
	"strings"
)

// Alias is one row of a model's table of name aliases between the original LDM
// single-file checkpoints and diffusers: within Scope, the module path LDM is
// Diffusers. Scope "" is the model's top level; any other scope is the inside of one
// kind of block, and the row applies within every block of that kind (PlaceAliases).
// An empty path names the block itself.
//
// The same type places the blocks: there Scope is the block's kind and LDM and
// Diffusers are its paths in the whole model.
type Alias struct{ Scope, LDM, Diffusers string }

// ModulePaths is the two-column table of one model's module paths: [0] in the LDM
// naming, [1] in diffusers'. A key converts by the longest module path it starts
// with; the rest of the key (".weight", ".to_q.bias") carries over unchanged.
type ModulePaths [][2]string

// PlaceAliases returns the module paths of a model from its alias table and the
// places of its blocks: the table's top-level rows as they are, then, for each
// block, the rows of its scope under the block's paths.
func PlaceAliases(table, blocks []Alias) ModulePaths {
	var out ModulePaths
	join := func(a, b string) string {
		if b == "" {
			return a
		}
		return a + "." + b
	}
	for _, b := range append([]Alias{{Scope: ""}}, blocks...) {
		for _, a := range table {
			switch {
			case a.Scope != b.Scope:
			case b.Scope == "":
				out = append(out, [2]string{a.LDM, a.Diffusers})
			default:
				out = append(out, [2]string{join(b.LDM, a.LDM), join(b.Diffusers, a.Diffusers)})
			}
		}
	}
	return out
}

// FromLDM maps single-file keys to diffusers keys. When some keys carry prefix (the
// model's prefix in a full checkpoint, such as "first_stage_model.") only those are
// mapped, keeping the prefix in the map's keys; otherwise every key is taken as a
// bare key of this model. It fails on the first key with no module path in p, with
// an error reading `key "…" has no counterpart` that the caller completes with what
// the model is.
func (p ModulePaths) FromLDM(prefix string, keys []string) (map[string]string, error) {
	var own []string
	for _, k := range keys {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			own = append(own, rest)
		}
	}
	if len(own) == 0 {
		own, prefix = keys, ""
	}
	return p.convert(own, prefix, 0, 1)
}

// ToLDM maps diffusers keys to single-file keys, each with prefix. It fails as
// FromLDM does.
func (p ModulePaths) ToLDM(prefix string, keys []string) (map[string]string, error) {
	m, err := p.convert(keys, "", 1, 0)
	if err != nil {
		return nil, err
	}
	for k, v := range m {
		m[k] = prefix + v
	}
	return m, nil
}

// convert maps each key (given without prefix, returned with it) by its longest
// module path found in column from, to column to.
func (p ModulePaths) convert(keys []string, prefix string, from, to int) (map[string]string, error) {
	paths := make(map[string]string, len(p))
	for _, m := range p {
		paths[m[from]] = m[to]
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		mod, rest := k, ""
		for {
			if v, ok := paths[mod]; ok {
				out[prefix+k] = v + rest
				break
			}
			i := strings.LastIndexByte(mod, '.')
			if i < 0 {
				return nil, fmt.Errorf("key %q has no counterpart", prefix+k)
			}
			mod, rest = mod[:i], mod[i:]+rest
		}
	}
	return out, nil
}
