package data

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ImageExtensions are the file extensions Scan reads as images, matched without
// regard to case.
var ImageExtensions = []string{".png", ".jpg", ".jpeg", ".webp", ".bmp"}

// Options configure Scan. The zero value of a field selects its default.
type Options struct {
	// Buckets configure the aspect-ratio buckets.
	Buckets BucketOptions
	// DefaultCaption is the caption of an image that has neither a caption file nor
	// an N_name folder. Empty means the empty (unconditional) caption.
	DefaultCaption string
	// CaptionExtensions are the caption files looked up next to an image, in order
	// of preference: for "cat.png", "cat.txt" then "cat.caption" by default.
	CaptionExtensions []string
	// Workers is the number of files decoded at once; default min(GOMAXPROCS, 8).
	Workers int
}

func (o Options) withDefaults() Options {
	if len(o.CaptionExtensions) == 0 {
		o.CaptionExtensions = []string{".txt", ".caption"}
	}
	if o.Workers <= 0 {
		o.Workers = min(runtime.GOMAXPROCS(0), 8)
	}
	return o
}

// CaptionSource says where an item's caption came from.
type CaptionSource int

// The caption sources, in order of preference.
const (
	CaptionFromFile    CaptionSource = iota // name.txt or name.caption next to the image
	CaptionFromFolder                       // the "name" of an enclosing N_name folder
	CaptionFromDefault                      // Options.DefaultCaption
	CaptionNone                             // no caption at all: the empty caption
)

// String names the source.
func (c CaptionSource) String() string {
	switch c {
	case CaptionFromFile:
		return "file"
	case CaptionFromFolder:
		return "folder"
	case CaptionFromDefault:
		return "default"
	}
	return "none"
}

// Item is one usable image of a dataset.
type Item struct {
	// Path is the file's path for the operating system (Scan's dir joined with Rel).
	Path string
	// Rel is the path relative to the dataset root, with forward slashes.
	Rel string
	// Hash is the hex SHA-256 of the file's bytes: the image's identity for caches.
	Hash string
	// Format is the decoder that read it: "png", "jpeg", "webp" or "bmp".
	Format string
	// Size is the image's size after EXIF orientation.
	Size Size
	// Placement is the bucket, the resize target and the scale.
	Placement
	// Repeats is how many times the image appears per epoch (from an N_name folder;
	// 1 otherwise).
	Repeats int
	// Captions holds the caption variants (at least one, possibly ""); the Loader
	// picks one per sample and epoch.
	Captions []string
	// CaptionSource says where Captions came from; CaptionFile names the file, as a
	// path relative to the root, when it is CaptionFromFile.
	CaptionSource CaptionSource
	CaptionFile   string
	// Notes name the conversions decoding applied ("CMYK converted to RGB", ...).
	Notes []string
	// Folder is the N_name folder (relative to the root, "." for the root itself)
	// whose repeats and caption apply, or "" for none.
	Folder string
}

// Warning is a message about one file or folder (Path relative to the root; "" for
// the dataset as a whole).
type Warning struct {
	Path string
	Msg  string
}

// String formats the warning as "path: message".
func (w Warning) String() string {
	if w.Path == "" {
		return w.Msg
	}
	return w.Path + ": " + w.Msg
}

// Skipped is a file or folder that Scan could not use, and why.
type Skipped struct {
	Path   string
	Reason string
}

// Dataset is the result of Scan: the usable images in a stable order (sorted by
// path), every warning, and what was skipped. It holds no pixels; the Loader reads the
// files again when it needs them and checks that they have not changed.
type Dataset struct {
	// Root is the folder as given to Scan.
	Root     string
	Items    []Item
	Warnings []Warning
	Skipped  []Skipped

	opts     Options
	bucketer *Bucketer
	fsys     fs.FS
	summary  Summary
}

// Options returns the options the dataset was scanned with, defaults filled in.
func (d *Dataset) Options() Options { return d.opts }

// Bucketer returns the bucketer that placed the items.
func (d *Dataset) Bucketer() *Bucketer { return d.bucketer }

