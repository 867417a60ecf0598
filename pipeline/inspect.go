package pipeline

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/difftune/difftune/safetensors"
)

// IsCheckpoint reports whether a safetensors header holds a whole diffusion model in
// single-file naming (Stable Diffusion 1.x/2.x/XL, SD3, Flux), as opposed to an
// adapter or some other tensor file.
func IsCheckpoint(h *safetensors.Header) bool {
	for _, t := range h.Tensors {
		if component(t.Name) != "other" || strings.Contains(t.Name, "double_blocks.") || strings.Contains(t.Name, "joint_blocks.") {
			return true
		}
	}
	return false
}

// Inspect summarises a checkpoint — a single file or a diffusers folder — from its
// headers and configs: the detected architecture (or what it is and why difftune
// cannot load it), parameter counts and dtypes per component, the dtypes of the
// file, and its metadata. It fails only when the path cannot be read.
func Inspect(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if fi.IsDir() {
		m, err := detectFolder(path)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s: %s\n", path, m.describe())
		writeComponents(&b, m.params, m.dtypes)
		writeGeometry(&b, m)
		return b.String(), nil
	}
	h, err := safetensors.ReadHeader(path)
	if err != nil {
		return "", err
	}
	shapes := map[string][]int{}
	for _, t := range h.Tensors {
		shapes[t.Name] = t.Shape
	}
	m, err := detectFile(path)
	switch {
	case err == nil:
		fmt.Fprintf(&b, "%s: %s\n", path, m.describe())
	case recognise(shapes) != "":
		fmt.Fprintf(&b, "%s: %s (not supported)\n", path, recognise(shapes))
	default:
		fmt.Fprintf(&b, "%s: not loadable: %v\n", path, err)
	}
	params, dtypes := tally(h, component)
	writeComponents(&b, params, dtypes)
	if err == nil {
		writeGeometry(&b, m)
	}
	var bytes int64
	count := map[safetensors.DType]int{}
	for _, t := range h.Tensors {
		count[t.DType]++
		bytes += t.Offsets[1] - t.Offsets[0]
	}
	var dts []string
	for _, dt := range slices.Sorted(maps.Keys(count)) {
		dts = append(dts, fmt.Sprintf("%s ×%d", dt, count[dt]))
	}
	fmt.Fprintf(&b, "  tensors: %d (%s), %.1f MiB of data\n", len(h.Tensors), strings.Join(dts, ", "), float64(bytes)/(1<<20))
	if len(h.Metadata) > 0 {
		fmt.Fprintf(&b, "  metadata:\n")
		for _, k := range slices.Sorted(maps.Keys(h.Metadata)) {
			v := h.Metadata[k]
			if len(v) > 120 {
				v = v[:117] + "..."
			}
			fmt.Fprintf(&b, "    %s: %s\n", k, v)
		}
	}
	return b.String(), nil
}

func writeComponents(b *strings.Builder, params map[string]int64, dtypes map[string]safetensors.DType) {
	for _, c := range []string{"unet", "vae", "text encoder", "other"} {
		if n, ok := params[c]; ok {
			fmt.Fprintf(b, "  %-13s %8s parameters (%d), %s\n", c, count(n), n, dtypes[c])
		}
	}
}

func writeGeometry(b *strings.Builder, m *sdModel) {
	i := m.info()
	fmt.Fprintf(b, "  images: %d px by default, sides multiples of %d; latents %d channels, 1/%d scale; %s, %s schedule\n",
		i.Size, i.Multiple, m.unet.InChannels, m.vae.Factor(), m.sched.PredictionType, m.sched.BetaSchedule)
}
