package data

import (
	"crypto/sha256"
	"errors"
	"image"
	"image/color"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// makeDataset writes a dataset with every case Scan must handle and returns its
// folder. Images are small; the tests use smallBuckets (R = 128).
func makeDataset(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	w := func(rel string, b []byte) { writeFile(t, filepath.Join(root, filepath.FromSlash(rel)), b) }
	txt := func(rel, s string) { w(rel, []byte(s)) }

	w("10_mystyle/circle_red_wide.png", pngBytes(t, shape(192, 128, true, red)))
	txt("10_mystyle/circle_red_wide.txt", "red circle, mystyle, wide\n\n  mystyle, a red circle  \r\n")
	w("10_mystyle/square_blue_tall.jpg", jpegBytes(t, shape(96, 144, false, blue)))
	w("10_mystyle/sub/square_red_wide.PNG", pngBytes(t, shape(192, 128, false, red)))
	txt("10_mystyle/sub/square_red_wide.caption", "red square")

	w("plain/circle_blue_tall.bmp", bmpBytes(t, shape(96, 144, true, blue)))
	txt("plain/circle_blue_tall.txt", "blue circle")
	w("plain/square.png", pngBytes(t, shape(128, 128, false, blue)))
	w("plain/latin.png", pngBytes(t, shape(128, 128, true, red)))
	w("plain/latin.txt", []byte("caf\xe9, cr\xe8me"))
	w("plain/both.png", pngBytes(t, shape(128, 128, true, blue)))
	txt("plain/both.txt", "from txt")
	txt("plain/both.caption", "from caption")
	w("plain/empty.png", pngBytes(t, shape(128, 128, false, red)))
	txt("plain/empty.txt", " \n\t\n")

	w("convert/cmyk.jpg", cmykJPEG(128, 128, color.CMYK{M: 255}))
	g := image.NewGray(image.Rect(0, 0, 128, 128))
	w("convert/gray.png", pngBytes(t, g))
	w("convert/gray16.png", pngBytes(t, image.NewGray16(image.Rect(0, 0, 128, 128))))
	w("convert/alpha.png", pngBytes(t, image.NewNRGBA(image.Rect(0, 0, 128, 128))))
	w("convert/paletted.png", pngBytes(t, image.NewPaletted(image.Rect(0, 0, 128, 128), color.Palette{red, blue})))

	w("bad/zero.png", nil)
	good := pngBytes(t, shape(128, 128, true, red))
	w("bad/corrupt.png", good[:len(good)-40])
	txt("bad/notimage.jpg", "this is a note, not a photo\n")
	w("bad/small.png", pngBytes(t, shape(40, 40, true, red)))
	txt("bad/orphan.txt", "a caption without an image")
	w("bad/anim.gif", []byte("GIF89a"))

	w("0_off/x.png", pngBytes(t, shape(128, 128, true, red)))
	w(".hidden/h.png", nil)
	w("plain/.dot.png", nil)
	w("__MACOSX/plain/._square.png", nil)
	return root
}

func scanTest(t *testing.T, root string, noUpscale bool) *Dataset {
	t.Helper()
	o := smallBuckets
	o.NoUpscale = noUpscale
	ds, err := Scan(root, Options{Buckets: o, DefaultCaption: "default words"})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestScanItems(t *testing.T) {
	root := makeDataset(t)
	ds := scanTest(t, root, false)
	tests := []struct {
		rel      string
		repeats  int
		source   CaptionSource
		captions []string
		bucket   Size
		size     Size
	}{
		{"10_mystyle/circle_red_wide.png", 10, CaptionFromFile, []string{"red circle, mystyle, wide", "mystyle, a red circle"}, Size{160, 96}, Size{192, 128}},
		{"10_mystyle/square_blue_tall.jpg", 10, CaptionFromFolder, []string{"mystyle"}, Size{96, 160}, Size{96, 144}},
		{"10_mystyle/sub/square_red_wide.PNG", 10, CaptionFromFile, []string{"red square"}, Size{160, 96}, Size{192, 128}},
		{"bad/small.png", 1, CaptionFromDefault, []string{"default words"}, Size{128, 128}, Size{40, 40}},
		{"convert/alpha.png", 1, CaptionFromDefault, []string{"default words"}, Size{128, 128}, Size{128, 128}},
		{"convert/cmyk.jpg", 1, CaptionFromDefault, []string{"default words"}, Size{128, 128}, Size{128, 128}},
		{"convert/gray.png", 1, CaptionFromDefault, []string{"default words"}, Size{128, 128}, Size{128, 128}},
		{"convert/gray16.png", 1, CaptionFromDefault, []string{"default words"}, Size{128, 128}, Size{128, 128}},
		{"convert/paletted.png", 1, CaptionFromDefault, []string{"default words"}, Size{128, 128}, Size{128, 128}},
		{"plain/both.png", 1, CaptionFromFile, []string{"from txt"}, Size{128, 128}, Size{128, 128}},
		{"plain/circle_blue_tall.bmp", 1, CaptionFromFile, []string{"blue circle"}, Size{96, 160}, Size{96, 144}},
		{"plain/empty.png", 1, CaptionFromDefault, []string{"default words"}, Size{128, 128}, Size{128, 128}},
		{"plain/latin.png", 1, CaptionFromFile, []string{"café, crème"}, Size{128, 128}, Size{128, 128}},
		{"plain/square.png", 1, CaptionFromDefault, []string{"default words"}, Size{128, 128}, Size{128, 128}},
	}
	var rels []string
	for _, it := range ds.Items {
		rels = append(rels, it.Rel)
	}
	var want []string
	for _, tt := range tests {
		want = append(want, tt.rel)
	}
	if !slices.Equal(rels, want) {
		t.Fatalf("items\n got %q\nwant %q", rels, want)
	}
	for i, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			it := ds.Items[i]
			if it.Repeats != tt.repeats || it.CaptionSource != tt.source || !slices.Equal(it.Captions, tt.captions) ||
				it.Bucket != tt.bucket || it.Size != tt.size {
				t.Errorf("got repeats %d, %v captions %q, bucket %v, size %v", it.Repeats, it.CaptionSource, it.Captions, it.Bucket, it.Size)
			}
			b, _ := os.ReadFile(it.Path)
			if sum := sha256.Sum256(b); it.Hash != string(hexBytes(sum[:])) {
				t.Errorf("hash %s is not the file's SHA-256", it.Hash)
			}
		})
	}
}

