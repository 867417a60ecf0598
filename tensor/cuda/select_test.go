package cuda

import (
	"errors"
	"testing"

	"github.com/difftune/difftune/tensor"
)

func TestParseSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Spec
		bad  bool
	}{
		{"auto", Spec{Kind: "auto"}, false},
		{"cpu", Spec{Kind: "cpu"}, false},
		{" CPU ", Spec{Kind: "cpu"}, false},
		{"cuda", Spec{Kind: "cuda"}, false},
		{"cuda:0", Spec{Kind: "cuda"}, false},
		{"cuda:3", Spec{Kind: "cuda", Ordinal: 3}, false},
		{"cuda:", Spec{}, true},
		{"cuda:-1", Spec{}, true},
		{"cuda:x", Spec{}, true},
		{"tpu", Spec{}, true},
		{"", Spec{}, true},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseSpec(c.in)
			if c.bad != (err != nil) || got != c.want {
				t.Fatalf("ParseSpec(%q) = %+v, %v; want %+v, bad %v", c.in, got, err, c.want, c.bad)
			}
			if err != nil && (!errors.Is(err, ErrBadSpec) || !contains(err.Error(), "want auto, cpu, cuda or cuda:N")) {
				t.Fatalf("error %q does not list the accepted forms", err)
			}
		})
	}
}

func TestSelectCPU(t *testing.T) {
	d, err := Select("cpu")
	if err != nil || d != tensor.CPU {
		t.Fatalf("Select(cpu) = %v, %v", d, err)
	}
}

// TestSelectWithoutGPU runs where no driver answers: cuda fails naming the missing
// driver and the remedy, auto is the CPU. With a GPU it checks auto opens it.
func TestSelectWithoutGPU(t *testing.T) {
	why := Available()
	if why == nil {
		d, err := Select("auto")
		if err != nil {
			t.Fatalf("auto with a GPU: %v", err)
		}
		if dev, ok := d.(*Device); !ok || dev.Name() != "cuda:0" {
			t.Fatalf("auto with a GPU chose %v", d.Name())
		}
		d.(*Device).Close()
		return
	}
	_, err := Select("cuda")
	if err == nil || !contains(err.Error(), "--device cuda:0: ") || !contains(err.Error(), "use --device cpu") {
		t.Fatalf("Select(cuda) without a GPU: %v", err)
	}
	d, err := Select("auto")
	if err != nil || d != tensor.CPU {
		t.Fatalf("Select(auto) without a GPU = %v, %v; want the CPU", d, err)
	}
}
