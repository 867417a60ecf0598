package vae

import (
	"math"
	"testing"

	"github.com/difftune/difftune/internal/parity"

	"github.com/difftune/difftune/tensor"
)

// smoothImage returns a [1, c, h, w] image in [-1, 1] of a few low-frequency waves,
// the kind of content whose latents are smooth as real photographs' are.
func smoothImage(c, h, w int) *tensor.Tensor {
	x := tensor.Zeros(1, c, h, w)
	d := x.Data()
	for ch := range c {
		for i := range h {
			for j := range w {
				fi, fj, fc := float64(i)/float64(h), float64(j)/float64(w), float64(ch+1)
				d[(ch*h+i)*w+j] = float32(0.6*math.Sin(2*math.Pi*(fc*fi+0.5*fj)) + 0.3*math.Cos(2*math.Pi*(2*fj-fc*fi*0.7)))
			}
		}
	}
	return x
}

// seamStats splits |got − want| into pixels of the blended overlaps (any row or column
// within the blend band after a tile boundary) and the rest.
func seamStats(got, want *tensor.Tensor, t tiling) (interior, seam float64) {
	h, w := got.Dim(2), got.Dim(3)
	inBand := func(p int) bool { return p >= t.keep && p%t.keep < t.blend }
	g, wd := got.Data(), want.Data()
	for i := range g {
		r, c := (i/w)%h, i%w
		d := math.Abs(float64(g[i] - wd[i]))
		if inBand(r) || inBand(c) {
			seam = math.Max(seam, d)
		} else {
			interior = math.Max(interior, d)
		}
	}
	return interior, seam
}

// TestTiledGeometry runs the tiling on local maps, where every tile computes exactly
// what the whole input does, so the blended, cropped result must equal the untiled
// one: nearest ×2 upsampling for decode's geometry, a stride-2 1×1 convolution for
// encode's, on a grid of 4×4 tiles with partial tiles at the edges.
func TestTiledGeometry(t *testing.T) {
	x := smoothImage(2, 40, 44)
	pick := tensor.Full(1, 2, 1, 1, 1)
	defer tensor.Release(x, pick)
	for _, c := range []struct {
		name   string
		t      tiling
		oh, ow int
		f      func(*tensor.Tensor) *tensor.Tensor
	}{
		{"decode", tiling{in: 16, step: 12, blend: 8, keep: 24}, 80, 88, tensor.UpsampleNearest2x},
		{"encode", tiling{in: 16, step: 12, blend: 2, keep: 6}, 20, 22, func(x *tensor.Tensor) *tensor.Tensor { return tensor.Conv2d(x, pick, nil, 2, 0, 2) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := tiled(x, c.t, c.oh, c.ow, c.f)
			var want *tensor.Tensor
			tensor.NoGrad(func() { want = c.f(x) })
			// a·(1−w) + a·w rounds to a within a few float32 ulps of |a| <= 1.
			parity.Expect(t, c.name, got, want, 1e-6)
			got.Release()
		})
	}
}

