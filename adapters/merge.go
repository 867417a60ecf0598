package adapters

import (
	"fmt"
	"strings"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/tensor"
)

// layer is an adaptable module of a model: its path and its Linear or Conv2d.
type layer struct {
	path   string
	linear *nn.Linear
	conv   *nn.Conv2d
}

func (l layer) weight() **tensor.Tensor {
	if l.linear != nil {
		return &l.linear.Weight
	}
	return &l.conv.Weight
}

// layers indexes m's Linear and Conv2d modules by every key a file may use for them:
// the kohya name and the PEFT/diffusers paths.
func layers(m nn.Module) map[string]layer {
	out := map[string]layer{}
	for _, p := range m.Params("") {
		path, ok := strings.CutSuffix(p.Name, ".weight")
		if !ok {
			continue
		}
		var l layer
		switch o := p.Owner.(type) {
		case *nn.Linear:
			l = layer{path: path, linear: o}
		case *nn.Conv2d:
			l = layer{path: path, conv: o}
		default:
			continue
		}
		for _, k := range []string{KohyaName(path), path, "unet." + path, "transformer." + path, "base_model.model." + path} {
			out[k] = l
		}
	}
	return out
}

// Merged records weights changed by Merge so that Unmerge restores them exactly.
type Merged struct {
	orig map[**tensor.Tensor]*tensor.Tensor
}

// Weighted is an adapter file with its strength, as "file.safetensors:0.8" gives it.
type Weighted struct {
	File   *File
	Weight float64
}

// Merge folds each file's adapters into m's weights, W ← W + w·(f(W) − W), one file
// after the other, and returns what Unmerge needs to restore the originals bit for
// bit. Merged weights keep their original dtype. Modules the model lacks and shape
// mismatches are errors that name the key, the shapes, and the base model the file
// says it was trained on; nothing is changed then.
func Merge(m nn.Module, files []Weighted) (*Merged, error) {
	idx := layers(m)
	// Resolve everything before touching a weight.
	type job struct {
		l   layer
		mod *Module
		w   float64
	}
	var jobs []job
	for _, wf := range files {
		var missing []string
		for _, mod := range wf.File.Modules {
			l, ok := idx[mod.Key]
			if !ok {
				missing = append(missing, mod.Key)
				continue
			}
			if err := checkShapes(mod, *l.weight()); err != nil {
				return nil, fmt.Errorf("%s: module %s: %w%s", wf.File.Path, mod.Key, err, trainedOn(wf.File))
			}
			jobs = append(jobs, job{l, mod, wf.Weight})
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s: %d module(s) not in this model: %s%s", wf.File.Path, len(missing), listKeys(missing), trainedOn(wf.File))
		}
	}
	mg := &Merged{orig: map[**tensor.Tensor]*tensor.Tensor{}}
	tensor.NoGrad(func() {
		for _, j := range jobs {
			wp := j.l.weight()
			cur := *wp
			im := implFromFile(j.mod, cur)
			w2 := im.merged(cur) // f(W), float32
			if j.w != 1 {
				base := cur.Clone() // float32
				d := tensor.Sub(w2, base)
				ds := tensor.Scale(d, float32(j.w))
				w2.Release()
				w2 = tensor.Add(base, ds)
				tensor.Release(d, ds, base)
			}
			next := w2
			if cur.DType() != tensor.F32 {
				next = w2.Convert(cur.DType())
				w2.Release()
			}
			if _, seen := mg.orig[wp]; seen {
				cur.Release() // an intermediate merge of an earlier file
			} else {
				mg.orig[wp] = cur
			}
			next.SetRequiresGrad(false)
			*wp = next
		}
	})
	return mg, nil
}

// Unmerge restores the original weights and releases the merged ones.
func (mg *Merged) Unmerge() {
	for wp, orig := range mg.orig {
		(*wp).Release()
		*wp = orig
	}
	mg.orig = nil
}

func trainedOn(f *File) string {
	for _, k := range []string{"modelspec.architecture", "ss_base_model_version", "ss_sd_model_name"} {
		if v := f.Metadata[k]; v != "" {
			return fmt.Sprintf(" (the file says it was trained on %s)", v)
		}
	}
	return ""
}

