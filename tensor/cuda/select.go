package cuda

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/difftune/difftune/tensor"
)

// Spec is a parsed --device value.
type Spec struct {
	Kind    string // "auto", "cpu" or "cuda"
	Ordinal int    // the GPU, for cuda
}

func (s Spec) String() string {
	if s.Kind == "cuda" {
		return fmt.Sprintf("cuda:%d", s.Ordinal)
	}
	return s.Kind
}

// ErrBadSpec marks a --device value that is not auto, cpu, cuda or cuda:N.
var ErrBadSpec = errors.New("bad device")

// ParseSpec reads a --device value: auto, cpu, cuda (GPU 0) or cuda:N. The error
// wraps ErrBadSpec and lists the accepted forms.
func ParseSpec(s string) (Spec, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch {
	case v == "auto" || v == "cpu":
		return Spec{Kind: v}, nil
	case v == "cuda" || v == "gpu":
		return Spec{Kind: "cuda"}, nil
	case strings.HasPrefix(v, "cuda:"):
		n, err := strconv.Atoi(v[len("cuda:"):])
		if err == nil && n >= 0 {
			return Spec{Kind: "cuda", Ordinal: n}, nil
		}
	}
	return Spec{}, fmt.Errorf("%w %q: want auto, cpu, cuda or cuda:N (N = 0, 1, ...)", ErrBadSpec, s)
}

// Select returns the device a --device value names. cpu is tensor.CPU; cuda:N opens
// GPU N and fails with the driver's reason when it cannot (no driver: "no NVIDIA
// driver: libcuda.so.1 not found (...); use --device cpu"); auto opens GPU 0 when a
// driver answers with one and is the CPU otherwise. Close a *Device when done.
func Select(spec string) (tensor.Device, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	switch s.Kind {
	case "cpu":
		return tensor.CPU, nil
	case "auto":
		if Available() != nil {
			return tensor.CPU, nil
		}
		s.Ordinal = 0
	}
	d, err := Open(s.Ordinal)
	if err != nil {
		return nil, fmt.Errorf("--device %s: %w", s, err)
	}
	return d, nil
}
