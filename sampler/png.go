package sampler

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/difftune/difftune/internal/atomicfile"
	"github.com/difftune/difftune/tensor"
)

// ToImages converts images x [N, 3, H, W] with values in [-1, 1] (the VAE's or a pixel
// model's range) to 8-bit RGB, rounding to nearest after clamping, as diffusers'
// postprocessing does ((x/2 + 0.5)·255, clamped).
func ToImages(x *tensor.Tensor) ([]*image.RGBA, error) {
	if x.Rank() != 4 || x.Dim(1) != 3 {
		return nil, fmt.Errorf("images: want [N, 3, H, W], got %v", x.Shape())
	}
	n, h, w := x.Dim(0), x.Dim(2), x.Dim(3)
	d := x.Float32s()
	out := make([]*image.RGBA, n)
	for i := range out {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for xx := range w {
				var px [3]uint8
				for c := range 3 {
					v := (float64(d[((i*3+c)*h+y)*w+xx])/2 + 0.5) * 255
					px[c] = uint8(math.Round(math.Max(0, math.Min(255, v))))
				}
				img.SetRGBA(xx, y, color.RGBA{px[0], px[1], px[2], 255})
			}
		}
		out[i] = img
	}
	return out, nil
}

// Grid tiles images into rows×cols (cols = ⌈√n⌉), left to right, top to bottom.
func Grid(imgs []*image.RGBA) *image.RGBA {
	if len(imgs) == 0 {
		return image.NewRGBA(image.Rect(0, 0, 0, 0))
	}
	cols := int(math.Ceil(math.Sqrt(float64(len(imgs)))))
	rows := (len(imgs) + cols - 1) / cols
	w, h := imgs[0].Bounds().Dx(), imgs[0].Bounds().Dy()
	g := image.NewRGBA(image.Rect(0, 0, cols*w, rows*h))
	for i, img := range imgs {
		x0, y0 := (i%cols)*w, (i/cols)*h
		for y := range h {
			copy(g.Pix[(y0+y)*g.Stride+x0*4:(y0+y)*g.Stride+(x0+w)*4], img.Pix[y*img.Stride:y*img.Stride+w*4])
		}
	}
	return g
}

// WritePNG writes img to path atomically with tEXt chunks (key, value) — A1111 reads
// the generation settings from the "parameters" chunk.
func WritePNG(path string, img image.Image, text map[string]string) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	data, err := withText(buf.Bytes(), text)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error { _, err := w.Write(data); return err })
}

// withText inserts tEXt chunks after a PNG's IHDR chunk, in sorted key order.
func withText(p []byte, text map[string]string) ([]byte, error) {
	const sigLen = 8
	if len(p) < sigLen+8 || string(p[sigLen+4:sigLen+8]) != "IHDR" {
		return nil, fmt.Errorf("not a PNG with an IHDR chunk")
	}
	ihdrEnd := sigLen + 8 + int(binary.BigEndian.Uint32(p[sigLen:])) + 4
	var out bytes.Buffer
	out.Write(p[:ihdrEnd])
	keys := make([]string, 0, len(text))
	for k := range text {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if len(k) == 0 || len(k) > 79 {
			return nil, fmt.Errorf("PNG text key %q must be 1-79 bytes", k)
		}
		body := append(append([]byte(k), 0), latin1(text[k])...)
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:4], uint32(len(body)))
		copy(hdr[4:], "tEXt")
		out.Write(hdr[:])
		out.Write(body)
		crc := crc32.NewIEEE()
		crc.Write(hdr[4:])
		crc.Write(body)
		binary.Write(&out, binary.BigEndian, crc.Sum32())
	}
	out.Write(p[ihdrEnd:])
	return out.Bytes(), nil
}

// latin1 encodes s for a tEXt chunk (ISO-8859-1); other runes become '?' (A1111
// writes UTF-8 into iTXt for those; prompts are overwhelmingly ASCII).
func latin1(s string) []byte {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 255 {
			r = '?'
		}
		b = append(b, byte(r))
	}
	return b
}

// ReadPNGText returns the tEXt chunks of a PNG file.
func ReadPNGText(path string) (map[string]string, error) {
	p, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for i := 8; i+12 <= len(p); {
		n := int(binary.BigEndian.Uint32(p[i:]))
		if i+12+n > len(p) {
			return nil, fmt.Errorf("%s: truncated chunk at byte %d", path, i)
		}
		if string(p[i+4:i+8]) == "tEXt" {
			body := p[i+8 : i+8+n]
			if k, v, ok := bytes.Cut(body, []byte{0}); ok {
				r := make([]rune, len(v))
				for j, c := range v {
					r[j] = rune(c)
				}
				out[string(k)] = string(r)
			}
		}
		i += 12 + n
	}
	return out, nil
}
