package safetensors

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Summarize writes a human-readable summary of a header: tensor and element counts per
// dtype, the data size, the metadata (long values shortened), and with all set every
// tensor's dtype and shape. It reads no tensor data.
func Summarize(w io.Writer, path string, h *Header, all bool) error {
	count := map[DType]int{}
	elems := map[DType]int64{}
	var bytes int64
	for _, t := range h.Tensors {
		count[t.DType]++
		elems[t.DType] += t.NumElements()
		bytes += t.Offsets[1] - t.Offsets[0]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d tensors, %s of data\n", path, len(h.Tensors), humanBytes(bytes))
	for _, dt := range slices.Sorted(maps.Keys(count)) {
		fmt.Fprintf(&b, "  %-5s %6d tensors %14d elements\n", dt, count[dt], elems[dt])
	}
	if len(h.Metadata) > 0 {
		fmt.Fprintf(&b, "metadata:\n")
		for _, k := range slices.Sorted(maps.Keys(h.Metadata)) {
			v := h.Metadata[k]
			if len(v) > 120 {
				v = v[:117] + "..."
			}
			fmt.Fprintf(&b, "  %s: %s\n", k, v)
		}
	}
	if all {
		byName := slices.Clone(h.Tensors)
		slices.SortFunc(byName, func(a, b TensorInfo) int { return strings.Compare(a.Name, b.Name) })
		for _, t := range byName {
			fmt.Fprintf(&b, "  %-60s %-5s %v\n", t.Name, t.DType, t.Shape)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.2f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
