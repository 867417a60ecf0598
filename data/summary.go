package data

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// BucketCount is one row of the buckets table.
type BucketCount struct {
	Bucket  Size
	Images  int // distinct images in the bucket
	Samples int // samples per epoch: images × repeats
}

// FolderCount describes one N_name folder.
type FolderCount struct {
	Folder  string // relative to the root; "." is the root itself
	Repeats int
	Caption string // the folder's fallback caption
	Images  int
}

// Summary describes a scanned dataset: what `difftune train --dry-run` prints.
type Summary struct {
	Root    string
	Buckets BucketOptions // defaults filled in

	Images  int // usable images
	Samples int // samples per epoch, repeats included
	// RepeatedImages counts images with more than one repeat.
	RepeatedImages int
	Folders        []FolderCount
	BucketCounts   []BucketCount // sorted by width, then height

	// Caption sources, one count per image; CaptionVariants counts the images
	// whose caption file has more than one non-empty line.
	CaptionFiles, FolderCaptions, DefaultCaptions, NoCaptions int
	CaptionVariants                                           int

	// Upscaled counts images enlarged to fill their bucket; TooSmall those below
	// MinSide (enlarged, with a warning; skipped with NoUpscale).
	Upscaled, TooSmall int
	// Conversions counts each conversion applied ("CMYK converted to RGB": 2).
	Conversions map[string]int
	// Ignored counts files with unsupported extensions by extension.
	Ignored  map[string]int
	Skipped  []Skipped
	Warnings int
}

// Summary returns the dataset's summary.
func (d *Dataset) Summary() Summary { return d.summary }

func (d *Dataset) summarize(w *walked) Summary {
	s := Summary{
		Root: d.Root, Buckets: d.opts.Buckets,
		Conversions: map[string]int{}, Ignored: maps.Clone(w.ignored),
		Skipped: d.Skipped, Warnings: len(d.Warnings),
	}
	buckets := map[Size]*BucketCount{}
	folders := map[string]*FolderCount{}
	for _, it := range d.Items {
		s.Images++
		s.Samples += it.Repeats
		if it.Repeats > 1 {
			s.RepeatedImages++
		}
		bc := buckets[it.Bucket]
		if bc == nil {
			bc = &BucketCount{Bucket: it.Bucket}
			buckets[it.Bucket] = bc
		}
		bc.Images++
		bc.Samples += it.Repeats
		if it.Folder != "" {
			fc := folders[it.Folder]
			if fc == nil {
				_, _, c := repeatsFolder(it.Rel, rootBase(d.Root))
				fc = &FolderCount{Folder: it.Folder, Repeats: it.Repeats, Caption: c}
				folders[it.Folder] = fc
			}
			fc.Images++
		}
		switch it.CaptionSource {
		case CaptionFromFile:
			s.CaptionFiles++
			if len(it.Captions) > 1 {
				s.CaptionVariants++
			}
		case CaptionFromFolder:
			s.FolderCaptions++
		case CaptionFromDefault:
			s.DefaultCaptions++
		default:
			s.NoCaptions++
		}
		if it.Scale > 1 {
			s.Upscaled++
		}
		if it.TooSmall {
			s.TooSmall++
		}
		for _, n := range it.Notes {
			s.Conversions[n]++
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(buckets), cmpSize) {
		s.BucketCounts = append(s.BucketCounts, *buckets[k])
	}
	for _, k := range slices.Sorted(maps.Keys(folders)) {
		s.Folders = append(s.Folders, *folders[k])
	}
	return s
}

func cmpSize(a, b Size) int {
	if a.W != b.W {
		return a.W - b.W
	}
	return a.H - b.H
}

// BatchesPerEpoch returns the number of batches in an epoch for a batch size: each
// bucket's samples are cut into batches, the last one possibly partial.
func (s Summary) BatchesPerEpoch(batchSize int) int {
	n := 0
	for _, b := range s.BucketCounts {
		n += (b.Samples + batchSize - 1) / batchSize
	}
	return n
}

// Text renders the summary for people (difftune train --dry-run). With batchSize > 0
// it also gives the batches per epoch.
func (s Summary) Text(batchSize int) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	o := s.Buckets
	p("dataset %s\n", s.Root)
	p("  images             %d", s.Images)
	if s.RepeatedImages > 0 {
		p(" (%d repeated)", s.RepeatedImages)
	}
	p("\n  samples per epoch  %d\n", s.Samples)
	if batchSize > 0 {
		p("  batches per epoch  %d (batch size %d; a batch holds one bucket)\n", s.BatchesPerEpoch(batchSize), batchSize)
	}
	for i, f := range s.Folders {
		label := "  repeat folders     "
		if i > 0 {
			label = "                     "
		}
		p("%s%s: %d images × %d repeats, caption %q\n", label, f.Folder, f.Images, f.Repeats, f.Caption)
	}
	p("  captions           %d from files", s.CaptionFiles)
	if s.CaptionVariants > 0 {
		p(" (%d with variants)", s.CaptionVariants)
	}
	p(", %d from folder names, %d default, %d empty\n", s.FolderCaptions, s.DefaultCaptions, s.NoCaptions)
	mode := "upscale allowed"
	if o.NoUpscale {
		mode = "no upscale"
	}
	p("  buckets            resolution %d, sides %d..%d in steps of %d, %s\n", o.Resolution, o.MinSide, o.MaxSide, o.Step, mode)
	p("      bucket   aspect  images  samples\n")
	for _, bc := range s.BucketCounts {
		p("    %9s  %6.2f  %6d  %7d\n", bc.Bucket, float64(bc.Bucket.W)/float64(bc.Bucket.H), bc.Images, bc.Samples)
	}
	if s.Upscaled > 0 {
		p("  upscaled           %d images (%d below the smallest bucket side %d)\n", s.Upscaled, s.TooSmall, o.MinSide)
	}
	for i, k := range slices.Sorted(maps.Keys(s.Conversions)) {
		label := "  converted          "
		if i > 0 {
			label = "                     "
		}
		p("%s%d: %s\n", label, s.Conversions[k], k)
	}
	if len(s.Ignored) > 0 {
		p("  ignored            %s\n", formatCounts(s.Ignored))
	}
	if len(s.Skipped) > 0 {
		p("  skipped            %d:\n", len(s.Skipped))
		for _, sk := range s.Skipped {
			p("    %s: %s\n", sk.Path, sk.Reason)
		}
	}
	if s.Warnings > 0 {
		p("  warnings           %d\n", s.Warnings)
	}
	return b.String()
}
