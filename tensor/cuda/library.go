package cuda

import (
	"fmt"
	"strings"

	"github.com/ebitengine/purego"
)

// library is a shared library opened with dlopen.
type library struct {
	name   string
	handle uintptr
}

// openLibrary dlopens the first of names that loads and returns it, or an error
// that lists every name tried with the loader's reason.
func openLibrary(names ...string) (*library, error) {
	var why []string
	for _, n := range names {
		h, err := purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return &library{name: n, handle: h}, nil
		}
		why = append(why, err.Error())
	}
	return nil, fmt.Errorf("%s", strings.Join(why, "; "))
}

// binding is one C function to bind: a pointer to a Go func variable, the symbol,
// and whether the library may lack it.
type binding struct {
	fn       any
	sym      string
	optional bool
}

// bind resolves each binding's symbol and makes its Go func call it. A missing
// required symbol is an error naming the library and the symbol; a missing optional
// one leaves its func nil.
func (l *library) bind(bs []binding) error {
	for _, b := range bs {
		p, err := purego.Dlsym(l.handle, b.sym)
		if err != nil || p == 0 {
			if b.optional {
				continue
			}
			return fmt.Errorf("%s has no symbol %s (driver or library too old?)", l.name, b.sym)
		}
		purego.RegisterFunc(b.fn, p)
	}
	return nil
}
