package sampler

import (
	"fmt"
	"strconv"
	"strings"
)

// Parameters are the generation settings written into each PNG's "parameters" text
// chunk in A1111's layout, which A1111, Forge, ComfyUI's loaders and image sites read:
//
//	<prompt>
//	Negative prompt: <negative>
//	Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: sd15, Lora: "a.safetensors:0.8"
type Parameters struct {
	Prompt, Negative string
	Steps            int
	Sampler          string
	CFG              float64
	Seed             uint64
	Width, Height    int
	Model            string
	Adapters         []string // "file:weight"
}

// a1111Names maps difftune's sampler names to A1111's.
var a1111Names = map[string]string{
	"euler": "Euler", "euler_a": "Euler a", "ddim": "DDIM", "dpmpp_2m": "DPM++ 2M",
	"dpmpp_2m_karras": "DPM++ 2M Karras", "heun": "Heun", "flow_euler": "Euler (flow)", "ddpm": "DDPM",
}

// String formats the parameters as A1111 does.
func (p Parameters) String() string {
	var b strings.Builder
	b.WriteString(p.Prompt)
	if p.Negative != "" {
		b.WriteString("\nNegative prompt: " + p.Negative)
	}
	name := a1111Names[p.Sampler]
	if name == "" {
		name = p.Sampler
	}
	fmt.Fprintf(&b, "\nSteps: %d, Sampler: %s, CFG scale: %s, Seed: %d, Size: %dx%d, Model: %s",
		p.Steps, name, strconv.FormatFloat(p.CFG, 'g', -1, 64), p.Seed, p.Width, p.Height, quote(p.Model))
	if len(p.Adapters) > 0 {
		fmt.Fprintf(&b, ", Lora: %s", quote(strings.Join(p.Adapters, ", ")))
	}
	return b.String()
}

// quote wraps a value in double quotes when it contains a comma, colon or quote, as
// A1111 does, escaping inner quotes.
func quote(s string) string {
	if !strings.ContainsAny(s, ",:\"") {
		return s
	}
	return strconv.Quote(s)
}

// ParseParameters reads a "parameters" chunk written by String (and A1111's common
// fields: prompt, negative prompt, steps, sampler, CFG scale, seed, size, model).
func ParseParameters(s string) (Parameters, error) {
	var p Parameters
	lines := strings.Split(s, "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "Steps: ") {
		return p, fmt.Errorf("parameters: the last line %q does not start with \"Steps: \"", last)
	}
	var prompt []string
	for _, l := range lines[:len(lines)-1] {
		if neg, ok := strings.CutPrefix(l, "Negative prompt: "); ok {
			p.Negative = neg
			continue
		}
		prompt = append(prompt, l)
	}
	p.Prompt = strings.Join(prompt, "\n")
	for _, kv := range splitFields(last) {
		k, v, _ := strings.Cut(kv, ": ")
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		var err error
		switch k {
		case "Steps":
			p.Steps, err = strconv.Atoi(v)
		case "Sampler":
			p.Sampler = v
			for ours, theirs := range a1111Names {
				if theirs == v {
					p.Sampler = ours
				}
			}
		case "CFG scale":
			p.CFG, err = strconv.ParseFloat(v, 64)
		case "Seed":
			p.Seed, err = strconv.ParseUint(v, 10, 64)
		case "Size":
			_, err = fmt.Sscanf(v, "%dx%d", &p.Width, &p.Height)
		case "Model":
			p.Model = v
		case "Lora":
			p.Adapters = strings.Split(v, ", ")
		}
		if err != nil {
			return p, fmt.Errorf("parameters: field %q: %w", k, err)
		}
	}
	return p, nil
}

// splitFields splits "k: v, k: \"v, w\"" at commas outside quotes.
func splitFields(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, escaped := false, false
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
		case r == '\\' && inQuote:
			escaped = true
		case r == '"':
			inQuote = !inQuote
		case r == ',' && !inQuote:
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
			continue
		}
		cur.WriteRune(r)
	}
	return append(out, strings.TrimSpace(cur.String()))
}
