package adapters

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/difftune/difftune/nn"
	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// KohyaPrefix starts every denoiser module's key in a kohya file.
const KohyaPrefix = "lora_unet_"

// KohyaName returns the kohya key of a module path: "lora_unet_" followed by the path
// with dots replaced by underscores, as sd-scripts writes it and ComfyUI, A1111/Forge
// and diffusers map back. DiT and PixArt modules use their own parameter paths the
// same way (ComfyUI's generic "lora_unet_<key>" mapping of diffusion-model keys).
func KohyaName(module string) string { return KohyaPrefix + strings.ReplaceAll(module, ".", "_") }

// Format selects the key naming of a saved adapter file.
type Format string

// File formats.
const (
	FormatKohya Format = "kohya" // lora_unet_<path>.lora_down.weight, .lora_up.weight, .alpha
	FormatPEFT  Format = "peft"  // <prefix>.<path>.lora_A.weight, .lora_B.weight (LoRA only)
)

// SaveOptions control Save.
type SaveOptions struct {
	Format Format
	DType  tensor.DType // storage dtype of the adapter tensors (F32, F16, BF16)
	// PEFTPrefix is the component prefix of PEFT keys ("unet" or "transformer").
	PEFTPrefix string
	// Metadata is added to the file's __metadata__ (ss_*, modelspec.*); Save adds the
	// network fields itself.
	Metadata map[string]string
}

// Save writes the set's adapters to path atomically.
func Save(s *Set, path string, o SaveOptions) error {
	if o.Format == "" {
		o.Format = FormatKohya
	}
	meta := map[string]string{}
	for k, v := range o.Metadata {
		meta[k] = v
	}
	var recs []safetensors.Tensor
	switch o.Format {
	case FormatKohya:
		for _, a := range s.Adapters {
			key := KohyaName(a.Name)
			for _, p := range a.impl.params() {
				recs = append(recs, record(key+"."+p.Name, p.T(), o.DType))
			}
			if im, ok := a.impl.(*ia3); ok {
				b := byte(0)
				if im.onInput {
					b = 1
				}
				recs = append(recs, safetensors.Tensor{Name: key + ".on_input", DType: safetensors.BOOL, Shape: []int{}, Data: []byte{b}})
			} else if a.Rank > 0 {
				recs = append(recs, scalar(key+".alpha", float32(a.Alpha)))
			}
		}
		for k, v := range kohyaMetadata(s) {
			meta[k] = v
		}
	case FormatPEFT:
		if s.cfg.Kind != LoRA && s.cfg.Kind != LoCon {
			return fmt.Errorf("save %s: the PEFT format holds LoRA only, not %s; save in the kohya format", path, s.cfg.Kind)
		}
		prefix := o.PEFTPrefix
		if prefix == "" {
			prefix = "unet"
		}
		var targets []string
		for _, a := range s.Adapters {
			lo := a.impl.(*lora)
			recs = append(recs, record(prefix+"."+a.Name+".lora_A.weight", lo.down, o.DType),
				record(prefix+"."+a.Name+".lora_B.weight", lo.up, o.DType))
			targets = append(targets, a.Name)
		}
		cfg, _ := json.Marshal(map[string]any{"r": s.cfg.Rank, "lora_alpha": alphaOf(s.cfg), "target_modules": targets,
			"use_rslora": s.cfg.RSLoRA, "peft_type": "LORA"})
		meta["lora_adapter_metadata"] = string(cfg)
		meta["format"] = "pt"
	default:
		return fmt.Errorf("save %s: format %q: want kohya or peft", path, o.Format)
	}
	if o.Format == FormatKohya {
		model, legacy, err := kohyaHashes(recs, meta)
		if err != nil {
			return fmt.Errorf("save adapter %s: %w", path, err)
		}
		meta["sshs_model_hash"], meta["sshs_legacy_hash"] = model, legacy
	}
	if err := safetensors.Write(path, recs, meta); err != nil {
		return fmt.Errorf("save adapter: %w", err)
	}
	return nil
}

// kohyaHashes computes the hashes sd-scripts stores as sshs_model_hash and
// sshs_legacy_hash (the "addnet" hashes A1111's Additional Networks shows): SHA-256
// of the file after its header, and the first 8 hex digits of SHA-256 of the file's
// bytes [1 MiB, 1 MiB + 64 KiB), both over the file as written without these two keys.
func kohyaHashes(recs []safetensors.Tensor, meta map[string]string) (model, legacy string, err error) {
	b, err := safetensors.Encode(recs, meta)
	if err != nil {
		return "", "", err
	}
	n := binary.LittleEndian.Uint64(b[:8])
	m := sha256.Sum256(b[8+n:])
	lo, hi := min(len(b), 0x100000), min(len(b), 0x110000)
	l := sha256.Sum256(b[lo:hi])
	return hex.EncodeToString(m[:]), hex.EncodeToString(l[:])[:8], nil
}

