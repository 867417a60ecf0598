package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func newLoader(t *testing.T, ds *Dataset, o LoaderOptions) *Loader {
	t.Helper()
	l, err := NewLoader(ds, o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestEpochCoverage checks, for several batch sizes and epochs, that a batch never
// mixes buckets, that every repeat of every item appears exactly once per epoch, that
// each bucket has at most one short batch, and that the epoch's batch count is
// BatchesPerEpoch.
func TestEpochCoverage(t *testing.T) {
	ds := scanTest(t, makeDataset(t), false)
	for _, bs := range []int{1, 3, 4, 64} {
		t.Run(fmt.Sprintf("batch%d", bs), func(t *testing.T) {
			l := newLoader(t, ds, LoaderOptions{BatchSize: bs, Seed: 7, Flip: true, RandomCrop: true})
			var orders [][]int
			for e := range 3 {
				plan := l.Plan(e)
				if len(plan) != l.BatchesPerEpoch() {
					t.Errorf("epoch %d: %d batches, want %d", e, len(plan), l.BatchesPerEpoch())
				}
				seen := map[[2]int]int{}
				perItem := map[int]int{}
				short := map[Size]int{}
				var order []int
				for _, b := range plan {
					if len(b) == 0 || len(b) > bs {
						t.Fatalf("epoch %d: batch of %d", e, len(b))
					}
					if len(b) < bs {
						short[b[0].Bucket]++
					}
					for _, s := range b {
						if s.Bucket != b[0].Bucket || s.Bucket != ds.Items[s.Item].Bucket {
							t.Fatalf("epoch %d: batch mixes buckets %v and %v", e, b[0].Bucket, s.Bucket)
						}
						seen[[2]int{s.Item, s.Repeat}]++
						perItem[s.Item]++
						order = append(order, s.Item)
					}
				}
				for i, it := range ds.Items {
					if perItem[i] != it.Repeats {
						t.Errorf("epoch %d: %s appears %d times, want %d", e, it.Rel, perItem[i], it.Repeats)
					}
				}
				for k, n := range seen {
					if n != 1 {
						t.Errorf("epoch %d: sample %v appears %d times", e, k, n)
					}
				}
				for b, n := range short {
					if n > 1 {
						t.Errorf("epoch %d: bucket %v has %d short batches", e, b, n)
					}
				}
				orders = append(orders, order)
			}
			if bs < 64 && (slices.Equal(orders[0], orders[1]) || slices.Equal(orders[1], orders[2])) {
				t.Error("epochs have the same order: not shuffled")
			}
		})
	}
}

// smallDataset writes a 128x128 solid red square (R128 bucket 128x128) and a 192x128
// image whose left half is red and right half blue (bucket 160x96, resized 160x107).
func smallDataset(t *testing.T) *Dataset {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "5_thing/red.png"), pngBytes(t, shape(128, 128, false, red)))
	solid := image.NewRGBA(image.Rect(0, 0, 128, 128))
	for i := range solid.Pix {
		solid.Pix[i] = []byte{255, 0, 0, 255}[i%4]
	}
	writeFile(t, filepath.Join(root, "5_thing/solid.png"), pngBytes(t, solid))
	writeFile(t, filepath.Join(root, "5_thing/halves.png"), pngBytes(t, halves(192, 128, red, blue)))
	return scanTest(t, root, false)
}

func TestNextImages(t *testing.T) {
	ds := smallDataset(t)
	l := newLoader(t, ds, LoaderOptions{BatchSize: 4, Seed: 1})
	n := 0
	for range l.BatchesPerEpoch() {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		shape := b.Images.Shape()
		if !slices.Equal(shape, []int{len(b.Samples), 3, b.Bucket.H, b.Bucket.W}) || len(b.Captions) != len(b.Samples) {
			t.Errorf("batch images %v for %d samples in %v", shape, len(b.Samples), b.Bucket)
		}
		data := b.Images.Data()
		for _, v := range data {
			if v < -1 || v > 1 || math.IsNaN(float64(v)) {
				t.Fatalf("value %v outside [-1, 1]", v)
			}
		}
		for j, s := range b.Samples {
			if b.Captions[j] != "thing" {
				t.Errorf("caption %q, want the folder's", b.Captions[j])
			}
			if ds.Items[s.Item].Rel == "5_thing/solid.png" {
				// Pure red maps exactly to (1, −1, −1).
				if p := pixel(data, b.Bucket.H, b.Bucket.W, j, 17, 99); p != [3]float64{255, 0, 0} {
					t.Errorf("solid red pixel %v", p)
				}
			}
		}
		n += len(b.Samples)
		b.Release()
	}
	if n != 15 {
		t.Errorf("%d samples in an epoch, want 15", n)
	}
}