// Scan reads the folder dir recursively and returns its images with their captions,
// repeats and buckets. It only reads: nothing under dir is created, changed or
// deleted. See the package documentation for the folder conventions and for how bad
// input is handled.
//
// Scan fails when dir cannot be read, when the options are invalid, and when no
// usable image is found; the error names dir and says what to do. Problems with
// single files are warnings (Dataset.Warnings), and files that cannot be used are
// listed in Dataset.Skipped; the run goes on without them.
func Scan(dir string, opts Options) (*Dataset, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("data: dataset folder: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("data: dataset %s is a file, not a folder; pass the folder that holds the images", dir)
	}
	return ScanFS(os.DirFS(dir), dir, opts)
}

// ScanFS is Scan on a file system; root is the name used in messages and as the base
// of Item.Path. The N_name convention also applies to root's own base name.
func ScanFS(fsys fs.FS, root string, opts Options) (*Dataset, error) {
	opts = opts.withDefaults()
	bk, err := NewBucketer(opts.Buckets)
	if err != nil {
		return nil, err
	}
	opts.Buckets = bk.Options()
	ds := &Dataset{Root: root, opts: opts, bucketer: bk, fsys: fsys}

	w, err := walk(fsys, opts.CaptionExtensions)
	if err != nil {
		return nil, fmt.Errorf("data: read dataset folder %s: %w", root, err)
	}
	ds.Warnings = append(ds.Warnings, w.warnings...)
	ds.Skipped = append(ds.Skipped, w.skipped...)
	if len(w.images) == 0 {
		msg := fmt.Sprintf("data: no images found in %s; supported: %s", root, strings.Join(ImageExtensions, ", "))
		if other := formatCounts(w.ignored); other != "" {
			msg += " (found " + other + ")"
		}
		if len(w.skipped) > 0 {
			msg += fmt.Sprintf("; %d folders could not be read", len(w.skipped))
		}
		return nil, errors.New(msg)
	}

	rootName := rootBase(root)
	results := make([]scanResult, len(w.images))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Go(func() {
			for i := range jobs {
				results[i] = ds.scanFile(w.images[i], w, rootName)
			}
		})
	}
	for i := range w.images {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	for i, r := range results {
		ds.Warnings = append(ds.Warnings, r.warnings...)
		if r.skip != "" {
			ds.Skipped = append(ds.Skipped, Skipped{w.images[i], r.skip})
			continue
		}
		r.item.Path = filepath.Join(root, filepath.FromSlash(r.item.Rel))
		ds.Items = append(ds.Items, r.item)
	}
	ds.aggregateWarnings(w)
	if len(ds.Items) == 0 {
		var reasons []string
		for _, s := range ds.Skipped[:min(len(ds.Skipped), 5)] {
			reasons = append(reasons, s.Path+": "+s.Reason)
		}
		return nil, fmt.Errorf("data: no usable images in %s: all %d image files were skipped:\n  %s",
			root, len(w.images), strings.Join(reasons, "\n  "))
	}
	ds.summary = ds.summarize(w)
	return ds, nil
}

// walked is what walk finds: image files (sorted), caption files by folder and stem,
// counts of ignored extensions, and the folders it could not read.
type walked struct {
	images   []string
	captions map[string][]string // "dir/stem" → caption file paths, in walk order
	ignored  map[string]int      // extension → count
	warnings []Warning
	skipped  []Skipped
}

// walk lists fsys. Hidden files and folders (a name starting with ".") and macOS's
// "__MACOSX" folders are skipped silently; symbolic links to files are followed, links
// to folders are not (they could form cycles) and are reported.
func walk(fsys fs.FS, captionExts []string) (*walked, error) {
	w := &walked{captions: map[string][]string{}, ignored: map[string]int{}}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			w.warnings = append(w.warnings, Warning{p, "cannot read folder, skipped: " + errText(err)})
			w.skipped = append(w.skipped, Skipped{p + "/", "cannot read folder: " + errText(err)})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		name := d.Name()
		if p != "." && (strings.HasPrefix(name, ".") || name == "__MACOSX") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			fi, err := fs.Stat(fsys, p)
			switch {
			case err != nil:
				w.warnings = append(w.warnings, Warning{p, "broken symbolic link, skipped"})
				return nil
			case fi.IsDir():
				w.warnings = append(w.warnings, Warning{p, "symbolic link to a folder, not followed"})
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		ext := strings.ToLower(path.Ext(name))
		switch {
		case slices.Contains(ImageExtensions, ext):
			w.images = append(w.images, p)
		case slices.ContainsFunc(captionExts, func(e string) bool { return strings.EqualFold(e, ext) }):
			key := path.Join(path.Dir(p), strings.TrimSuffix(name, path.Ext(name)))
			w.captions[key] = append(w.captions[key], p)
		case ext != "" && !sideFile(ext):
			w.ignored[ext]++
		}
		return nil
	})
	slices.Sort(w.images)
	return w, err
}