func alphaOf(c Config) float64 {
	if c.Alpha == 0 {
		return float64(c.Rank)
	}
	return c.Alpha
}

// kohyaMetadata returns the network fields of sd-scripts' ss_* training record.
func kohyaMetadata(s *Set) map[string]string {
	c := s.cfg
	module, args := "networks.lora", map[string]string{}
	if c.Kind != LoRA {
		module = "lycoris.kohya"
		args["algo"] = string(c.Kind)
		if c.Kind == LoCon {
			args["algo"] = "locon"
		}
	}
	if c.ConvRank > 0 {
		args["conv_dim"] = strconv.Itoa(c.ConvRank)
		args["conv_alpha"] = strconv.FormatFloat(c.ConvAlpha, 'g', -1, 64)
	}
	if c.Dropout > 0 {
		args["dropout"] = strconv.FormatFloat(c.Dropout, 'g', -1, 64)
	}
	if c.ModuleDropout > 0 {
		args["module_dropout"] = strconv.FormatFloat(c.ModuleDropout, 'g', -1, 64)
	}
	if c.RSLoRA {
		args["rs_lora"] = "True"
	}
	a, _ := json.Marshal(args)
	return map[string]string{
		"ss_network_module": module,
		"ss_network_dim":    strconv.Itoa(c.Rank),
		"ss_network_alpha":  strconv.FormatFloat(alphaOf(c), 'g', -1, 64),
		"ss_network_args":   string(a),
		"difftune_form":     string(c.Form),
	}
}

// record encodes t as little-endian bytes of dtype dt.
func record(name string, t *tensor.Tensor, dt tensor.DType) safetensors.Tensor {
	v := t.Float32s()
	r := safetensors.Tensor{Name: name, Shape: slices.Clone(t.Shape())}
	switch dt {
	case tensor.F16, tensor.BF16:
		r.DType = safetensors.F16
		if dt == tensor.BF16 {
			r.DType = safetensors.BF16
		}
		r.Data = make([]byte, 2*len(v))
		for i, x := range v {
			h := tensor.F32ToF16(x)
			if dt == tensor.BF16 {
				h = tensor.F32ToBF16(x)
			}
			binary.LittleEndian.PutUint16(r.Data[2*i:], h)
		}
	default:
		r.DType = safetensors.F32
		r.Data = make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(r.Data[4*i:], math.Float32bits(x))
		}
	}
	return r
}

func scalar(name string, v float32) safetensors.Tensor {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, math.Float32bits(v))
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: []int{}, Data: b}
}

// File is an adapter file read into memory: one entry per adapted module.
type File struct {
	Path     string
	Metadata map[string]string
	Modules  []*Module // sorted by key
}

// Module is the adapter of one module in a file.
type Module struct {
	Key     string // file key of the module: "lora_unet_..." or the PEFT path
	Kind    Kind
	Alpha   float64 // 0 when the file has none
	Tensors map[string]*tensor.Tensor
}

// Release releases every tensor of the file.
func (f *File) Release() {
	for _, m := range f.Modules {
		for _, t := range m.Tensors {
			t.Release()
		}
	}
}

var suffixes = []string{
	"lora_down.weight", "lora_up.weight", "lora_A.weight", "lora_B.weight", "dora_scale", "alpha",
	"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b",
	"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "on_input", "weight",
}

// Load reads an adapter file in the kohya (sd-scripts, LyCORIS) or PEFT/diffusers
// format. Keys it cannot place are listed in the error; text-encoder adapters
// ("lora_te*") are reported in skipped.
func Load(path string) (f *File, skipped []string, err error) { return load(path, false) }

// LoadIgnoringUnknown is Load that skips keys it cannot place instead of failing,
// returning them in skipped with the text-encoder keys.
func LoadIgnoringUnknown(path string) (f *File, skipped []string, err error) { return load(path, true) }

