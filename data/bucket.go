package data

import (
	"fmt"
	"math"
	"slices"
)

// Size is a width and a height in pixels.
type Size struct{ W, H int }

// String formats s as "WxH".
func (s Size) String() string { return fmt.Sprintf("%dx%d", s.W, s.H) }

// Area returns W·H.
func (s Size) Area() int { return s.W * s.H }

// BucketOptions configure the aspect-ratio buckets. The zero value of a field selects
// its default.
type BucketOptions struct {
	// Resolution is R: every bucket has an area of at most R² pixels. Default 512.
	Resolution int
	// MinSide and MaxSide bound each side of a bucket. Defaults R/2 and 2R rounded to
	// Step, which at R = 512 are kohya's defaults (min_bucket_reso 256,
	// max_bucket_reso 1024). Both must be multiples of Step, and MinSide ≤ R ≤ MaxSide.
	MinSide, MaxSide int
	// Step is the granularity of bucket sides (kohya's bucket_reso_steps). Default 64,
	// which SD's VAE (8×) and a patch-2 DiT both divide.
	Step int
	// NoUpscale selects kohya's bucket_no_upscale semantics (see Bucketer.Place):
	// no image is ever enlarged, and images whose short side is below MinSide are
	// skipped. Without it (kohya's default), small images are upscaled into the
	// predefined bucket with a warning.
	NoUpscale bool
}

func (o BucketOptions) withDefaults() (BucketOptions, error) {
	if o.Resolution == 0 {
		o.Resolution = 512
	}
	if o.Step == 0 {
		o.Step = 64
	}
	if o.MinSide == 0 {
		o.MinSide = max(o.Step, o.Resolution/2/o.Step*o.Step)
	}
	if o.MaxSide == 0 {
		o.MaxSide = o.Resolution * 2 / o.Step * o.Step
	}
	switch {
	case o.Resolution < 0 || o.Step < 0 || o.MinSide < 0 || o.MaxSide < 0:
		return o, fmt.Errorf("data: bucket options %+v: sizes must be positive", o)
	case o.MinSide%o.Step != 0 || o.MaxSide%o.Step != 0:
		return o, fmt.Errorf("data: bucket sides %d..%d must be multiples of the step %d", o.MinSide, o.MaxSide, o.Step)
	case o.MinSide > o.Resolution || o.Resolution > o.MaxSide:
		return o, fmt.Errorf("data: resolution %d must lie between the bucket sides %d..%d", o.Resolution, o.MinSide, o.MaxSide)
	}
	return o, nil
}

// MakeBuckets returns the bucket sizes for o, sorted by width then height. The rule
// is kohya sd-scripts' make_bucket_resolutions (library/model_util.py), with
// R = Resolution, s = Step:
//
//	add (⌊R/s⌋·s, ⌊R/s⌋·s)                                   the square bucket
//	for w := MinSide; w <= MaxSide; w += s {
//		h := min(MaxSide, ⌊⌊R²/w⌋/s⌋·s)                     the tallest h with w·h ≤ R²
//		if h >= MinSide { add (w, h) and (h, w) }
//	}
//
// deduplicated. For R = 512 with the defaults this gives 17 buckets from 256x1024
// through 512x512 to 1024x256.
func MakeBuckets(o BucketOptions) ([]Size, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	r, s := o.Resolution, o.Step
	area := r * r
	set := map[Size]bool{{r / s * s, r / s * s}: true}
	for w := o.MinSide; w <= o.MaxSide; w += s {
		h := min(o.MaxSide, area/w/s*s)
		if h >= o.MinSide {
			set[Size{w, h}] = true
			set[Size{h, w}] = true
		}
	}
	out := make([]Size, 0, len(set))
	for b := range set {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Size) int {
		if a.W != b.W {
			return a.W - b.W
		}
		return a.H - b.H
	})
	return out, nil
}

// Placement says how one image becomes a training sample: it is resized (Lanczos) to
// Resized, which covers Bucket, and then cropped to Bucket.
type Placement struct {
	Bucket  Size
	Resized Size
	// Scale is Resized/original; above 1 the image is enlarged.
	Scale float64
	// TooSmall reports an image whose short side is below MinSide: it cannot fill the
	// smallest bucket without being enlarged. With NoUpscale such images are skipped.
	TooSmall bool
}

// Kept returns the fraction of the resized image that the crop keeps.
func (p Placement) Kept() float64 {
	return float64(p.Bucket.Area()) / float64(p.Resized.Area())
}

