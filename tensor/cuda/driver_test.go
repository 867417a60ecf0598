package cuda

import (
	"math"
	"strings"
	"testing"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestOpenDriverMissingLibrary(t *testing.T) {
	_, err := openDriver("libcuda-difftune-absent.so.1")
	if err == nil {
		t.Fatal("opening a library that does not exist succeeded")
	}
	for _, want := range []string{"no NVIDIA driver", "libcuda-difftune-absent.so.1 not found", "use --device cpu"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestBindRealLibrary checks the dlopen/dlsym/call path the driver uses, on libm,
// which every Linux machine has: cos(0.5) through the binding equals math.Cos.
func TestBindRealLibrary(t *testing.T) {
	lib, err := openLibrary("libm-absent.so.9", "libm.so.6")
	if err != nil {
		t.Skipf("libm.so.6 cannot be opened here: %v", err)
	}
	var cos func(float64) float64
	var absent func() int32
	if err := lib.bind([]binding{{&cos, "cos", false}, {&absent, "no_such_symbol_difftune", true}}); err != nil {
		t.Fatal(err)
	}
	if got := cos(0.5); got != math.Cos(0.5) {
		t.Fatalf("bound cos(0.5) = %v, want %v", got, math.Cos(0.5))
	}
	if absent != nil {
		t.Fatal("an optional missing symbol was bound")
	}
	err = lib.bind([]binding{{&absent, "no_such_symbol_difftune", false}})
	if err == nil || !contains(err.Error(), "libm.so.6 has no symbol no_such_symbol_difftune") {
		t.Fatalf("missing required symbol: error %v", err)
	}
}

func TestOpenLibraryListsEveryName(t *testing.T) {
	_, err := openLibrary("libdifftune-a.so", "libdifftune-b.so")
	if err == nil || !contains(err.Error(), "libdifftune-a.so") || !contains(err.Error(), "libdifftune-b.so") {
		t.Fatalf("error %v does not name both libraries", err)
	}
}

func TestErrorNamesCallAndResult(t *testing.T) {
	for _, c := range []struct {
		r    Result
		ask  namer
		want string
	}{
		{ErrorOutOfMemory, nil, "cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (2)"},
		{ErrorInvalidPTX, func(Result) (string, string) { return "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed" },
			"cuMemAlloc_v2: CUDA_ERROR_INVALID_PTX (218): a PTX JIT compilation failed"},
		{Result(12345), nil, "cuMemAlloc_v2: CUresult (12345)"},
	} {
		if got := newError("cuMemAlloc_v2", c.r, c.ask).Error(); got != c.want {
			t.Errorf("error %q, want %q", got, c.want)
		}
	}
	e := newError("cuModuleLoadDataEx", ErrorInvalidPTX, nil)
	e.Detail = jitLog("JIT error log", append([]byte("ptxas fatal: bad"), 0, 'x'), 100)
	if !contains(e.Error(), "cuModuleLoadDataEx: CUDA_ERROR_INVALID_PTX (218)\nJIT error log:\nptxas fatal: bad\n") {
		t.Fatalf("error with JIT log: %q", e.Error())
	}
	if jitLog("JIT info log", []byte{0, 0}, 2) != "" {
		t.Fatal("an empty JIT log is reported")
	}
}
