package nn

import (
	"math"
	"math/rand/v2"
	"reflect"

	"github.com/difftune/difftune/tensor"
)

// Param is one named parameter slot. Ptr points at the layer's field so that loading
// can replace the tensor (for example with a BF16 one).
type Param struct {
	Name  string
	Ptr   **tensor.Tensor
	Owner Module // the layer the parameter belongs to (a *Linear, *Conv2d, ...)
}

// T returns the parameter's current tensor.
func (p Param) T() *tensor.Tensor { return *p.Ptr }

// Module is anything with named parameters. Params returns them with prefix prepended
// to each name, in a fixed order; nil (absent) parameters are left out.
type Module interface {
	Params(prefix string) []Param
}

// Named prefixes each parameter's name, records owner as the layer holding it, and
// drops absent (nil) parameters. Layers outside this package use it in Params.
func Named(prefix string, owner Module, ps ...Param) []Param {
	out := make([]Param, 0, len(ps))
	for _, p := range ps {
		if *p.Ptr != nil {
			out = append(out, Param{Name: prefix + p.Name, Ptr: p.Ptr, Owner: owner})
		}
	}
	return out
}

// Child is a named sub-module.
type Child struct {
	Name string
	M    Module
}

// Children returns the parameters of each child under prefix+name+".", in order.
// Children whose module is nil are skipped.
func Children(prefix string, cs ...Child) []Param {
	var out []Param
	for _, c := range cs {
		if c.M != nil && !isNilModule(c.M) {
			out = append(out, c.M.Params(prefix+c.Name+".")...)
		}
	}
	return out
}

// isNilModule reports whether m is a nil pointer in an interface.
func isNilModule(m Module) bool {
	v := reflect.ValueOf(m)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// SetTrainable marks every parameter of m as requiring a gradient (on) or frozen (off).
// Freezing releases accumulated gradients. It panics if a 16-bit parameter is made
// trainable.
func SetTrainable(m Module, on bool) {
	for _, p := range m.Params("") {
		t := p.T()
		t.SetRequiresGrad(on)
		if !on {
			t.ZeroGrad()
		}
	}
}

// CountParams returns the number of elements over m's parameters and how many of them
// are trainable.
func CountParams(m Module) (total, trainable int64) {
	for _, p := range m.Params("") {
		n := int64(p.T().Len())
		total += n
		if p.T().RequiresGrad() {
			trainable += n
		}
	}
	return total, trainable
}

// NeedsGrad reports whether a parameter of m, or of an adapter attached to one of its
// Linear or Conv2d layers (an adapter that is itself a Module, as package adapters'
// are), requires a gradient: whether training m records a graph when its inputs need
// none.
func NeedsGrad(m Module) bool {
	for _, p := range m.Params("") {
		if p.T().RequiresGrad() {
			return true
		}
		var a any
		switch l := p.Owner.(type) {
		case *Linear:
			a = l.Adapter
		case *Conv2d:
			a = l.Adapter
		}
		if am, ok := a.(Module); ok && NeedsGrad(am) {
			return true
		}
	}
	return false
}

// ReleaseParams releases every parameter tensor of m (and its gradient).
func ReleaseParams(m Module) {
	for _, p := range m.Params("") {
		p.T().Release()
	}
}

// uniform returns a trainable leaf with values drawn uniformly from [-bound, bound).
func uniform(rng *rand.Rand, bound float64, shape ...int) *tensor.Tensor {
	if rng == nil {
		return randomParam(nil, shape)
	}
	return randomParam(func() float64 { return (2*rng.Float64() - 1) * bound }, shape)
}

// normal returns a trainable leaf with values drawn from N(0, std²).
func normal(rng *rand.Rand, std float64, shape ...int) *tensor.Tensor {
	if rng == nil {
		return randomParam(nil, shape)
	}
	return randomParam(func() float64 { return rng.NormFloat64() * std }, shape)
}

func randomParam(draw func() float64, shape []int) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if draw == nil { // a nil rng builds zeros, for a model about to be loaded
		return tensor.Zeros(shape...).SetRequiresGrad(true)
	}
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(draw())
	}
	return tensor.FromFloat32(d, shape...).SetRequiresGrad(true)
}

// fanInBound is PyTorch's default bound for Linear and Conv2d: kaiming_uniform with
// a = √5 gives 1/√fan_in for the weight, and the bias uses the same bound.
func fanInBound(fanIn int) float64 { return 1 / math.Sqrt(float64(max(fanIn, 1))) }