func hexBytes(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return out
}

// TestScanBadInput checks that each bad input gets its warning, and that the files
// that cannot be used are listed as skipped, with the run going on.
func TestScanBadInput(t *testing.T) {
	root := makeDataset(t)
	ds := scanTest(t, root, false)
	skipped := map[string]string{}
	for _, s := range ds.Skipped {
		skipped[s.Path] = s.Reason
	}
	wantSkipped := map[string]string{
		"0_off/x.png":      "0 repeats",
		"bad/zero.png":     "empty file (0 bytes)",
		"bad/corrupt.png":  "corrupt or truncated PNG",
		"bad/notimage.jpg": "not a PNG, JPEG, WebP or BMP image: it is a text file",
		"bad/nonexistent/": "", // placeholder removed below
	}
	delete(wantSkipped, "bad/nonexistent/")
	if len(skipped) != len(wantSkipped) {
		t.Errorf("skipped %v, want %d files", skipped, len(wantSkipped))
	}
	for p, want := range wantSkipped {
		if !strings.Contains(skipped[p], want) {
			t.Errorf("skipped %s: reason %q, want %q", p, skipped[p], want)
		}
	}
	warnings := []struct{ path, want string }{
		{"bad/small.png", "40x40 is smaller than the smallest bucket side 64: enlarged ×3.20 into 128x128"},
		{"convert/cmyk.jpg", "CMYK converted to RGB"},
		{"convert/gray.png", "grayscale converted to RGB"},
		{"convert/gray16.png", "16-bit grayscale converted to 8-bit RGB"},
		{"convert/alpha.png", "transparency composited over white"},
		{"convert/paletted.png", "paletted converted to RGB"},
		{"plain/latin.txt", "not valid UTF-8; read as Latin-1"},
		{"plain/empty.txt", "caption file is empty"},
		{"plain/both.png", "both both.txt and both.caption exist; using both.txt"},
		{"bad/zero.png", "skipped: empty file"},
		{"", "9 of 14 images have no caption file (.txt or .caption); they use their folder's name (1), the default caption \"default words\" (8)"},
		{"", "1 caption files have no image of the same name next to them (for cat.png the caption is cat.txt): bad/orphan.txt"},
		{"", "ignored files of unsupported types: 1 .gif"},
	}
	for _, w := range warnings {
		if !slices.ContainsFunc(ds.Warnings, func(x Warning) bool { return x.Path == w.path && strings.Contains(x.Msg, w.want) }) {
			t.Errorf("no warning %q for %q", w.want, w.path)
		}
	}
	for _, w := range ds.Warnings {
		if strings.Contains(w.Path, "hidden") || strings.Contains(w.Path, ".dot") || strings.Contains(w.Path, "MACOSX") {
			t.Errorf("hidden file reported: %v", w)
		}
	}
	if t.Failed() {
		for _, w := range ds.Warnings {
			t.Log(w)
		}
	}

	// With NoUpscale the small image is skipped instead.
	ds = scanTest(t, root, true)
	if !slices.ContainsFunc(ds.Skipped, func(s Skipped) bool {
		return s.Path == "bad/small.png" && strings.Contains(s.Reason, "smaller than the smallest bucket side 64")
	}) {
		t.Errorf("NoUpscale did not skip bad/small.png: %v", ds.Skipped)
	}
	if slices.ContainsFunc(ds.Items, func(it Item) bool { return it.Scale > 1 }) {
		t.Error("NoUpscale enlarged an image")
	}
}

