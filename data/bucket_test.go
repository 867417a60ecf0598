package data

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func sizes(s string) []Size {
	var out []Size
	for f := range strings.FieldsSeq(s) {
		var b Size
		if _, err := fmt.Sscanf(f, "%dx%d", &b.W, &b.H); err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

// The expected lists were worked out by hand from kohya's make_bucket_resolutions
// (h = min(max, ⌊⌊R²/w⌋/64⌋·64) for w = min, min+64, …, max; both orientations; the
// square ⌊R/64⌋·64), e.g. at R = 512: w = 320 → ⌊262144/320⌋ = 819 → 768;
// w = 704 → 372 → 320; w = 832 → 315 → 256.
func TestMakeBuckets(t *testing.T) {
	tests := []struct {
		name string
		opts BucketOptions
		want []Size
	}{
		{"R512 kohya defaults", BucketOptions{Resolution: 512}, sizes(`
			256x832 256x896 256x960 256x1024 320x704 320x768 384x640 448x576 512x512
			576x448 640x384 704x320 768x320 832x256 896x256 960x256 1024x256`)},
		{"R1024 sides 512..2048", BucketOptions{Resolution: 1024}, sizes(`
			512x1856 512x1920 512x1984 512x2048 576x1664 576x1728 576x1792 640x1536 640x1600
			704x1408 704x1472 768x1280 768x1344 832x1216 896x1152 960x1088 1024x1024
			1088x960 1152x896 1216x832 1280x768 1344x768 1408x704 1472x704 1536x640
			1600x640 1664x576 1728x576 1792x576 1856x512 1920x512 1984x512 2048x512`)},
		{"R1024 kohya sides 256..1024", BucketOptions{Resolution: 1024, MinSide: 256, MaxSide: 1024}, sizes(`
			256x1024 320x1024 384x1024 448x1024 512x1024 576x1024 640x1024 704x1024
			768x1024 832x1024 896x1024 960x1024 1024x256 1024x320 1024x384 1024x448
			1024x512 1024x576 1024x640 1024x704 1024x768 1024x832 1024x896 1024x960 1024x1024`)},
		{"small test buckets", smallBuckets, sizes(`
			64x192 64x224 64x256 96x160 128x128 160x96 192x64 224x64 256x64`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MakeBuckets(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
			o, _ := tt.opts.withDefaults()
			for _, b := range got {
				if b.Area() > o.Resolution*o.Resolution || b.W%o.Step != 0 || b.H%o.Step != 0 ||
					min(b.W, b.H) < o.MinSide || max(b.W, b.H) > o.MaxSide {
					t.Errorf("bucket %v breaks the rule for %+v", b, o)
				}
			}
		})
	}
}

func TestBucketOptionErrors(t *testing.T) {
	for _, o := range []BucketOptions{
		{Resolution: 512, MinSide: 300},               // not a multiple of 64
		{Resolution: 512, MinSide: 576},               // above R
		{Resolution: 512, MaxSide: 448},               // below R
		{Resolution: -512},                            // negative
		{Resolution: 512, Step: 48, MinSide: 250},     // not a multiple of 48
		{Resolution: 512, MinSide: 256, MaxSide: 960}, // fine
	} {
		_, err := NewBucketer(o)
		if (err == nil) != (o.MaxSide == 960) {
			t.Errorf("%+v: err = %v", o, err)
		}
	}
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name      string
		noUpscale bool
		img       Size
		bucket    Size
		resized   Size
		tooSmall  bool
	}{
		// Default (kohya select_bucket) at R = 512.
		{"square exact", false, Size{512, 512}, Size{512, 512}, Size{512, 512}, false},
		{"square large", false, Size{1024, 1024}, Size{512, 512}, Size{512, 512}, false},
		// 1.5: |1.5−640/384| = 0.167 beats |1.5−576/448| = 0.214; wider-than-image
		// bucket, so scale by width 640/600: height 426.7 → 427.
		{"landscape 3:2", false, Size{600, 400}, Size{640, 384}, Size{640, 427}, false},
		// 0.667: 384x640 (0.6) beats 448x576 (0.778); scale by height 640/600.
		{"portrait 2:3", false, Size{400, 600}, Size{384, 640}, Size{427, 640}, false},
		{"exact non-square bucket", false, Size{256, 1024}, Size{256, 1024}, Size{256, 1024}, false},
		{"4:1 exact ratio", false, Size{2000, 500}, Size{1024, 256}, Size{1024, 256}, false},
		{"small is enlarged", false, Size{300, 200}, Size{640, 384}, Size{640, 427}, true},
		// NoUpscale.
		{"nu fits", true, Size{400, 400}, Size{384, 384}, Size{400, 400}, false},
		{"nu large square", true, Size{1024, 1024}, Size{512, 512}, Size{512, 512}, false},
		{"nu below R² keeps size", true, Size{600, 400}, Size{576, 384}, Size{600, 400}, false},
		// s = 512/√6e6 = 0.20903: 627.1x418.1 → 627x418 → 576x384.
		{"nu photo", true, Size{3000, 2000}, Size{576, 384}, Size{627, 418}, false},
		// s = 0.661 would give a 198 short side: s = 256/300, 256x1707, capped at 1024.
		{"nu elongated", true, Size{300, 2000}, Size{256, 1024}, Size{256, 1707}, false},
		{"nu too small", true, Size{200, 400}, Size{}, Size{200, 400}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBucketer(BucketOptions{Resolution: 512, NoUpscale: tt.noUpscale})
			if err != nil {
				t.Fatal(err)
			}
			p := b.Place(tt.img)
			if p.Bucket != tt.bucket || p.Resized != tt.resized || p.TooSmall != tt.tooSmall {
				t.Errorf("Place(%v) = %+v; want bucket %v resized %v tooSmall %v", tt.img, p, tt.bucket, tt.resized, tt.tooSmall)
			}
		})
	}
}

// TestPlaceInvariants checks every size from 40 to 2100 in steps of 13 in both modes:
// the resized image covers the bucket, buckets respect the area and side bounds, and
// NoUpscale never enlarges.
func TestPlaceInvariants(t *testing.T) {
	for _, nu := range []bool{false, true} {
		b, err := NewBucketer(BucketOptions{Resolution: 512, NoUpscale: nu})
		if err != nil {
			t.Fatal(err)
		}
		for w := 40; w < 2100; w += 13 {
			for h := 40; h < 2100; h += 13 {
				p := b.Place(Size{w, h})
				if nu && p.TooSmall {
					continue
				}
				if p.Resized.W < p.Bucket.W || p.Resized.H < p.Bucket.H {
					t.Fatalf("noUpscale=%v %dx%d: resized %v does not cover %v", nu, w, h, p.Resized, p.Bucket)
				}
				if p.Bucket.Area() > 512*512 || min(p.Bucket.W, p.Bucket.H) < 256 || max(p.Bucket.W, p.Bucket.H) > 1024 ||
					p.Bucket.W%64 != 0 || p.Bucket.H%64 != 0 {
					t.Fatalf("noUpscale=%v %dx%d: bucket %v out of bounds", nu, w, h, p.Bucket)
				}
				if nu && p.Scale > 1 {
					t.Fatalf("%dx%d: NoUpscale enlarged ×%v", w, h, p.Scale)
				}
				if p.TooSmall != (min(w, h) < 256) {
					t.Fatalf("%dx%d: TooSmall = %v", w, h, p.TooSmall)
				}
			}
		}
	}
}
