package vae

import (
	"fmt"

	"github.com/difftune/difftune/tensor"
)

// TileOptions set the tiles of TiledEncode and TiledDecode, as diffusers'
// enable_tiling does.
type TileOptions struct {
	// SampleSize is the tile side in image pixels (tile_sample_min_size); the latent
	// tile side is SampleSize/f. 0 means Config.SampleSize.
	SampleSize int
	// Overlap is the fraction of a tile shared with each neighbour
	// (tile_overlap_factor). 0 means 0.25.
	Overlap float64
}

// tiling is a tile grid: tiles of side in input cells start every step cells; each
// output tile is blended with its upper and left neighbours over blend cells and
// cropped to keep (= step·scale, so the crops tile the output exactly).
type tiling struct{ in, step, blend, keep int }

// grid resolves o for encoding (input in pixels, output in latents) or decoding
// (the reverse) with diffusers' arithmetic.
func (c Config) grid(o TileOptions, encode bool) (tiling, error) {
	f := c.Factor()
	size, overlap := o.SampleSize, o.Overlap
	if size == 0 {
		size = c.SampleSize
	}
	if overlap == 0 {
		overlap = 0.25
	}
	if size <= 0 || size%f != 0 || overlap < 0 || overlap >= 1 {
		return tiling{}, fmt.Errorf("vae tiling: tile size %d with overlap %g: want a positive multiple of %d and an overlap in [0, 1)", size, overlap, f)
	}
	latent := size / f
	var t tiling
	if encode {
		t = tiling{in: size, step: int(float64(size) * (1 - overlap)), blend: int(float64(latent) * overlap)}
		t.keep = latent - t.blend
		if t.step != t.keep*f {
			return tiling{}, fmt.Errorf("vae tiling: tile size %d with overlap %g steps %d pixels but keeps %d latents; choose values where size·overlap is a multiple of %d", size, overlap, t.step, t.keep, f)
		}
	} else {
		t = tiling{in: latent, step: int(float64(latent) * (1 - overlap)), blend: int(float64(size) * overlap)}
		t.keep = size - t.blend
		if t.step*f != t.keep {
			return tiling{}, fmt.Errorf("vae tiling: tile size %d with overlap %g steps %d latents but keeps %d pixels; choose values where size·overlap is a multiple of %d", size, overlap, t.step, t.keep, f)
		}
	}
	if t.step <= 0 {
		return tiling{}, fmt.Errorf("vae tiling: tile size %d with overlap %g leaves no step between tiles", size, overlap)
	}
	return t, nil
}

// TiledEncode returns the moments of img [N, Cin, H, W] as Encode does, encoding
// overlapping tiles of o.SampleSize pixels and blending their moments linearly over
// the overlap, as diffusers' tiled_encode. Memory is bounded by the tile, not the
// image. Tiles see only their own pixels (their GroupNorm statistics and attention
// are per tile), so the result is close to Encode's, not equal. The result carries
// no graph. It fails on options that do not tile evenly; it panics on a wrong shape.
func (m *AutoencoderKL) TiledEncode(img *tensor.Tensor, o TileOptions) (*tensor.Tensor, error) {
	t, err := m.Config.grid(o, true)
	if err != nil {
		return nil, err
	}
	f := m.Config.Factor()
	if img.Rank() != 4 || img.Dim(2)%f != 0 || img.Dim(3)%f != 0 {
		panic(fmt.Sprintf("vae.TiledEncode: image %v: want [N, %d, H, W] with H and W multiples of %d", img.Shape(), m.Config.InChannels, f))
	}
	return tiled(img, t, img.Dim(2)/f, img.Dim(3)/f, m.Encode), nil
}

