// Package data turns a folder of captioned images into training batches, the way
// kohya sd-scripts users expect: captions next to the images, kohya's "N_name" repeat
// folders, aspect-ratio buckets, crop and flip augmentation, caption shuffling and
// dropout, all reproducible from one seed and resumable at any batch; and it caches
// what encoders compute from the pixels (latents) on disk.
//
//	ds, err := data.Scan("./images", data.Options{Buckets: data.BucketOptions{Resolution: 512}})
//	fmt.Print(ds.Summary().Text(4))                     // difftune train --dry-run
//	l, err := data.NewLoader(ds, data.LoaderOptions{BatchSize: 4, Seed: 1, Flip: true})
//	b, err := l.Next()                                  // b.Images [4, 3, H, W] in [-1, 1]
//	defer b.Release()
//
// The package only reads the dataset: nothing under the folder is created, changed
// or deleted (a Cache lives wherever its caller puts it).
//
// # Folder layout
//
// Scan walks the folder recursively and takes every file whose extension is .png,
// .jpg, .jpeg, .webp or .bmp, in any case. Hidden files and folders (names starting
// with ".") and "__MACOSX" folders are skipped; symbolic links to files are followed,
// links to folders are not. Items are sorted by path, so the order does not depend on
// the file system.
//
// The caption of "cat.png" is "cat.txt", else "cat.caption" (Options.CaptionExtensions).
// Each non-empty line of a caption file is one variant; the Loader picks one variant
// per sample and epoch. A folder named "N_name" (kohya's "10_mystyle") gives the
// images below it N repeats per epoch and the fallback caption "name"; the nearest
// such folder counts, including the dataset folder itself. Without a caption file an
// image uses its folder's caption, else Options.DefaultCaption, else the empty
// caption; one warning counts and lists those images.
//
// # Bad input
//
// Scan never stops for one bad file. Each problem is a Warning naming the file;
// files that cannot be used are also listed in Dataset.Skipped and in the Summary:
//
//   - zero-byte files, files that are not images (the warning says what they seem to
//     be: HEIC, GIF, TIFF, PSD, a web page, text), corrupt or truncated images,
//     images above MaxPixels, unreadable files: skipped;
//   - images whose short side is below BucketOptions.MinSide: skipped with NoUpscale,
//     otherwise enlarged with a warning; images whose crop keeps less than 80% of
//     them (extreme aspect ratios) are warned about;
//   - CMYK, grayscale, 16-bit, paletted and transparent images: converted to 8-bit RGB,
//     with a warning naming the conversion. Transparency is composited over white
//     (out = α·c + (1−α)·255). CMYK uses Go's naive conversion; no ICC profile is
//     applied to any image (pixels are taken as sRGB);
//   - JPEG EXIF orientation is honoured (the image is rotated/flipped upright before
//     bucketing; sizes are the upright sizes);
//   - caption files: a UTF-8 byte-order mark is dropped; UTF-16 with a byte-order mark
//     is decoded; other invalid UTF-8 is read as Latin-1 (ISO-8859-1), with a warning,
//     so the caption is kept; an empty caption file is ignored with a warning; when
//     both cat.txt and cat.caption exist, the first extension wins with a warning;
//     caption files without an image are listed in one warning;
//   - a folder that cannot be read is skipped with a warning; the dataset folder
//     itself unreadable, or holding no images at all, is an error
//     ("no images found in DIR; supported: ..."), and so is a folder whose every
//     image was skipped;
//   - a folder "0_name" (0 repeats) contributes nothing; its images are listed as
//     skipped;
//   - files of other types are counted in one warning ("ignored 2 .gif").
//
// # Buckets
//
// MakeBuckets is kohya's make_bucket_resolutions: for resolution R and step s, the
// square ⌊R/s⌋·s, and for every width w from MinSide to MaxSide in steps of s the
// pair (w, h) and (h, w) with h = min(MaxSide, ⌊⌊R²/w⌋/s⌋·s) when h ≥ MinSide. At R =
// 512 (sides 256..1024, s = 64) these are 17 buckets, 256x1024 … 512x512 … 1024x256.
// Bucketer.Place assigns an image to the bucket with the nearest aspect ratio and
// scales it to cover the bucket; with NoUpscale the bucket is derived from the image
// instead so that it is never enlarged (see Place for the exact rules). Resizing is
// Lanczos (imaging.Lanczos); the crop is centered (kohya) or, with
// LoaderOptions.RandomCrop, at a random position.
//
// # Batches, randomness and resuming
//
// A batch holds samples of one bucket only. Every epoch, the Loader shuffles the
// samples (each image Repeats times), groups them by bucket, cuts each group into
// batches (the last batch of a bucket may be short: nothing is dropped) and shuffles
// the batches. Every random decision — orders, crop positions, flips (p = 1/2),
// caption variant, caption dropout, tag shuffle and tag dropout — comes from a
// SplitMix64 generator seeded by (seed, epoch, item, repeat, purpose), so it does not
// depend on what was drawn before. Loader.State is therefore just the epoch and the
// batch position (with a fingerprint of the dataset and options); Restore resumes at
// exactly the batch that was next.
//
// Images come out as float32 tensors [B, 3, H, W] with values v/127.5 − 1 in
// [-1, 1], the diffusion models' pixel convention. Each Sample carries what a latent
// cache needs (Sample.Key): the SHA-256 of the file, its size, the bucket, the crop
// and the flip.
//
// # Caching
//
// Cache stores named float32 tensors per CacheKey (content hash, size, bucket, crop,
// flip, encoder identity) as safetensors files written atomically. Changing any key
// component is a miss. Random crops give every crop its own key, which makes a latent
// cache useless (kohya refuses the combination); use center crops with a cache.
package data