// sideFile reports extensions that are commonly found next to datasets (configs,
// kohya's latent caches, notes) and not worth reporting as ignored.
func sideFile(ext string) bool {
	switch ext {
	case ".json", ".toml", ".yaml", ".yml", ".npz", ".md":
		return true
	}
	return false
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

type scanResult struct {
	item     Item
	warnings []Warning
	skip     string
}

// scanFile reads, hashes and decodes one image file, finds its caption and places it
// in a bucket.
func (ds *Dataset) scanFile(p string, w *walked, rootName string) (r scanResult) {
	warn := func(format string, args ...any) {
		r.warnings = append(r.warnings, Warning{p, fmt.Sprintf(format, args...)})
	}
	skip := func(format string, args ...any) scanResult {
		r.skip = fmt.Sprintf(format, args...)
		warn("skipped: %s", r.skip)
		return r
	}
	folder, repeats, folderCaption := repeatsFolder(p, rootName)
	if folder != "" && repeats == 0 {
		return skip("folder %s asks for 0 repeats", folderLabel(folder, rootName))
	}
	b, err := fs.ReadFile(ds.fsys, p)
	if err != nil {
		return skip("cannot read file: %s", errText(err))
	}
	dec, err := decodeImage(b)
	if err != nil {
		return skip("%s", err)
	}
	for _, n := range dec.notes {
		warn("%s", n)
	}
	sum := sha256.Sum256(b)
	size := Size{dec.img.Rect.Dx(), dec.img.Rect.Dy()}
	it := Item{Rel: p, Hash: hex.EncodeToString(sum[:]), Format: dec.format, Size: size, Repeats: 1, Notes: dec.notes}
	if folder != "" {
		it.Folder, it.Repeats = folder, repeats
	}

	it.Placement = ds.bucketer.Place(size)
	minSide := ds.opts.Buckets.MinSide
	switch {
	case it.TooSmall && ds.opts.Buckets.NoUpscale:
		return skip("%v is smaller than the smallest bucket side %d (no-upscale skips it; use a larger image or allow upscaling)", size, minSide)
	case it.TooSmall:
		warn("%v is smaller than the smallest bucket side %d: enlarged ×%.2f into %v; it will look soft (use a larger image, or no-upscale to skip such images)", size, minSide, it.Scale, it.Bucket)
	case it.Kept() < minKept:
		warn("aspect ratio %.2f (%v) is far from every bucket: the crop to %v keeps only %.0f%% of the image",
			float64(size.W)/float64(size.H), size, it.Bucket, 100*it.Kept())
	}

	stem := strings.TrimSuffix(p, path.Ext(p))
	for _, ext := range ds.opts.CaptionExtensions {
		for _, cp := range w.captions[stem] {
			if !strings.EqualFold(path.Ext(cp), ext) {
				continue
			}
			if it.CaptionFile != "" {
				warn("both %s and %s exist; using %s", path.Base(it.CaptionFile), path.Base(cp), path.Base(it.CaptionFile))
				continue
			}
			cb, err := fs.ReadFile(ds.fsys, cp)
			if err != nil {
				r.warnings = append(r.warnings, Warning{cp, "cannot read caption, ignored: " + errText(err)})
				continue
			}
			variants, note := parseCaption(cb)
			if note != "" {
				r.warnings = append(r.warnings, Warning{cp, note})
			}
			if len(variants) == 0 {
				r.warnings = append(r.warnings, Warning{cp, "caption file is empty, ignored"})
				continue
			}
			it.Captions, it.CaptionSource, it.CaptionFile = variants, CaptionFromFile, cp
		}
	}
	switch {
	case it.CaptionFile != "":
	case folderCaption != "":
		it.Captions, it.CaptionSource = []string{folderCaption}, CaptionFromFolder
	case ds.opts.DefaultCaption != "":
		it.Captions, it.CaptionSource = []string{ds.opts.DefaultCaption}, CaptionFromDefault
	default:
		it.Captions, it.CaptionSource = []string{""}, CaptionNone
	}
	r.item = it
	return r
}

// minKept is the fraction of an image below which a crop earns a warning.
const minKept = 0.8

// repeatsFolder finds the nearest enclosing folder of p named "N_name" (kohya's
// "10_mystyle"), the dataset root's own name included, and returns it (relative to the
// root, "." for the root), N and name with surrounding spaces trimmed. It returns ""
// when there is none.
func repeatsFolder(p, rootName string) (folder string, repeats int, caption string) {
	for dir := path.Dir(p); ; dir = path.Dir(dir) {
		name := path.Base(dir)
		if dir == "." {
			name = rootName
		}
		if n, c, ok := parseRepeats(name); ok {
			return dir, n, c
		}
		if dir == "." {
			return "", 0, ""
		}
	}
}

// parseRepeats splits a folder name "N_name" into N and name.
func parseRepeats(name string) (int, string, bool) {
	num, rest, ok := strings.Cut(name, "_")
	if !ok || num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return 0, "", false
	}
	return n, strings.TrimSpace(rest), true
}