// TestRenderSizes checks resize and crop sizes: the output is the bucket, and the
// crop stays inside the resized image.
func TestRenderSizes(t *testing.T) {
	root := t.TempDir()
	sizes := []Size{{128, 128}, {192, 128}, {96, 144}, {300, 90}, {40, 40}, {257, 255}}
	for _, s := range sizes {
		writeFile(t, filepath.Join(root, s.String()+".png"), pngBytes(t, shape(s.W, s.H, true, blue)))
	}
	ds := scanTest(t, root, false)
	l := newLoader(t, ds, LoaderOptions{Seed: 3, RandomCrop: true})
	for i, it := range ds.Items {
		t.Run(it.Rel, func(t *testing.T) {
			crops := map[image.Point]bool{}
			for e := range 8 {
				s := l.sample(e, i, 0)
				if s.Crop.X < 0 || s.Crop.Y < 0 || s.Crop.X+it.Bucket.W > it.Resized.W || s.Crop.Y+it.Bucket.H > it.Resized.H {
					t.Fatalf("crop %v of %v outside %v", s.Crop, it.Bucket, it.Resized)
				}
				crops[s.Crop] = true
			}
			if slack := (it.Resized.W - it.Bucket.W) + (it.Resized.H - it.Bucket.H); slack >= 4 && len(crops) < 2 {
				t.Errorf("8 random crops with %d pixels of slack were all %v", slack, crops)
			}
			img, err := ds.Render([]Sample{ds.CenterSample(i, false)}, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Release()
			if !slices.Equal(img.Shape(), []int{1, 3, it.Bucket.H, it.Bucket.W}) {
				t.Errorf("rendered %v for bucket %v", img.Shape(), it.Bucket)
			}
		})
	}
}

// TestCropFlip checks the crop window and the mirror on a 10x10 image whose pixel
// (x, y) is (10x, 10y, 7).
func TestCropFlip(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 10, 10))
	for y := range 10 {
		for x := range 10 {
			img.SetNRGBA(x, y, color.NRGBA{uint8(10 * x), uint8(10 * y), 7, 255})
		}
	}
	bk := Size{4, 3}
	for _, flip := range []bool{false, true} {
		dst := make([]float32, 3*bk.W*bk.H)
		cropFlip(dst, img, bk, image.Pt(2, 5), flip)
		for y := range bk.H {
			for x := range bk.W {
				sx := 2 + x
				if flip {
					sx = 2 + bk.W - 1 - x
				}
				want := [3]float64{float64(10 * sx), float64(10 * (5 + y)), 7}
				if got := pixel(dst, bk.H, bk.W, 0, x, y); math.Abs(got[0]-want[0]) > 1e-3 || math.Abs(got[1]-want[1]) > 1e-3 || math.Abs(got[2]-want[2]) > 1e-3 {
					t.Errorf("flip %v (%d,%d): %v, want %v", flip, x, y, got, want)
				}
			}
		}
	}
}