func TestSummary(t *testing.T) {
	ds := scanTest(t, makeDataset(t), false)
	s := ds.Summary()
	// 3 images × 10 repeats + 11 images × 1.
	if s.Images != 14 || s.Samples != 41 || s.RepeatedImages != 3 {
		t.Errorf("images %d samples %d repeated %d, want 14, 41, 3", s.Images, s.Samples, s.RepeatedImages)
	}
	if s.CaptionFiles != 5 || s.CaptionVariants != 1 || s.FolderCaptions != 1 || s.DefaultCaptions != 8 || s.NoCaptions != 0 {
		t.Errorf("captions %+v", s)
	}
	wantBuckets := []BucketCount{{Size{96, 160}, 2, 11}, {Size{128, 128}, 10, 10}, {Size{160, 96}, 2, 20}}
	if !slices.Equal(s.BucketCounts, wantBuckets) {
		t.Errorf("buckets %v, want %v", s.BucketCounts, wantBuckets)
	}
	if len(s.Folders) != 1 || s.Folders[0] != (FolderCount{"10_mystyle", 10, "mystyle", 3}) {
		t.Errorf("folders %v", s.Folders)
	}
	if len(s.Skipped) != 4 || s.Ignored[".gif"] != 1 || s.Upscaled != 3 || s.TooSmall != 1 {
		t.Errorf("skipped %d ignored %v upscaled %d too small %d", len(s.Skipped), s.Ignored, s.Upscaled, s.TooSmall)
	}
	// Batch size 4: ⌈11/4⌉ + ⌈10/4⌉ + ⌈20/4⌉ = 3 + 3 + 5.
	if n := s.BatchesPerEpoch(4); n != 11 {
		t.Errorf("batches per epoch %d, want 11", n)
	}
	text := s.Text(4)
	for _, want := range []string{
		"samples per epoch  41",
		"batches per epoch  11 (batch size 4",
		`10_mystyle: 3 images × 10 repeats, caption "mystyle"`,
		"5 from files (1 with variants), 1 from folder names, 8 default, 0 empty",
		"resolution 128, sides 64..256 in steps of 32, upscale allowed",
		"      96x160    0.60       2       11",
		"1: CMYK converted to RGB",
		"bad/zero.png: empty file (0 bytes)",
		"ignored            1 .gif",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary text lacks %q:\n%s", want, text)
		}
	}
}