// TiledDecode decodes VAE latents z [N, latent, h, w] as Decode does, in overlapping
// tiles of o.SampleSize/f latents blended linearly over the overlap, as diffusers'
// tiled_decode. Tiles see only their own latents, so the result is close to
// Decode's, not equal (see TestTiledDecodeSeams for how close). The result carries
// no graph. It fails on options that do not tile evenly; it panics on a wrong shape.
func (m *AutoencoderKL) TiledDecode(z *tensor.Tensor, o TileOptions) (*tensor.Tensor, error) {
	t, err := m.Config.grid(o, false)
	if err != nil {
		return nil, err
	}
	f := m.Config.Factor()
	return tiled(z, t, z.Dim(2)*f, z.Dim(3)*f, m.Decode), nil
}

// tiled runs f on each tile of x, blends every output tile with its already blended
// upper and left neighbours, and writes its crop into the [N, C, oh, ow] result, in
// diffusers' order.
func tiled(x *tensor.Tensor, t tiling, oh, ow int, f func(*tensor.Tensor) *tensor.Tensor) *tensor.Tensor {
	var out *tensor.Tensor
	tensor.NoGrad(func() {
		var above []*tensor.Tensor // the previous row's blended tiles
		for i, y := 0, 0; i < x.Dim(2); i, y = i+t.step, y+t.keep {
			var row []*tensor.Tensor
			for j, xo := 0, 0; j < x.Dim(3); j, xo = j+t.step, xo+t.keep {
				rows := tensor.Slice(x, 2, i, min(i+t.in, x.Dim(2)))
				tile := tensor.Slice(rows, 3, j, min(j+t.in, x.Dim(3))) // [N, C, ≤in, ≤in]
				rows.Release()
				y4 := f(tile) // [N, C', th, tw]
				tile.Release()
				if out == nil {
					out = tensor.Zeros(y4.Dim(0), y4.Dim(1), oh, ow)
				}
				if len(above) > 0 {
					blend(above[len(row)], y4, t.blend, true)
				}
				if len(row) > 0 {
					blend(row[len(row)-1], y4, t.blend, false)
				}
				place(out, y4, y, xo, t.keep)
				row = append(row, y4)
			}
			tensor.Release(above...)
			above = row
		}
		tensor.Release(above...)
	})
	return out
}

// blend mixes the last e rows (vertical) or columns of a into the first e of b in
// place: b[k] = a[end−e+k]·(1 − k/e) + b[k]·(k/e), as diffusers' blend_v and blend_h.
// a and b agree in every other dimension.
func blend(a, b *tensor.Tensor, e int, vertical bool) {
	nc, ah, aw, bh, bw := a.Dim(0)*a.Dim(1), a.Dim(2), a.Dim(3), b.Dim(2), b.Dim(3)
	ad, bd := a.Data(), b.Data()
	if vertical {
		e = min(ah, bh, e)
		for p := range nc {
			for k := range e {
				w := float32(k) / float32(e)
				ar, br := ad[(p*ah+ah-e+k)*aw:][:bw], bd[(p*bh+k)*bw:][:bw]
				for c := range br {
					br[c] = ar[c]*(1-w) + br[c]*w
				}
			}
		}
		return
	}
	e = min(aw, bw, e)
	for p := range nc {
		for r := range bh {
			ar, br := ad[(p*ah+r)*aw:][:aw], bd[(p*bh+r)*bw:][:bw]
			for k := range e {
				w := float32(k) / float32(e)
				br[k] = ar[aw-e+k]*(1-w) + br[k]*w
			}
		}
	}
}

// place copies tile[:, :, :keep, :keep] (or less at the edges) into out at (y, x).
func place(out, tile *tensor.Tensor, y, x, keep int) {
	nc, th, tw, oh, ow := tile.Dim(0)*tile.Dim(1), tile.Dim(2), tile.Dim(3), out.Dim(2), out.Dim(3)
	h, w := min(keep, th, oh-y), min(keep, tw, ow-x)
	od, td := out.Data(), tile.Data()
	for p := range nc {
		for r := range h {
			copy(od[(p*oh+y+r)*ow+x:][:w], td[(p*th+r)*tw:][:w])
		}
	}
}
