package membench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// ReadRows reads the JSON lines `difftune bench memory --json` writes.
func ReadRows(r io.Reader) ([]Row, error) {
	var rows []Row
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var row Row
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if row.Activations == "" {
			row.Activations = "f32" // written before saved activations could be packed
		}
		rows = append(rows, row)
	}
	return rows, sc.Err()
}

// Report renders the evaluated rows as Markdown tables, one per model, way of keeping
// saved activations and reported size (a model's largest size, and for llama-1b also
// context 2048), followed by the paper's claims checked on them.
func Report(rows []Row) string {
	var b strings.Builder
	type key struct {
		model, act string
		tokens     int
	}
	largest := map[string]int{}
	for _, r := range rows {
		largest[r.Model] = max(largest[r.Model], r.Tokens)
	}
	var keys []key
	seen := map[key]bool{}
	for _, r := range rows {
		k := key{r.Model, r.Activations, r.Tokens}
		if r.Measured || seen[k] || (r.Tokens != largest[r.Model] && !(r.Model == "llama-1b" && r.Tokens == 2048)) {
			continue
		}
		seen[k] = true
		keys = append(keys, k)
	}
	for _, k := range keys {
		var fit float64
		first := true
		for _, r := range rows {
			if r.Measured || r.Model != k.model || r.Activations != k.act || r.Tokens != k.tokens {
				continue
			}
			if first {
				fmt.Fprintf(&b, "**%s, %d tokens, batch %d, %s saved activations**\n\n", k.model, k.tokens, r.Batch, k.act)
				b.WriteString("| method | peak GiB | params | grads | optimizer | saved | transient |\n|---|---|---|---|---|---|---|\n")
				first = false
			}
			fit = max(fit, r.FitError)
			fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.3f | %.3f | %.2f | %.2f |\n", methodLabel(r), gib(r.PeakBytes), gib(r.ParamsBytes),
				gib(r.GradsBytes), gib(r.OptimizerBytes), gib(r.SavedBytes), gib(r.TransientBytes))
		}
		fmt.Fprintf(&b, "\nThe fit predicts the measured check shape's peak within %.1f%%.\n\n", 100*fit)
	}
	for _, c := range Claims(rows) {
		b.WriteString("- " + c + "\n")
	}
	return b.String()
}