func TestScanErrors(t *testing.T) {
	empty := t.TempDir()
	onlyGIF := t.TempDir()
	writeFile(t, filepath.Join(onlyGIF, "a.gif"), []byte("GIF89a"))
	allBad := t.TempDir()
	writeFile(t, filepath.Join(allBad, "a.png"), nil)
	writeFile(t, filepath.Join(allBad, "b.jpg"), []byte("text"))
	file := filepath.Join(allBad, "a.png")
	tests := []struct {
		name, dir, want string
	}{
		{"empty folder", empty, "no images found in " + empty + "; supported: .png, .jpg, .jpeg, .webp, .bmp"},
		{"only unsupported", onlyGIF, "(found 1 .gif)"},
		{"all skipped", allBad, "no usable images in " + allBad + ": all 2 image files were skipped:\n  a.png: empty file"},
		{"missing", filepath.Join(empty, "nope"), "no such file or directory"},
		{"a file", file, "is a file, not a folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Scan(tt.dir, Options{Buckets: smallBuckets})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// lockedFS fails to list one folder, as a folder without read permission does; it
// tests the unreadable-folder path even when the tests run as root, for whom
// permissions do not apply.
type lockedFS struct {
	fs.FS
	locked string
}

func (l lockedFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name == l.locked {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return fs.ReadDir(l.FS, name)
}

func TestUnreadableFolder(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "ok/a.png"), pngBytes(t, shape(128, 128, true, red)))
	writeFile(t, filepath.Join(root, "locked/b.png"), pngBytes(t, shape(128, 128, true, blue)))
	check := func(t *testing.T, ds *Dataset, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if len(ds.Items) != 1 || ds.Items[0].Rel != "ok/a.png" {
			t.Errorf("items %v", ds.Items)
		}
		if len(ds.Skipped) != 1 || ds.Skipped[0].Path != "locked/" || !strings.Contains(ds.Skipped[0].Reason, "cannot read folder: permission denied") {
			t.Errorf("skipped %v", ds.Skipped)
		}
	}
	t.Run("injected", func(t *testing.T) {
		ds, err := ScanFS(lockedFS{os.DirFS(root), "locked"}, root, Options{Buckets: smallBuckets})
		check(t, ds, err)
	})
	t.Run("chmod", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("running as root: permissions do not apply (the injected case covers this path)")
		}
		locked := filepath.Join(root, "locked")
		if err := os.Chmod(locked, 0); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(locked, 0o755)
		ds, err := Scan(root, Options{Buckets: smallBuckets})
		check(t, ds, err)
	})
	t.Run("root itself", func(t *testing.T) {
		_, err := ScanFS(lockedFS{os.DirFS(root), "."}, root, Options{Buckets: smallBuckets})
		if err == nil || !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), root) {
			t.Errorf("error %v", err)
		}
	})
}

// TestReadOnly checks that scanning and loading change nothing in the dataset folder:
// the same files with the same bytes, modes and modification times.
func TestReadOnly(t *testing.T) {
	root := makeDataset(t)
	snapshot := func() map[string]string {
		m := map[string]string{}
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := d.Info()
			b, _ := os.ReadFile(p)
			m[p] = fi.Mode().String() + fi.ModTime().String() + string(hexBytes(b))
			return nil
		})
		return m
	}
	before := snapshot()
	ds := scanTest(t, root, false)
	l, err := NewLoader(ds, LoaderOptions{BatchSize: 4, Flip: true})
	if err != nil {
		t.Fatal(err)
	}
	for range l.BatchesPerEpoch() {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		b.Release()
	}
	after := snapshot()
	if len(before) != len(after) {
		t.Fatalf("%d files before, %d after", len(before), len(after))
	}
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s changed", p)
		}
	}
}

func TestParseCaption(t *testing.T) {
	utf16le := []byte{0xFF, 0xFE, 'c', 0, 'a', 0, 't', 0, 0xE9, 0, '\n', 0, 'd', 0, 'o', 0, 'g', 0}
	tests := []struct {
		name string
		in   []byte
		want []string
		note string
	}{
		{"plain", []byte("a cat, sitting"), []string{"a cat, sitting"}, ""},
		{"variants", []byte("one\r\n\r\n  two  \n\n"), []string{"one", "two"}, ""},
		{"utf-8 bom", []byte("\xEF\xBB\xBFcafé"), []string{"café"}, ""},
		{"latin-1", []byte("caf\xe9"), []string{"café"}, "read as Latin-1"},
		{"utf-16", utf16le, []string{"caté", "dog"}, "UTF-16"},
		{"blank", []byte(" \n \t"), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, note := parseCaption(tt.in)
			if !slices.Equal(got, tt.want) || (tt.note == "") != (note == "") || !strings.Contains(note, tt.note) {
				t.Errorf("got %q, %q; want %q, %q", got, note, tt.want, tt.note)
			}
		})
	}
}