// Bucketer places images into buckets.
type Bucketer struct {
	opts    BucketOptions
	buckets []Size
	ratios  []float64
}

// NewBucketer returns a Bucketer for o, or an error naming the invalid option.
func NewBucketer(o BucketOptions) (*Bucketer, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	bs, err := MakeBuckets(o)
	if err != nil {
		return nil, err
	}
	rs := make([]float64, len(bs))
	for i, b := range bs {
		rs[i] = float64(b.W) / float64(b.H)
	}
	return &Bucketer{opts: o, buckets: bs, ratios: rs}, nil
}

// Options returns the options with defaults filled in.
func (b *Bucketer) Options() BucketOptions { return b.opts }

// Buckets returns the predefined buckets (MakeBuckets). With NoUpscale, Place may
// return other sizes.
func (b *Bucketer) Buckets() []Size { return slices.Clone(b.buckets) }

// Place returns where an image of size img goes. It panics if a side is not positive.
//
// Default (kohya's BucketManager.select_bucket): an image whose size is exactly a
// bucket goes there; otherwise it goes to the predefined bucket whose aspect ratio
// w/h is nearest to the image's (absolute difference; the first in MakeBuckets order
// wins a tie). The image is scaled so that it covers the bucket — by height when the
// image is wider than the bucket, else by width — rounding each side to the nearest
// pixel, and the excess is cropped.
//
// NoUpscale (kohya's bucket_no_upscale, bounded as below):
//  1. s = min(1, R/√(w·h)): an image larger than R² is shrunk to area R², never enlarged;
//  2. if the short side would fall below MinSide, s = MinSide/short side instead
//     (still ≤ 1 — otherwise the image is TooSmall and skipped);
//  3. Resized = (round(w·s), round(h·s)); the bucket is Resized with each side rounded
//     down to a multiple of Step and capped at MaxSide, and then, while its area
//     exceeds R², its longer side is reduced by Step.
//
// Steps 1 and 3 without the caps are kohya's rule; the caps keep extreme aspect ratios
// inside [MinSide, MaxSide] (kohya would make, say, a 192x1280 bucket) by cropping
// more, as the predefined buckets do. Buckets made this way need not be in Buckets().
func (b *Bucketer) Place(img Size) Placement {
	if img.W <= 0 || img.H <= 0 {
		panic(fmt.Sprintf("data: Bucketer.Place of an empty image %v", img))
	}
	short := min(img.W, img.H)
	tooSmall := short < b.opts.MinSide
	if b.opts.NoUpscale {
		return b.placeNoUpscale(img, tooSmall)
	}
	ar := float64(img.W) / float64(img.H)
	best := slices.Index(b.buckets, img)
	if best < 0 {
		best = 0
		for i, r := range b.ratios {
			if math.Abs(r-ar) < math.Abs(b.ratios[best]-ar) {
				best = i
			}
		}
	}
	bk := b.buckets[best]
	var scale float64
	if ar > b.ratios[best] {
		scale = float64(bk.H) / float64(img.H)
	} else {
		scale = float64(bk.W) / float64(img.W)
	}
	rs := Size{
		max(bk.W, int(float64(img.W)*scale+0.5)),
		max(bk.H, int(float64(img.H)*scale+0.5)),
	}
	return Placement{Bucket: bk, Resized: rs, Scale: scale, TooSmall: tooSmall}
}

func (b *Bucketer) placeNoUpscale(img Size, tooSmall bool) Placement {
	o := b.opts
	if tooSmall {
		return Placement{Resized: img, Scale: 1, TooSmall: true}
	}
	r := float64(o.Resolution)
	s := min(1, r/math.Sqrt(float64(img.W)*float64(img.H)))
	short := float64(min(img.W, img.H))
	if short*s < float64(o.MinSide) {
		s = float64(o.MinSide) / short
	}
	rs := Size{max(1, int(float64(img.W)*s+0.5)), max(1, int(float64(img.H)*s+0.5))}
	bk := Size{min(o.MaxSide, rs.W/o.Step*o.Step), min(o.MaxSide, rs.H/o.Step*o.Step)}
	for bk.Area() > o.Resolution*o.Resolution {
		if bk.W >= bk.H {
			bk.W -= o.Step
		} else {
			bk.H -= o.Step
		}
	}
	return Placement{Bucket: bk, Resized: rs, Scale: s}
}
