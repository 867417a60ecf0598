package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // register the decoders Scan accepts
	_ "image/png"
	"strings"
	"unicode/utf8"

	"github.com/disintegration/imaging"
	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/webp"
)

// MaxPixels is the largest image, in pixels, that difftune decodes (128 megapixels,
// 512 MiB as 8-bit RGBA). Larger files are skipped: they are almost always a mistake
// (a scan at 1200 dpi, a panorama) and would exhaust memory during decoding.
const MaxPixels = 1 << 27

// decoded is an image file turned into pixels the pipeline can use.
type decoded struct {
	img    *image.NRGBA // EXIF-oriented, opaque, 8-bit sRGB assumed
	format string       // "png", "jpeg", "webp", "bmp"
	// notes name each conversion applied, for the per-file warnings.
	notes []string
}

// decodeImage decodes the bytes of an image file. Errors are written for users: they
// say what is wrong with the file, not which Go function failed.
func decodeImage(b []byte) (*decoded, error) {
	if len(b) == 0 {
		return nil, errors.New("empty file (0 bytes)")
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if errors.Is(err, image.ErrFormat) {
		return nil, fmt.Errorf("not a PNG, JPEG, WebP or BMP image: %s", sniff(b))
	}
	if err != nil {
		return nil, fmt.Errorf("corrupt or truncated %s header: %v", formatName(format), err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("%s image has no pixels (%dx%d)", formatName(format), cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, fmt.Errorf("image is %dx%d (%.0f megapixels), more than the %d-megapixel limit; downscale it",
			cfg.Width, cfg.Height, float64(cfg.Width)*float64(cfg.Height)/1e6, MaxPixels>>20)
	}
	src, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("corrupt or truncated %s data: %v", formatName(format), err)
	}
	d := &decoded{format: format}
	d.img, d.notes = toRGB(src)
	if format == "jpeg" {
		if o := jpegOrientation(b); o != 1 {
			d.img = orient(d.img, o)
		}
	}
	return d, nil
}

func formatName(format string) string {
	switch format {
	case "jpeg", "png", "bmp":
		return strings.ToUpper(format)
	case "webp":
		return "WebP"
	}
	return "image"
}

// toRGB converts any decoded image to opaque 8-bit NRGBA and names the conversions.
// Transparent pixels are composited over white (the usual background of artwork and
// of the web), since the models take RGB only: out = α·c + (1−α)·255 per channel, on
// the non-premultiplied 8-bit values, rounded.
func toRGB(src image.Image) (*image.NRGBA, []string) {
	var notes []string
	switch src.(type) {
	case *image.CMYK:
		notes = append(notes, "CMYK converted to RGB (naive conversion, no ICC profile)")
	case *image.Gray:
		notes = append(notes, "grayscale converted to RGB")
	case *image.Gray16:
		notes = append(notes, "16-bit grayscale converted to 8-bit RGB")
	case *image.RGBA64, *image.NRGBA64:
		notes = append(notes, "16-bit converted to 8-bit")
	case *image.Paletted:
		notes = append(notes, "paletted converted to RGB")
	}
	img := imaging.Clone(src)
	transparent := false
	for i := 3; i < len(img.Pix); i += 4 {
		if img.Pix[i] != 255 {
			transparent = true
			break
		}
	}
	if transparent {
		notes = append(notes, "transparency composited over white")
		compositeOverWhite(img)
	}
	return img, notes
}

// compositeOverWhite replaces every pixel of img by itself over opaque white.
func compositeOverWhite(img *image.NRGBA) {
	p := img.Pix
	for i := 0; i+3 < len(p); i += 4 {
		a := uint32(p[i+3])
		if a == 255 {
			continue
		}
		for c := 0; c < 3; c++ {
			p[i+c] = uint8((uint32(p[i+c])*a + 255*(255-a) + 127) / 255)
		}
		p[i+3] = 255
	}
}

// orient applies an EXIF orientation (2..8) so that the image is upright.
func orient(img *image.NRGBA, o int) *image.NRGBA {
	switch o {
	case 2:
		return imaging.FlipH(img)
	case 3:
		return imaging.Rotate180(img)
	case 4:
		return imaging.FlipV(img)
	case 5:
		return imaging.Transpose(img)
	case 6:
		return imaging.Rotate270(img) // 90° clockwise
	case 7:
		return imaging.Transverse(img)
	case 8:
		return imaging.Rotate90(img) // 90° counter-clockwise
	}
	return img
}

// jpegOrientation returns the EXIF orientation (1..8) of a JPEG file, or 1 when it has
// none or the EXIF data is malformed. It reads the APP1 "Exif" segment's IFD0 only,
// where the Orientation tag (0x0112) lives, and stops at the first scan.
func jpegOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 1
	}
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xFF {
			return 1
		}
		m := b[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7): // markers without a length
			i += 2
			continue
		case m == 0xDA || m == 0xD9: // start of scan, end of image
			return 1
		}
		n := int(b[i+2])<<8 | int(b[i+3])
		if n < 2 || i+2+n > len(b) {
			return 1
		}
		seg := b[i+4 : i+2+n]
		if m == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			if o := tiffOrientation(seg[6:]); o != 0 {
				return o
			}
		}
		i += 2 + n
	}
	return 1
}

// tiffOrientation reads the Orientation tag from IFD0 of a TIFF structure (the body
// of an EXIF segment); 0 means absent or malformed.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo = binary.BigEndian
	default:
		return 0
	}
	off := int(bo.Uint32(t[4:8]))
	if off < 8 || off+2 > len(t) {
		return 0
	}
	n := int(bo.Uint16(t[off:]))
	for k := range n {
		e := off + 2 + 12*k
		if e+12 > len(t) {
			return 0
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		if bo.Uint16(t[e+2:]) != 3 { // SHORT
			return 0
		}
		if v := int(bo.Uint16(t[e+8:])); v >= 1 && v <= 8 {
			return v
		}
		return 0
	}
	return 0
}

// sniff describes what a file that is not a supported image seems to be, from its
// first bytes, so that the warning can say what to do.
func sniff(b []byte) string {
	head := b[:min(len(b), 64)]
	magic := []struct {
		prefix string
		off    int
		what   string
	}{
		{"ftypheic", 4, "it is a HEIC photo (iPhone); export it as JPEG"},
		{"ftypheix", 4, "it is a HEIC photo (iPhone); export it as JPEG"},
		{"ftypmif1", 4, "it is a HEIF image; export it as JPEG"},
		{"ftypavif", 4, "it is an AVIF image; convert it to PNG or JPEG"},
		{"8BPS", 0, "it is a Photoshop document; export it as PNG"},
		{"%PDF", 0, "it is a PDF"},
		{"PK\x03\x04", 0, "it is a zip archive; extract it"},
		{"RIFF", 0, "it is a RIFF file that is not a WebP image"},
	}
	for _, m := range magic {
		if len(head) >= m.off+len(m.prefix) && string(head[m.off:m.off+len(m.prefix)]) == m.prefix {
			return m.what
		}
	}
	if utf8.Valid(head) || utf8.Valid(head[:max(0, len(head)-3)]) {
		s := strings.TrimSpace(string(head))
		if strings.HasPrefix(s, "<svg") || strings.HasPrefix(s, "<?xml") {
			return "it is an SVG or XML file; export it as PNG"
		}
		if strings.HasPrefix(strings.ToLower(s), "<!doctype html") || strings.HasPrefix(strings.ToLower(s), "<html") {
			return "it is a web page (a failed download?)"
		}
		return "it is a text file"
	}
	return fmt.Sprintf("unknown content starting with % x", head[:min(len(head), 8)])
}
