package data

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/image/bmp"

	"github.com/difftune/difftune/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// smallBuckets are the buckets most tests use, small enough for fast tests: R = 128,
// sides 64..256 in steps of 32, giving 64x192, 64x224, 64x256, 96x160, 128x128,
// 160x96, 192x64, 224x64, 256x64.
var smallBuckets = BucketOptions{Resolution: 128, MinSide: 64, MaxSide: 256, Step: 32}

var (
	red   = color.RGBA{255, 0, 0, 255}
	blue  = color.RGBA{0, 0, 255, 255}
	white = color.RGBA{255, 255, 255, 255}
)

// shape draws a filled circle or square of fg, centred on a white w×h canvas.
func shape(w, h int, circle bool, fg color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := min(w, h) / 3
	cx, cy := w/2, h/2
	for y := range h {
		for x := range w {
			dx, dy := x-cx, y-cy
			in := max(abs(dx), abs(dy)) <= r
			if circle {
				in = dx*dx+dy*dy <= r*r
			}
			if in {
				img.SetRGBA(x, y, fg)
			} else {
				img.SetRGBA(x, y, white)
			}
		}
	}
	return img
}

// halves paints the left half of a w×h image a and the right half b.
func halves(w, h int, a, b color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := a
			if x >= w/2 {
				c = b
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func pngBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func bmpBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := bmp.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withEXIFOrientation inserts an APP1 EXIF segment with the given orientation right
// after the SOI marker of a JPEG, as cameras write it (big-endian TIFF).
func withEXIFOrientation(j []byte, o int) []byte {
	tiff := []byte{'M', 'M', 0, 42, 0, 0, 0, 8, // header, IFD0 at 8
		0, 1, // one entry
		0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, byte(o), 0, 0, // Orientation SHORT 1 = o
		0, 0, 0, 0} // no next IFD
	seg := append([]byte("Exif\x00\x00"), tiff...)
	n := len(seg) + 2
	out := append([]byte{0xFF, 0xD8, 0xFF, 0xE1, byte(n >> 8), byte(n)}, seg...)
	return append(out, j[2:]...)
}

// pixel returns the RGB of the sample b, pixel (x, y) of a [B, 3, H, W] slice, mapped
// back from [-1, 1] to 0..255.
func pixel(data []float32, h, w, b, x, y int) [3]float64 {
	var p [3]float64
	for c := range 3 {
		p[c] = (float64(data[((b*3+c)*h+y)*w+x]) + 1) * 127.5
	}
	return p
}

// cmykJPEG returns a baseline JPEG of a solid w×h CMYK colour (w, h multiples of 8)
// as Adobe software writes one: four components, an APP14 "Adobe" marker with
// transform 0, and inverted samples. image/jpeg's encoder always writes YCbCr, so the
// file is assembled here: every 8×8 block is flat, so it holds a DC coefficient only
// (8·(v−128) with an all-ones quantisation table) and an end-of-block.
func cmykJPEG(w, h int, c color.CMYK) []byte {
	var out []byte
	seg := func(marker byte, payload ...byte) {
		n := len(payload) + 2
		out = append(out, 0xFF, marker, byte(n>>8), byte(n))
		out = append(out, payload...)
	}
	out = append(out, 0xFF, 0xD8)
	seg(0xEE, 'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, 0) // APP14, transform 0
	dqt := make([]byte, 65)
	for i := 1; i < 65; i++ {
		dqt[i] = 1
	}
	seg(0xDB, dqt...)
	seg(0xC0, 8, byte(h>>8), byte(h), byte(w>>8), byte(w), 4,
		1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 4, 0x11, 0)
	dc := []byte{0x00, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // 12 codes of 4 bits
	for s := range 12 {
		dc = append(dc, byte(s))
	}
	seg(0xC4, dc...)
	seg(0xC4, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00) // EOB only, code "0"
	seg(0xDA, 4, 1, 0x00, 2, 0x00, 3, 0x00, 4, 0x00, 0, 63, 0)

	var acc uint64
	var nbits int
	var data []byte
	put := func(v uint64, n int) {
		acc, nbits = acc<<n|v&(1<<n-1), nbits+n
		for nbits >= 8 {
			b := byte(acc >> (nbits - 8))
			data = append(data, b)
			if b == 0xFF {
				data = append(data, 0)
			}
			nbits -= 8
		}
	}
	stored := [4]uint8{255 - c.C, 255 - c.M, 255 - c.Y, 255 - c.K} // Adobe inversion
	prev := [4]int{}
	for range (w / 8) * (h / 8) {
		for k := range 4 {
			dcv := 8 * (int(stored[k]) - 128)
			diff := dcv - prev[k]
			prev[k] = dcv
			s, a := 0, abs(diff)
			for a > 0 {
				s, a = s+1, a>>1
			}
			put(uint64(s), 4)
			if diff < 0 {
				diff += 1<<s - 1
			}
			put(uint64(diff), s)
			put(0, 1) // EOB
		}
	}
	if nbits > 0 {
		put(1<<(8-nbits)-1, 8-nbits) // pad with ones
	}
	out = append(out, data...)
	return append(out, 0xFF, 0xD9)
}
