package data

import (
	"image"
	"image/color"
	"strings"
	"testing"
)

// TestEXIFOrientation decodes a 40x20 JPEG, left half red and right half blue, under
// each orientation and checks the upright size and where red ends up.
func TestEXIFOrientation(t *testing.T) {
	base := jpegBytes(t, halves(40, 20, red, blue))
	tests := []struct {
		o        int
		w, h     int
		redAt    image.Point // a point that must be red after orientation
		blueAt   image.Point
		readBack int
	}{
		{1, 40, 20, image.Pt(5, 10), image.Pt(35, 10), 1},
		{2, 40, 20, image.Pt(35, 10), image.Pt(5, 10), 2}, // mirrored
		{3, 40, 20, image.Pt(35, 10), image.Pt(5, 10), 3}, // 180°
		{6, 20, 40, image.Pt(10, 5), image.Pt(10, 35), 6}, // 90° clockwise: left goes to the top
		{8, 20, 40, image.Pt(10, 35), image.Pt(10, 5), 8}, // 90° counter-clockwise
		{5, 20, 40, image.Pt(10, 5), image.Pt(10, 35), 5}, // transpose
		{7, 20, 40, image.Pt(10, 35), image.Pt(10, 5), 7}, // transverse
		{9, 40, 20, image.Pt(5, 10), image.Pt(35, 10), 1}, // invalid value: ignored
	}
	for _, tt := range tests {
		b := withEXIFOrientation(base, tt.o)
		if got := jpegOrientation(b); got != tt.readBack {
			t.Errorf("orientation %d read back as %d", tt.o, got)
		}
		d, err := decodeImage(b)
		if err != nil {
			t.Fatalf("orientation %d: %v", tt.o, err)
		}
		if d.img.Rect.Dx() != tt.w || d.img.Rect.Dy() != tt.h {
			t.Errorf("orientation %d: size %v, want %dx%d", tt.o, d.img.Rect.Size(), tt.w, tt.h)
		}
		// JPEG is lossy: a channel counts as on above 200 and off below 60.
		r := d.img.NRGBAAt(tt.redAt.X, tt.redAt.Y)
		bl := d.img.NRGBAAt(tt.blueAt.X, tt.blueAt.Y)
		if r.R < 200 || r.B > 60 || bl.B < 200 || bl.R > 60 {
			t.Errorf("orientation %d: red point %v, blue point %v", tt.o, r, bl)
		}
	}
	if jpegOrientation([]byte{0xFF, 0xD8, 0xFF, 0xE1, 0, 200}) != 1 {
		t.Error("a truncated EXIF segment should read as orientation 1")
	}
}

// TestConvert checks each colour model's conversion to opaque 8-bit RGB and its note.
func TestConvert(t *testing.T) {
	gray := image.NewGray(image.Rect(0, 0, 2, 2))
	for i := range gray.Pix {
		gray.Pix[i] = 100
	}
	gray16 := image.NewGray16(image.Rect(0, 0, 2, 2))
	for i := range 4 {
		gray16.SetGray16(i%2, i/2, color.Gray16{Y: 0x8080})
	}
	rgba64 := image.NewNRGBA64(image.Rect(0, 0, 2, 2))
	for i := range 4 {
		rgba64.SetNRGBA64(i%2, i/2, color.NRGBA64{R: 0xFFFF, G: 0x8080, B: 0, A: 0xFFFF})
	}
	alpha := image.NewNRGBA(image.Rect(0, 0, 2, 2))
	for i := range 4 {
		alpha.SetNRGBA(i%2, i/2, color.NRGBA{R: 0, G: 0, B: 0, A: 51}) // 20% black
	}
	pal := image.NewPaletted(image.Rect(0, 0, 2, 2), color.Palette{color.RGBA{0, 255, 0, 255}, color.NRGBA{0, 0, 0, 0}})
	pal.Pix[3] = 1 // one fully transparent pixel
	tests := []struct {
		name string
		img  image.Image
		enc  func(testing.TB, image.Image) []byte
		want color.NRGBA // pixel (0, 0)
		tol  uint8       // JPEG is lossy; PNG exact
		note string
	}{
		{"CMYK JPEG", nil, func(testing.TB, image.Image) []byte {
			return cmykJPEG(16, 8, color.CMYK{C: 255})
		}, color.NRGBA{0, 255, 255, 255}, 1, "CMYK converted to RGB"},
		{"grayscale PNG", gray, pngBytes, color.NRGBA{100, 100, 100, 255}, 0, "grayscale converted to RGB"},
		{"16-bit gray PNG", gray16, pngBytes, color.NRGBA{128, 128, 128, 255}, 0, "16-bit grayscale"},
		{"16-bit RGB PNG", rgba64, pngBytes, color.NRGBA{255, 128, 0, 255}, 0, "16-bit converted to 8-bit"},
		// 20% black over white: 0·51/255 + 255·204/255 = 204.
		{"alpha PNG", alpha, pngBytes, color.NRGBA{204, 204, 204, 255}, 0, "transparency composited over white"},
		{"paletted PNG", pal, pngBytes, color.NRGBA{0, 255, 0, 255}, 0, "paletted converted to RGB"},
		{"BMP", shape(4, 4, false, red), bmpBytes, color.NRGBA{255, 255, 255, 255}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := decodeImage(tt.enc(t, tt.img))
			if err != nil {
				t.Fatal(err)
			}
			got := d.img.NRGBAAt(0, 0)
			near := func(a, b uint8) bool { return max(a, b)-min(a, b) <= tt.tol }
			if !near(got.R, tt.want.R) || !near(got.G, tt.want.G) || !near(got.B, tt.want.B) || got.A != 255 {
				t.Errorf("pixel %v, want %v ±%d", got, tt.want, tt.tol)
			}
			for i := 3; i < len(d.img.Pix); i += 4 {
				if d.img.Pix[i] != 255 {
					t.Fatal("output is not opaque")
				}
			}
			joined := strings.Join(d.notes, "; ")
			if tt.note == "" && joined != "" || !strings.Contains(joined, tt.note) {
				t.Errorf("notes %q, want %q", joined, tt.note)
			}
		})
	}
	// The transparent palette entry becomes white.
	d, _ := decodeImage(pngBytes(t, pal))
	if c := d.img.NRGBAAt(1, 1); c != (color.NRGBA{255, 255, 255, 255}) {
		t.Errorf("transparent palette pixel became %v, want white", c)
	}
}

func TestDecodeErrors(t *testing.T) {
	good := pngBytes(t, shape(32, 32, true, red))
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"zero bytes", nil, "empty file (0 bytes)"},
		{"truncated PNG", good[:len(good)/2], "corrupt or truncated PNG"},
		{"truncated header", good[:20], "corrupt or truncated PNG header"},
		{"text", []byte("hello, this is not a picture\n"), "text file"},
		{"web page", []byte("<!DOCTYPE html><html><body>404</body></html>"), "web page"},
		{"HEIC", append([]byte{0, 0, 0, 24}, []byte("ftypheic\x00\x00\x00\x00mif1heic")...), "HEIC"},
		{"truncated GIF", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00"), "corrupt or truncated image data"},
		{"binary junk", []byte{0x00, 0x13, 0x37, 0xfe, 0xff, 0x80, 0x81, 0x82, 0x00, 0x01}, "unknown content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeImage(tt.b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}