// checkShapes verifies that a module's tensors fit a layer weight w.
func checkShapes(mod *Module, w *tensor.Tensor) error {
	out, fanIn := dims(w)
	shape := func(s string) []int { return mod.Tensors[s].Shape() }
	prod := func(s []int) int {
		n := 1
		for _, d := range s {
			n *= d
		}
		return n
	}
	bad := func(key string, want string) error {
		return fmt.Errorf("tensor %s has shape %v, want %s for a layer of weight %v", key, shape(key), want, w.Shape())
	}
	switch mod.Kind {
	case LoRA, DoRA:
		d, u := shape("lora_down.weight"), shape("lora_up.weight")
		if prod(d)/d[0] != fanIn || len(d) != w.Rank() {
			return bad("lora_down.weight", fmt.Sprintf("[r %v]", w.Shape()[1:]))
		}
		if u[0] != out || prod(u) != out*d[0] {
			return bad("lora_up.weight", fmt.Sprintf("[%d %d ...]", out, d[0]))
		}
		if mod.Kind == DoRA && prod(shape("dora_scale")) != out {
			return bad("dora_scale", fmt.Sprintf("[%d 1]", out))
		}
	case LoHa:
		for _, p := range [][2]string{{"hada_w1_a", "hada_w1_b"}, {"hada_w2_a", "hada_w2_b"}} {
			a, b := shape(p[0]), shape(p[1])
			if len(a) != 2 || a[0] != out || len(b) < 2 || prod(b)/b[0] != fanIn || a[1] != b[0] {
				return bad(p[1], fmt.Sprintf("[%d r]·[r %d]", out, fanIn))
			}
		}
	case LoKr:
		k := implFromFile(mod, w).(*lokr)
		if w.Rank() != 2 || k.a*k.b != out || k.c*k.d != fanIn {
			return fmt.Errorf("kronecker factors [%d %d] ⊗ [%d %d] do not make weight %v", k.a, k.c, k.b, k.d, w.Shape())
		}
	case IA3:
		n := prod(shape("weight"))
		if n != out && n != w.Dim(1) {
			return bad("weight", fmt.Sprintf("[%d] or [%d]", out, w.Dim(1)))
		}
	}
	return nil
}

// implFromFile builds the adapter algebra from a file's tensors (the scale from its
// alpha and rank as ComfyUI computes it).
func implFromFile(mod *Module, w *tensor.Tensor) impl {
	t := mod.Tensors
	s := func(rank int) float32 {
		if mod.Alpha == 0 || rank == 0 {
			return 1
		}
		return float32(mod.Alpha / float64(rank))
	}
	switch mod.Kind {
	case LoRA, DoRA:
		lo := lora{down: t["lora_down.weight"], up: t["lora_up.weight"]}
		lo.s = s(lo.down.Dim(0))
		if mod.Kind == DoRA {
			return &dora{lora: lo, m: t["dora_scale"]}
		}
		return &lo
	case LoHa:
		return &loha{w1a: t["hada_w1_a"], w1b: t["hada_w1_b"], w2a: t["hada_w2_a"], w2b: t["hada_w2_b"], s: s(t["hada_w1_b"].Dim(0))}
	case LoKr:
		k := &lokr{w1: t["lokr_w1"], w1a: t["lokr_w1_a"], w1b: t["lokr_w1_b"], w2: t["lokr_w2"], w2a: t["lokr_w2_a"], w2b: t["lokr_w2_b"], kk: 1, s: 1}
		switch {
		case k.w2b != nil:
			k.s = s(k.w2b.Dim(0))
		case k.w1b != nil:
			k.s = s(k.w1b.Dim(0))
		}
		k.a, k.c = dim2(k.w1, k.w1a, k.w1b)
		k.b, k.d = dim2(k.w2, k.w2a, k.w2b)
		return k
	case IA3:
		on := t["on_input"].Float32s()[0] != 0
		return &ia3{l: t["weight"], onInput: on}
	}
	panic("adapters: unknown kind " + string(mod.Kind))
}

// dim2 returns the shape of a Kronecker factor stored whole or as a·b.
func dim2(w, a, b *tensor.Tensor) (int, int) {
	if w != nil {
		return w.Dim(0), w.Dim(1)
	}
	return a.Dim(0), b.Dim(1)
}