// rootBase returns the base name of the dataset root, resolving "." and "..".
func rootBase(root string) string {
	if abs, err := filepath.Abs(root); err == nil {
		return filepath.Base(abs)
	}
	return filepath.Base(root)
}

func folderLabel(folder, rootName string) string {
	if folder == "." {
		return rootName
	}
	return folder
}

// aggregateWarnings adds the warnings about many files at once: images without a
// caption file, caption files without an image, ignored extensions.
func (ds *Dataset) aggregateWarnings(w *walked) {
	var fromFolder, fromDefault, none []string
	stems := map[string]bool{}
	for _, p := range w.images {
		stems[strings.TrimSuffix(p, path.Ext(p))] = true
	}
	for _, it := range ds.Items {
		switch it.CaptionSource {
		case CaptionFromFolder:
			fromFolder = append(fromFolder, it.Rel)
		case CaptionFromDefault:
			fromDefault = append(fromDefault, it.Rel)
		case CaptionNone:
			none = append(none, it.Rel)
		}
	}
	if n := len(fromFolder) + len(fromDefault) + len(none); n > 0 {
		msg := fmt.Sprintf("%d of %d images have no caption file (%s); they use", n, len(ds.Items),
			strings.Join(ds.opts.CaptionExtensions, " or "))
		var parts []string
		if len(fromFolder) > 0 {
			parts = append(parts, fmt.Sprintf(" their folder's name (%d)", len(fromFolder)))
		}
		if len(fromDefault) > 0 {
			parts = append(parts, fmt.Sprintf(" the default caption %q (%d)", ds.opts.DefaultCaption, len(fromDefault)))
		}
		if len(none) > 0 {
			parts = append(parts, fmt.Sprintf(" the empty caption (%d; set a default caption or add caption files)", len(none)))
		}
		all := append(append(fromFolder, fromDefault...), none...)
		ds.Warnings = append(ds.Warnings, Warning{"", msg + strings.Join(parts, ",") + ": " + listSome(all, 5)})
	}
	var orphans []string
	for stem, files := range w.captions {
		for _, f := range files {
			if !stems[stem] && slices.ContainsFunc(ds.opts.CaptionExtensions, func(e string) bool {
				return strings.EqualFold(e, path.Ext(f))
			}) {
				orphans = append(orphans, f)
			}
		}
	}
	if len(orphans) > 0 {
		slices.Sort(orphans)
		ds.Warnings = append(ds.Warnings, Warning{"", fmt.Sprintf(
			"%d caption files have no image of the same name next to them (for cat.png the caption is cat.txt): %s",
			len(orphans), listSome(orphans, 5))})
	}
	if s := formatCounts(w.ignored); s != "" {
		ds.Warnings = append(ds.Warnings, Warning{"", "ignored files of unsupported types: " + s +
			"; supported: " + strings.Join(ImageExtensions, ", ")})
	}
}

// listSome lists up to n names and says how many more there are.
func listSome(names []string, n int) string {
	s := strings.Join(names[:min(n, len(names))], ", ")
	if len(names) > n {
		s += fmt.Sprintf(" and %d more", len(names)-n)
	}
	return s
}

// formatCounts renders {".gif": 2, ".psd": 1} as "2 .gif, 1 .psd", sorted.
func formatCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	return strings.Join(parts, ", ")
}