func load(path string, ignoreUnknown bool) (f *File, skipped []string, err error) {
	sf, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer sf.Close()
	f = &File{Path: path, Metadata: sf.Metadata()}
	byKey := map[string]*Module{}
	fail := func(err error) (*File, []string, error) {
		for _, m := range byKey {
			for _, t := range m.Tensors {
				t.Release()
			}
		}
		return nil, nil, err
	}
	var unknown []string
	peftAlpha := peftAlpha(f.Metadata)
	for _, name := range sf.Names() {
		if strings.HasPrefix(name, "lora_te") || strings.HasPrefix(name, "text_encoder") {
			skipped = append(skipped, name)
			continue
		}
		key, suffix := splitKey(name)
		if key == "" {
			unknown = append(unknown, name)
			continue
		}
		t, err := readAny(sf, name)
		if err != nil {
			return fail(err)
		}
		m := byKey[key]
		if m == nil {
			m = &Module{Key: key, Tensors: map[string]*tensor.Tensor{}}
			byKey[key] = m
		}
		if suffix == "alpha" {
			m.Alpha = float64(t.Float32s()[0])
			t.Release()
			continue
		}
		switch suffix {
		case "lora_A.weight":
			suffix = "lora_down.weight"
			m.Alpha = peftAlpha
		case "lora_B.weight":
			suffix = "lora_up.weight"
		}
		m.Tensors[suffix] = normalize(suffix, t)
	}
	if len(unknown) > 0 && !ignoreUnknown {
		return fail(fmt.Errorf("load %s: %d key(s) are not adapter tensors: %s (pass --ignore-unknown to skip them)", path, len(unknown), listKeys(unknown)))
	}
	skipped = append(skipped, unknown...)
	for _, m := range byKey {
		k, err := kindOf(m)
		if err != nil {
			return fail(fmt.Errorf("load %s: module %s: %w", path, m.Key, err))
		}
		m.Kind = k
		f.Modules = append(f.Modules, m)
	}
	sort.Slice(f.Modules, func(i, j int) bool { return f.Modules[i].Key < f.Modules[j].Key })
	return f, skipped, nil
}

func peftAlpha(meta map[string]string) float64 {
	var c struct {
		Alpha float64 `json:"lora_alpha"`
	}
	if s, ok := meta["lora_adapter_metadata"]; ok && json.Unmarshal([]byte(s), &c) == nil {
		return c.Alpha
	}
	return 0
}

// splitKey splits "lora_unet_x_y.lora_down.weight" into the module key and suffix.
func splitKey(name string) (key, suffix string) {
	for _, s := range suffixes {
		if k, ok := strings.CutSuffix(name, "."+s); ok {
			return k, s
		}
	}
	return "", ""
}

// kindOf identifies a module's adapter type from its tensors.
func kindOf(m *Module) (Kind, error) {
	has := func(s string) bool { _, ok := m.Tensors[s]; return ok }
	switch {
	case has("lora_down.weight") && has("lora_up.weight") && has("dora_scale"):
		return DoRA, nil
	case has("lora_down.weight") && has("lora_up.weight"):
		return LoRA, nil
	case has("hada_w1_a") && has("hada_w1_b") && has("hada_w2_a") && has("hada_w2_b"):
		return LoHa, nil
	case (has("lokr_w1") || has("lokr_w1_a") && has("lokr_w1_b")) && (has("lokr_w2") || has("lokr_w2_a") && has("lokr_w2_b")):
		return LoKr, nil
	case has("weight") && has("on_input"):
		return IA3, nil
	}
	names := make([]string, 0, len(m.Tensors))
	for k := range m.Tensors {
		names = append(names, k)
	}
	sort.Strings(names)
	return "", fmt.Errorf("tensors %v are no complete LoRA, DoRA, LoHa, LoKr or IA3 set", names)
}

// readAny reads a float or bool tensor as float32.
func readAny(f *safetensors.File, name string) (*tensor.Tensor, error) {
	info, _ := f.Info(name)
	if info.DType == safetensors.BOOL || info.DType == safetensors.U8 {
		raw, err := f.Bytes(name)
		if err != nil {
			return nil, err
		}
		v := make([]float32, len(raw))
		for i, b := range raw {
			v[i] = float32(b)
		}
		return tensor.FromFloat32(v, info.Shape...), nil
	}
	return nn.ReadTensor(f, name)
}

func listKeys(keys []string) string {
	sort.Strings(keys)
	if len(keys) <= 8 {
		return strings.Join(keys, ", ")
	}
	return fmt.Sprintf("%s, ... and %d more", strings.Join(keys[:8], ", "), len(keys)-8)
}

// normalize stores factors as the algebra uses them: LoHa's second factors flattened
// to [r, fan-in] and IA3's scale as a vector (files may hold [r, in, k, k] or [1, n]).
func normalize(suffix string, t *tensor.Tensor) *tensor.Tensor {
	var shape []int
	switch {
	case (suffix == "hada_w1_b" || suffix == "hada_w2_b") && t.Rank() > 2:
		shape = []int{t.Dim(0), t.Len() / t.Dim(0)}
	case suffix == "weight" && t.Rank() > 1:
		shape = []int{t.Len()}
	default:
		return t
	}
	v := tensor.Reshape(t, shape...)
	t.Release()
	return v
}