// TestTiledDecodeSeams decodes the latents of an 80×80 image with the golden model in
// 32-pixel tiles (16 tiles of 16×16 latents, overlap 0.25: 8 blended pixels) and
// compares with the untiled decode. The tiles are not exact pieces of the whole: each
// decoder's GroupNorm statistics and mid-block attention see one tile only, as in
// diffusers, so the difference is that of two decoders, not rounding. What tiling
// must not add is a seam: the error may not jump across the lines where one tile's
// crop meets the next more than it changes between any other neighbouring pixels.
// Figures on the golden (random, not trained) weights: max|decoded| 1.57; max error
// 0.35 outside the blend bands, 0.91 inside them; largest error jump 0.36 across crop
// lines, 0.66 elsewhere. The bounds below are those figures with ~10% headroom.
func TestTiledDecodeSeams(t *testing.T) {
	m, _ := goldenModel(t)
	img := smoothImage(m.Config.InChannels, 80, 80)
	defer img.Release()
	var moments, full *tensor.Tensor
	tensor.NoGrad(func() { moments = m.Encode(img) })
	defer moments.Release()
	d := NewDiagonalGaussian(moments)
	defer d.Release()
	tensor.NoGrad(func() { full = m.Decode(d.Mean) })
	defer full.Release()
	o := TileOptions{SampleSize: 32}
	got, err := m.TiledDecode(d.Mean, o)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	g, _ := m.Config.grid(o, false)
	if n := (d.Mean.Dim(2) + g.step - 1) / g.step; n*n < 9 {
		t.Fatalf("only %d tiles", n*n)
	}
	interior, seam := seamStats(got, full, g)
	across, elsewhere := jumps(got, full, g.keep)
	amax := maxAbs(full)
	t.Logf("decode, %+v: max|decoded| %.3g; error outside blend bands %.3g, inside %.3g; error jump across crop lines %.3g, elsewhere %.3g",
		g, amax, interior, seam, across, elsewhere)
	if interior > 0.25*amax || seam > 0.65*amax {
		t.Errorf("tiled decode differs by %.3g outside and %.3g inside the blend bands (bounds %.3g, %.3g)", interior, seam, 0.25*amax, 0.65*amax)
	}
	if across > elsewhere {
		t.Errorf("seam: the error jumps by %.3g across crop lines, %.3g elsewhere", across, elsewhere)
	}

	tm, err := m.TiledEncode(img, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Release()
	ge, _ := m.Config.grid(o, true)
	interior, seam = seamStats(tm, moments, ge)
	across, elsewhere = jumps(tm, moments, ge.keep)
	t.Logf("encode, %+v: max|moments| %.3g; error outside blend bands %.3g, inside %.3g; jump across crop lines %.3g, elsewhere %.3g",
		ge, maxAbs(moments), interior, seam, across, elsewhere)
	if across > elsewhere {
		t.Errorf("seam: the moments' error jumps by %.3g across crop lines, %.3g elsewhere", across, elsewhere)
	}
}

// TestTilingOptions checks defaults and the refusal of options that do not tile.
func TestTilingOptions(t *testing.T) {
	c := Presets["sd"].Config
	g, err := c.grid(TileOptions{}, false)
	if err != nil || g != (tiling{in: 64, step: 48, blend: 128, keep: 384}) {
		t.Fatalf("default decode tiling %+v, %v; want diffusers' 64-latent tiles every 48, blending 128 pixels", g, err)
	}
	for _, o := range []TileOptions{{SampleSize: 100}, {SampleSize: 64, Overlap: 0.3}, {SampleSize: 64, Overlap: 1}} {
		if _, err := c.grid(o, false); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func maxAbs(x *tensor.Tensor) float64 {
	var m float64
	for _, v := range x.Data() {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}

// jumps returns the largest change in the error e = got − want between horizontally
// or vertically adjacent pixels, across crop lines (multiples of keep) and elsewhere.
// A visible seam is an error that jumps at a line.
func jumps(got, want *tensor.Tensor, keep int) (across, elsewhere float64) {
	h, w := got.Dim(2), got.Dim(3)
	g, wd := got.Data(), want.Data()
	e := func(p, r, c int) float64 { i := (p*h+r)*w + c; return float64(g[i] - wd[i]) }
	for p := range got.Dim(0) * got.Dim(1) {
		for r := range h {
			for c := range w {
				if c+1 < w {
					j := math.Abs(e(p, r, c+1) - e(p, r, c))
					if (c+1)%keep == 0 {
						across = math.Max(across, j)
					} else {
						elsewhere = math.Max(elsewhere, j)
					}
				}
				if r+1 < h {
					j := math.Abs(e(p, r+1, c) - e(p, r, c))
					if (r+1)%keep == 0 {
						across = math.Max(across, j)
					} else {
						elsewhere = math.Max(elsewhere, j)
					}
				}
			}
		}
	}
	return across, elsewhere
}
