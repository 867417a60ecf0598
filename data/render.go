package data

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"io/fs"
	"sync"

	"github.com/disintegration/imaging"

	"github.com/difftune/difftune/tensor"
)

// Sample is one training sample: an item with the augmentation drawn for it in one
// epoch. Hash, Size, Bucket, Crop and Flip are what a latent cache needs to know
// (Key); Caption is the processed caption.
type Sample struct {
	Item   int // index into Dataset.Items
	Repeat int // which of the item's repeats, 0 ≤ Repeat < Item.Repeats
	Hash   string
	Size   Size // the source image, EXIF-oriented
	Bucket Size
	// Crop is the top-left corner of the Bucket-sized window cut from the image
	// resized to the item's Resized size. Size, Crop and Bucket are also SDXL's
	// original_size, crops_coords_top_left and target_size conditioning.
	Crop    image.Point
	Flip    bool
	Caption string
}

// CenterSample returns the sample of item i with a center crop, the first caption
// variant unchanged and the given flip: what a latent cache is filled from.
func (d *Dataset) CenterSample(i int, flip bool) Sample {
	it := &d.Items[i]
	return Sample{
		Item: i, Hash: it.Hash, Size: it.Size, Bucket: it.Bucket, Flip: flip,
		Crop:    centerCrop(it.Placement),
		Caption: it.Captions[0],
	}
}

// centerCrop returns the crop corner kohya uses: the excess halved, rounded down.
func centerCrop(p Placement) image.Point {
	return image.Pt((p.Resized.W-p.Bucket.W)/2, (p.Resized.H-p.Bucket.H)/2)
}

// Render reads, decodes, resizes (Lanczos), crops and flips the samples, which must
// share a bucket, into a new tensor [B, 3, H, W] with values in [-1, 1]
// (v/127.5 − 1 for 8-bit v), the caller's to release. Images are processed in
// parallel, up to workers at once (≤ 0: one per sample).
//
// Render fails, returning no tensor, when a file cannot be read or decoded or its
// content no longer has the SHA-256 recorded by Scan (the dataset changed during the
// run); the error names the file. It panics if samples is empty, mixes buckets or
// names an item out of range.
func (d *Dataset) Render(samples []Sample, workers int) (*tensor.Tensor, error) {
	if len(samples) == 0 {
		panic("data: Render of no samples")
	}
	bk := samples[0].Bucket
	for _, s := range samples {
		if s.Bucket != bk {
			panic(fmt.Sprintf("data: Render of mixed buckets %v and %v", bk, s.Bucket))
		}
	}
	if workers <= 0 {
		workers = len(samples)
	}
	out := tensor.Zeros(len(samples), 3, bk.H, bk.W)
	data := out.Data()
	n := 3 * bk.H * bk.W
	errs := make([]error, len(samples))
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i, s := range samples {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = d.renderInto(s, data[i*n:(i+1)*n])
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			out.Release()
			return nil, err
		}
	}
	return out, nil
}

// renderInto writes one sample as [3, H, W] into dst.
func (d *Dataset) renderInto(s Sample, dst []float32) error {
	it := &d.Items[s.Item]
	b, err := fs.ReadFile(d.fsys, it.Rel)
	if err != nil {
		return fmt.Errorf("data: read %s: %s (was it moved or deleted during the run?)", it.Path, errText(err))
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != it.Hash {
		return fmt.Errorf("data: %s changed since the dataset was scanned; restart the run to rescan it", it.Path)
	}
	dec, err := decodeImage(b)
	if err != nil {
		return fmt.Errorf("data: %s: %v", it.Path, err)
	}
	img := dec.img
	if img.Rect.Dx() != it.Resized.W || img.Rect.Dy() != it.Resized.H {
		img = imaging.Resize(img, it.Resized.W, it.Resized.H, imaging.Lanczos)
	}
	cropFlip(dst, img, s.Bucket, s.Crop, s.Flip)
	return nil
}

// cropFlip writes the Bucket-sized window of img at crop, mirrored left–right when
// flip is set, into dst as planar RGB in [-1, 1]. It panics if the window does not fit.
func cropFlip(dst []float32, img *image.NRGBA, bk Size, crop image.Point, flip bool) {
	r := img.Rect
	if crop.X < 0 || crop.Y < 0 || crop.X+bk.W > r.Dx() || crop.Y+bk.H > r.Dy() {
		panic(fmt.Sprintf("data: crop %v at %v outside the %dx%d image", bk, crop, r.Dx(), r.Dy()))
	}
	plane := bk.W * bk.H
	for y := range bk.H {
		row := img.Pix[(crop.Y+y)*img.Stride+crop.X*4:]
		o := y * bk.W
		for x := range bk.W {
			sx := x
			if flip {
				sx = bk.W - 1 - x
			}
			p := row[sx*4 : sx*4+3 : sx*4+3]
			dst[o+x] = float32(p[0])/127.5 - 1
			dst[plane+o+x] = float32(p[1])/127.5 - 1
			dst[2*plane+o+x] = float32(p[2])/127.5 - 1
		}
	}
}
