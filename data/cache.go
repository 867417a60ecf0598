package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/difftune/difftune/safetensors"
	"github.com/difftune/difftune/tensor"
)

// CacheKey identifies a cached result (a VAE latent, say) of one sample: the image's
// content, the geometry that produced the pixels, and the encoder. Any change of any
// field is a different key, so a cache never serves stale data: an edited image has a
// new Hash, a new resolution a new Bucket, a new VAE a new Encoder.
type CacheKey struct {
	Hash   string // hex SHA-256 of the image file
	Size   Size   // the source image, EXIF-oriented
	Bucket Size
	Crop   image.Point
	Flip   bool
	// Encoder identifies what computed the tensors, including everything that
	// changes its output: e.g. "vae:sd15:sha256=…:scale=0.18215:f32".
	Encoder string
}

// Key returns the cache key of s's pixels under encoder.
func (s Sample) Key(encoder string) CacheKey {
	return CacheKey{Hash: s.Hash, Size: s.Size, Bucket: s.Bucket, Crop: s.Crop, Flip: s.Flip, Encoder: encoder}
}

// metadata returns the key as safetensors metadata; Get compares it field by field.
func (k CacheKey) metadata() map[string]string {
	return map[string]string{
		"difftune.cache": "1",
		"hash":           k.Hash,
		"size":           k.Size.String(),
		"bucket":         k.Bucket.String(),
		"crop":           strconv.Itoa(k.Crop.X) + "," + strconv.Itoa(k.Crop.Y),
		"flip":           strconv.FormatBool(k.Flip),
		"encoder":        k.Encoder,
	}
}

// ID returns the hex SHA-256 of the key's canonical form, the cache file's name.
func (k CacheKey) ID() string {
	h := sha256.New()
	m := k.metadata()
	for _, f := range []string{"difftune.cache", "hash", "size", "bucket", "crop", "flip", "encoder"} {
		fmt.Fprintf(h, "%s=%d:%s\n", f, len(m[f]), m[f])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Cache is an on-disk cache of named float32 tensors, one safetensors file per key
// (named by CacheKey.ID, with the key's fields in the file's metadata), written
// atomically, so a crash never leaves a partial entry. Different processes may share
// a cache folder: the worst a race does is compute an entry twice.
type Cache struct{ dir string }

// OpenCache returns the cache in dir, creating the folder if needed. It fails when dir
// cannot be created.
func OpenCache(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data: cache folder: %w", err)
	}
	return &Cache{dir: dir}, nil
}

// Path returns the file that holds k's entry.
func (c *Cache) Path(k CacheKey) string { return filepath.Join(c.dir, k.ID()+".safetensors") }

// Get returns k's tensors as new float32 leaf tensors (the caller releases them) and
// true, or nil and false on a miss. An entry whose metadata does not match k, or that
// holds a tensor that is not F32, is a miss. Get fails, also returning a miss, when the
// file exists but cannot be read or is not a valid safetensors file; the error names
// the file, and Put replaces it.
func (c *Cache) Get(k CacheKey) (map[string]*tensor.Tensor, bool, error) {
	path := c.Path(k)
	f, err := safetensors.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("data: cache entry %s is unreadable and will be recomputed: %w", path, err)
	}
	defer f.Close()
	meta := f.Metadata()
	for name, want := range k.metadata() {
		if meta[name] != want {
			return nil, false, nil
		}
	}
	out := map[string]*tensor.Tensor{}
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		b, err := f.Bytes(name)
		if err != nil || info.DType != safetensors.F32 {
			releaseAll(out)
			return nil, false, err
		}
		v := make([]float32, len(b)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		out[name] = tensor.FromFloat32(v, info.Shape...)
	}
	return out, true, nil
}

// Put stores tensors (of any dtype; they are written as F32) under k, replacing any
// entry. It does not take ownership of the tensors. It fails, naming the file, when
// the file cannot be written.
func (c *Cache) Put(k CacheKey, tensors map[string]*tensor.Tensor) error {
	ts := make([]safetensors.Tensor, 0, len(tensors))
	for name, t := range tensors {
		v := t.Float32s()
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: t.Shape(), Data: b})
	}
	if err := safetensors.Write(c.Path(k), ts, k.metadata()); err != nil {
		return fmt.Errorf("data: cache: %w", err)
	}
	return nil
}

func releaseAll(m map[string]*tensor.Tensor) {
	for _, t := range m {
		t.Release()
	}
}