// TestFlip checks that flips are reproducible from the seed, that a flipped sample is
// the exact mirror of the unflipped one, and that about half the samples flip.
func TestFlip(t *testing.T) {
	ds := scanTest(t, makeDataset(t), false)
	flips := func(seed uint64, on bool) []bool {
		l := newLoader(t, ds, LoaderOptions{BatchSize: 4, Seed: seed, Flip: on})
		var out []bool
		for e := range 20 {
			for _, b := range l.Plan(e) {
				for _, s := range b {
					out = append(out, s.Flip)
				}
			}
		}
		return out
	}
	a, b, c := flips(5, true), flips(5, true), flips(6, true)
	if !slices.Equal(a, b) {
		t.Error("same seed, different flips")
	}
	if slices.Equal(a, c) {
		t.Error("different seeds, same flips")
	}
	if slices.Contains(flips(5, false), true) {
		t.Error("flip off, but a sample was flipped")
	}
	n := 0
	for _, f := range a {
		if f {
			n++
		}
	}
	// 820 draws at p = 1/2: σ = 0.0175; ±0.06 is 3.4σ (and the seed is fixed).
	if frac := float64(n) / float64(len(a)); math.Abs(frac-0.5) > 0.06 {
		t.Errorf("flipped fraction %.3f, want about 0.5", frac)
	}

	ds = smallDataset(t)
	i := slices.IndexFunc(ds.Items, func(it Item) bool { return strings.HasSuffix(it.Rel, "halves.png") })
	plain, err := ds.Render([]Sample{ds.CenterSample(i, false)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Release()
	flipped, err := ds.Render([]Sample{ds.CenterSample(i, true)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer flipped.Release()
	bk := ds.Items[i].Bucket
	p, f := plain.Data(), flipped.Data()
	for c := range 3 {
		for y := range bk.H {
			for x := range bk.W {
				if p[(c*bk.H+y)*bk.W+x] != f[(c*bk.H+y)*bk.W+bk.W-1-x] {
					t.Fatalf("flipped pixel (%d,%d,%d) is not the mirror", c, x, y)
				}
			}
		}
	}
	if got := pixel(p, bk.H, bk.W, 0, 3, 50); got[0] < 250 || got[2] > 5 {
		t.Errorf("left of the unflipped halves image is %v, want red", got)
	}
}

// batchDigest summarises a batch: its place, samples and a hash of its pixels.
func batchDigest(b *Batch) string {
	h := sha256.New()
	if b.Images != nil {
		d := b.Images.Data()
		buf := make([]byte, 4*len(d))
		for i, v := range d {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		h.Write(buf)
	}
	return fmt.Sprintf("%d/%d %v %+v %x", b.Epoch, b.Index, b.Captions, b.Samples, h.Sum(nil))
}

// TestResume runs a loader straight for 30 batches (11 per epoch, so across two
// epoch boundaries) and compares with one stopped after 17, its state saved as JSON,
// and a new loader restored from it, with every random option on.
func TestResume(t *testing.T) {
	ds := scanTest(t, makeDataset(t), false)
	opts := LoaderOptions{BatchSize: 4, Seed: 42, Flip: true, RandomCrop: true, Caption: CaptionOptions{
		Shuffle: true, KeepTokens: 1, Dropout: 0.1, TagDropout: 0.2,
	}}
	next := func(l *Loader) string {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		defer b.Release()
		return batchDigest(b)
	}
	straight := newLoader(t, ds, opts)
	var want []string
	for range 30 {
		want = append(want, next(straight))
	}
	first := newLoader(t, ds, opts)
	for i := range 17 {
		if got := next(first); got != want[i] {
			t.Fatalf("batch %d differs between identical loaders", i)
		}
	}
	saved, err := json.Marshal(first.State())
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(saved, &st); err != nil {
		t.Fatal(err)
	}
	resumed := newLoader(t, ds, opts)
	if err := resumed.Restore(st); err != nil {
		t.Fatal(err)
	}
	for i := 17; i < 30; i++ {
		if got := next(resumed); got != want[i] {
			t.Fatalf("resumed batch %d:\n got %s\nwant %s", i, got, want[i])
		}
	}

	// What must refuse to resume.
	other := opts
	other.BatchSize = 3
	seed := opts
	seed.Seed = 43
	root2 := makeDataset(t)
	writeFile(t, filepath.Join(root2, "plain/new.png"), pngBytes(t, shape(128, 128, true, blue)))
	tests := []struct {
		name string
		l    *Loader
		st   State
		want string
	}{
		{"options", newLoader(t, ds, other), st, "loader options changed"},
		{"seed", newLoader(t, ds, seed), st, "seed 42, this run 43"},
		{"dataset", newLoader(t, scanTest(t, root2, false), opts), st, "dataset"},
		{"range", newLoader(t, ds, opts), State{Epoch: 1, Batch: 11, Seed: 42, Fingerprint: st.Fingerprint}, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.l.Restore(tt.st)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCaptionAugment(t *testing.T) {
	const c = "trigger, a, b, c, d, e"
	tests := []struct {
		name  string
		opts  CaptionOptions
		in    string
		check func(got string) error
	}{
		{"unchanged without shuffle", CaptionOptions{KeepTokens: 2}, "x,y ,z", func(got string) error {
			return expect(got == "x,y ,z", "caption changed")
		}},
		{"shuffle keeps the first K", CaptionOptions{Shuffle: true, KeepTokens: 1}, c, func(got string) error {
			t := strings.Split(got, ", ")
			s := slices.Clone(t[1:])
			slices.Sort(s)
			return expect(t[0] == "trigger" && strings.Join(s, ",") == "a,b,c,d,e", "tags lost or first moved")
		}},
		{"dropout 1", CaptionOptions{Dropout: 1, Shuffle: true}, c, func(got string) error {
			return expect(got == "", "not dropped")
		}},
		{"tag dropout keeps the fixed tags", CaptionOptions{TagDropout: 0.5, KeepTokens: 2}, c, func(got string) error {
			return expect(strings.HasPrefix(got, "trigger, a"), "fixed tag dropped")
		}},
		{"separator", CaptionOptions{Shuffle: true, KeepSeparator: "|||"}, "p, q ||| a, b, c, d ||| z", func(got string) error {
			return expect(strings.HasPrefix(got, "p, q, ") && strings.HasSuffix(got, ", z") && len(strings.Split(got, ", ")) == 7, "fixed parts moved")
		}},
		{"empty tags removed", CaptionOptions{Shuffle: true}, "a,, b ,", func(got string) error {
			return expect(got == "a, b" || got == "b, a", "empty tags kept")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[string]bool{}
			for i := range uint64(200) {
				got := tt.opts.apply(tt.in, newRNG(9, i))
				if err := tt.check(got); err != nil {
					t.Fatalf("%q → %q: %v", tt.in, got, err)
				}
				seen[got] = true
			}
			if tt.opts.Shuffle && tt.opts.Dropout < 1 && len(seen) < 2 {
				t.Error("shuffle never changed the order")
			}
		})
	}
	// Dropout rate: 4000 draws at p = 0.25, σ = 0.0068; ±0.03 is 4.4σ.
	n := 0
	for i := range uint64(4000) {
		if (CaptionOptions{Dropout: 0.25}).apply(c, newRNG(1, i)) == "" {
			n++
		}
	}
	if f := float64(n) / 4000; math.Abs(f-0.25) > 0.03 {
		t.Errorf("dropout fraction %.3f, want 0.25", f)
	}

	// The loader picks every caption variant over the epochs.
	ds := scanTest(t, makeDataset(t), false)
	l := newLoader(t, ds, LoaderOptions{Seed: 2})
	variants := map[string]bool{}
	for e := range 3 {
		for _, b := range l.Plan(e) {
			for _, s := range b {
				if ds.Items[s.Item].Rel == "10_mystyle/circle_red_wide.png" {
					variants[s.Caption] = true
				}
			}
		}
	}
	if len(variants) != 2 {
		t.Errorf("variants used: %v", variants)
	}
}

func expect(ok bool, msg string) error {
	if ok {
		return nil
	}
	return fmt.Errorf("%s", msg)
}

// TestChangedFile checks that a file edited after the scan stops the loader with an
// error naming it, without moving the loader.
func TestChangedFile(t *testing.T) {
	ds := smallDataset(t)
	l := newLoader(t, ds, LoaderOptions{BatchSize: 15})
	writeFile(t, ds.Items[0].Path, pngBytes(t, shape(128, 128, true, blue)))
	before := l.State()
	_, err := l.Next()
	if err == nil || !strings.Contains(err.Error(), ds.Items[0].Path) || !strings.Contains(err.Error(), "changed since the dataset was scanned") {
		t.Errorf("error %v", err)
	}
	if l.State() != before {
		t.Error("a failed Next moved the loader")
	}
}

func TestLoaderOptionErrors(t *testing.T) {
	ds := smallDataset(t)
	for _, o := range []LoaderOptions{
		{BatchSize: -1},
		{Caption: CaptionOptions{Dropout: 1.5}},
		{Caption: CaptionOptions{TagDropout: math.NaN()}},
		{Caption: CaptionOptions{KeepTokens: -1}},
	} {
		if _, err := NewLoader(ds, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// BenchmarkRenderPhoto measures one sample from a 3000x2000 JPEG at R = 512: read,
// hash, decode, Lanczos resize to 640x427 (covering bucket 640x384), crop.
func BenchmarkRenderPhoto(b *testing.B) {
	root := b.TempDir()
	writeFile(b, filepath.Join(root, "photo.jpg"), jpegBytes(b, halves(3000, 2000, red, blue)))
	ds, err := Scan(root, Options{})
	if err != nil {
		b.Fatal(err)
	}
	s := ds.CenterSample(0, false)
	b.ReportAllocs()
	for b.Loop() {
		img, err := ds.Render([]Sample{s}, 1)
		if err != nil {
			b.Fatal(err)
		}
		img.Release()
	}
}
