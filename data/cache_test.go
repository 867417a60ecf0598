package data

import (
	"image"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/difftune/difftune/tensor"
)

func TestCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "latents")
	c, err := OpenCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := CacheKey{
		Hash: strings.Repeat("ab", 32), Size: Size{600, 400}, Bucket: Size{640, 384},
		Crop: image.Pt(0, 21), Flip: true, Encoder: "vae:sd15:sha256=0123:scale=0.18215",
	}
	latent := tensor.FromFloat32([]float32{1, -2.5, 3e-7, 4, 5, 6, 7, 8}, 1, 2, 2, 2)
	defer latent.Release()
	mean := tensor.FromFloat32([]float32{0.5}, 1)
	defer mean.Release()

	if _, ok, err := c.Get(key); ok || err != nil {
		t.Fatalf("empty cache: ok %v err %v", ok, err)
	}
	if err := c.Put(key, map[string]*tensor.Tensor{"latent": latent, "mean": mean}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := c.Get(key)
	if !ok || err != nil {
		t.Fatalf("after Put: ok %v err %v", ok, err)
	}
	for name, want := range map[string]*tensor.Tensor{"latent": latent, "mean": mean} {
		g := got[name]
		if g == nil || !slices.Equal(g.Shape(), want.Shape()) || !slices.Equal(g.Data(), want.Data()) {
			t.Errorf("%s: got %v", name, g)
		}
	}
	releaseAll(got)

	// Changing any one component of the key is a miss.
	tests := []struct {
		name   string
		change func(k *CacheKey)
	}{
		{"hash", func(k *CacheKey) { k.Hash = strings.Repeat("ab", 31) + "ac" }},
		{"size", func(k *CacheKey) { k.Size.W++ }},
		{"bucket", func(k *CacheKey) { k.Bucket = Size{576, 448} }},
		{"crop", func(k *CacheKey) { k.Crop.Y-- }},
		{"flip", func(k *CacheKey) { k.Flip = false }},
		{"encoder", func(k *CacheKey) { k.Encoder += ":bf16" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := key
			tt.change(&k)
			if k.ID() == key.ID() {
				t.Fatal("same ID for a different key")
			}
			if m, ok, err := c.Get(k); ok || err != nil {
				releaseAll(m)
				t.Errorf("ok %v err %v, want a miss", ok, err)
			}
		})
	}

	t.Run("foreign entry under the key's name", func(t *testing.T) {
		other := key
		other.Flip = false
		if err := c.Put(other, map[string]*tensor.Tensor{"latent": latent}); err != nil {
			t.Fatal(err)
		}
		k := key
		k.Encoder = "another"
		b, _ := os.ReadFile(c.Path(other))
		writeFile(t, c.Path(k), b) // metadata says other's key
		if m, ok, err := c.Get(k); ok || err != nil {
			releaseAll(m)
			t.Errorf("ok %v err %v, want a miss", ok, err)
		}
	})
	t.Run("corrupt entry", func(t *testing.T) {
		k := key
		k.Encoder = "corrupt"
		writeFile(t, c.Path(k), []byte("garbage"))
		if _, ok, err := c.Get(k); ok || err == nil || !strings.Contains(err.Error(), c.Path(k)) {
			t.Errorf("ok %v err %v, want a miss with an error naming the file", ok, err)
		}
		if err := c.Put(k, map[string]*tensor.Tensor{"mean": mean}); err != nil {
			t.Fatal(err)
		}
		m, ok, err := c.Get(k)
		if !ok || err != nil {
			t.Errorf("after rewrite: ok %v err %v", ok, err)
		}
		releaseAll(m)
	})

	// Entries are written atomically: no temporary files remain.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".safetensors") || strings.HasPrefix(e.Name(), ".") {
			t.Errorf("stray file %s", e.Name())
		}
	}
}

// TestSampleKey checks that a sample's key carries its identity and that the loader's
// flips and crops give distinct keys.
func TestSampleKey(t *testing.T) {
	ds := smallDataset(t)
	a := ds.CenterSample(0, false).Key("enc")
	b := ds.CenterSample(0, true).Key("enc")
	it := ds.Items[0]
	if a.Hash != it.Hash || a.Size != it.Size || a.Bucket != it.Bucket || a.Encoder != "enc" || a.Flip || !b.Flip || a.ID() == b.ID() {
		t.Errorf("keys %+v %+v for %+v", a, b, it)
	}
}
