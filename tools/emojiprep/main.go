// Command emojiprep writes an image-caption folder from an installed emoji-datasource
// npm package (emoji-datasource-google, -twitter, -apple, -facebook): one PNG per emoji
// image, flattened onto a white background, with a .txt caption of the emoji's name,
// its short names, subcategory and category (and the skin tones of a skin-tone
// variant). scripts/prepare-emoji.sh installs the package and runs it.
//
//	go run ./tools/emojiprep --package DIR --out DIR [--size 64] [--limit N] [--match WORD]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/disintegration/imaging"

	"github.com/difftune/difftune/internal/atomicfile"
)

// entry is the part of one emoji.json record this tool reads.
type entry struct {
	Name        string             `json:"name"`
	Image       string             `json:"image"`
	ShortNames  []string           `json:"short_names"`
	Category    string             `json:"category"`
	Subcategory string             `json:"subcategory"`
	SortOrder   int                `json:"sort_order"`
	Skins       map[string]variant `json:"skin_variations"`
}

type variant struct {
	Image string `json:"image"`
}

// skinTones names the Fitzpatrick modifiers as Unicode does.
var skinTones = map[string]string{
	"1F3FB": "light skin tone", "1F3FC": "medium-light skin tone", "1F3FD": "medium skin tone",
	"1F3FE": "medium-dark skin tone", "1F3FF": "dark skin tone",
}

func main() {
	pkg := flag.String("package", "", "the installed npm package folder (has emoji.json and img/)")
	out := flag.String("out", "", "the image-caption folder to write")
	size := flag.Int("size", 64, "image side in pixels")
	limit := flag.Int("limit", 0, "write at most this many images, spread evenly over the set (0: all)")
	match := flag.String("match", "", "keep only emoji whose caption contains this word")
	noSkins := flag.Bool("no-skin-tones", false, "skip the skin-tone variants")
	flag.Parse()
	if err := run(*pkg, *out, *size, *limit, *match, *noSkins); err != nil {
		fmt.Fprintln(os.Stderr, "emojiprep:", err)
		os.Exit(1)
	}
}

type item struct{ image, caption string }

func run(pkg, out string, size, limit int, match string, noSkins bool) error {
	if pkg == "" || out == "" {
		return fmt.Errorf("--package and --out are required")
	}
	raw, err := os.ReadFile(filepath.Join(pkg, "emoji.json"))
	if err != nil {
		return fmt.Errorf("%w (is --package an emoji-datasource-* npm package folder?)", err)
	}
	var entries []entry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(pkg, "emoji.json"), err)
	}
	imgDir, err := imageDir(pkg)
	if err != nil {
		return err
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].SortOrder < entries[j].SortOrder })
	var items []item
	for _, e := range entries {
		base := caption(e)
		if match != "" && !strings.Contains(" "+base+" ", " "+match+" ") {
			continue
		}
		items = append(items, item{e.Image, base})
		if noSkins {
			continue
		}
		var keys []string
		for k := range e.Skins {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var tones []string
			for _, m := range strings.Split(k, "-") {
				if t, ok := skinTones[m]; ok && !contains(tones, t) {
					tones = append(tones, t)
				}
			}
			items = append(items, item{e.Skins[k].Image, base + ", " + strings.Join(tones, ", ")})
		}
	}
	if limit > 0 && len(items) > limit {
		picked := make([]item, limit)
		for i := range picked {
			picked[i] = items[i*len(items)/limit]
		}
		items = picked
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	written := 0
	for _, it := range items {
		src := filepath.Join(imgDir, it.image)
		if _, err := os.Stat(src); err != nil {
			continue // emoji.json lists images some sets lack
		}
		img, err := imaging.Open(src)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		flat := image.NewRGBA(img.Bounds())
		draw.Draw(flat, flat.Bounds(), &image.Uniform{color.White}, image.Point{}, draw.Src)
		draw.Draw(flat, flat.Bounds(), img, img.Bounds().Min, draw.Over)
		var final image.Image = flat
		if img.Bounds().Dx() != size || img.Bounds().Dy() != size {
			final = imaging.Resize(flat, size, size, imaging.Lanczos)
		}
		stem := filepath.Join(out, strings.TrimSuffix(it.image, ".png"))
		if err := atomicfile.WriteFile(stem+".png", func(w io.Writer) error { return png.Encode(w, final) }); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(stem+".txt", func(w io.Writer) error { _, err := io.WriteString(w, it.caption+"\n"); return err }); err != nil {
			return err
		}
		written++
	}
	if written == 0 {
		return fmt.Errorf("no images written: none of the %d selected emoji has an image under %s", len(items), imgDir)
	}
	fmt.Printf("wrote %d images and captions to %s\n", written, out)
	return nil
}

// imageDir finds img/<set>/64 in the package.
func imageDir(pkg string) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(pkg, "img", "*", "64"))
	if len(dirs) != 1 {
		return "", fmt.Errorf("%s: want exactly one img/<set>/64 folder, found %d", pkg, len(dirs))
	}
	return dirs[0], nil
}

// caption is "red apple, apple, food fruit, food & drink": the lowercased name, the
// short names not already in it, the subcategory and the category.
func caption(e entry) string {
	name := strings.ToLower(e.Name)
	if name == "" {
		name = strings.ReplaceAll(e.ShortNames[0], "_", " ")
	}
	parts := []string{name}
	for _, s := range e.ShortNames {
		s = strings.ReplaceAll(strings.ReplaceAll(s, "_", " "), "-", " ")
		if !strings.Contains(name, s) && !contains(parts, s) {
			parts = append(parts, s)
		}
	}
	parts = append(parts, strings.ReplaceAll(e.Subcategory, "-", " "), strings.ToLower(e.Category))
	return strings.Join(parts, ", ")
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
