package data

import (
	"bytes"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// parseCaption decodes a caption file into its variants: its non-empty lines, each
// trimmed of surrounding white space. note is non-empty when the encoding needed a
// guess, for the warning.
//
// Encodings: UTF-8, with or without a byte-order mark; UTF-16 LE or BE with a
// byte-order mark (what Windows Notepad writes as "Unicode"); anything else that is
// not valid UTF-8 is read as Latin-1 (ISO-8859-1, each byte one character), which is
// right for the most common legacy case (Western European accents) and never loses
// the caption. A caption should be UTF-8; the warning says so.
func parseCaption(b []byte) (variants []string, note string) {
	var text string
	switch {
	case bytes.HasPrefix(b, []byte{0xEF, 0xBB, 0xBF}):
		b = b[3:]
		text = string(b)
		if !utf8.Valid(b) {
			text, note = latin1(b), "not valid UTF-8 despite its byte-order mark; read as Latin-1 (ISO-8859-1): re-save it as UTF-8"
		}
	case len(b) >= 2 && (b[0] == 0xFF && b[1] == 0xFE || b[0] == 0xFE && b[1] == 0xFF):
		text = decodeUTF16(b[2:], b[0] == 0xFE)
		note = "UTF-16 text decoded (re-save it as UTF-8 for other tools)"
	case utf8.Valid(b):
		text = string(b)
	default:
		text, note = latin1(b), "not valid UTF-8; read as Latin-1 (ISO-8859-1): re-save it as UTF-8 if accented letters look wrong"
	}
	for line := range strings.SplitSeq(text, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			variants = append(variants, line)
		}
	}
	return variants, note
}

func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

func decodeUTF16(b []byte, bigEndian bool) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		if bigEndian {
			u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		} else {
			u[i] = uint16(b[2*i+1])<<8 | uint16(b[2*i])
		}
	}
	return string(utf16.Decode(u))
}

// CaptionOptions are kohya's caption augmentations. Each is drawn per sample and
// epoch from the Loader's seed, so a run is reproducible and resumable.
type CaptionOptions struct {
	// Shuffle shuffles the caption's comma-separated tags (kohya shuffle_caption),
	// except the first KeepTokens.
	Shuffle bool
	// KeepTokens is the number of leading tags that stay in place (kohya keep_tokens),
	// typically the trigger word.
	KeepTokens int
	// KeepSeparator, when non-empty and present in a caption, marks the fixed part
	// instead of KeepTokens (kohya keep_tokens_separator, e.g. "|||"): tags before
	// the first separator stay first, tags after a second separator stay last, and
	// only the tags between them are shuffled and dropped.
	KeepSeparator string
	// Dropout is the probability that a sample's caption is replaced by the empty
	// caption (kohya caption_dropout_rate), which trains the unconditional branch
	// used by classifier-free guidance.
	Dropout float64
	// TagDropout is the probability that each non-kept tag is dropped (kohya
	// caption_tag_dropout_rate).
	TagDropout float64
}

// apply returns caption after dropout, tag shuffle and tag dropout as kohya's
// process_caption does them, drawing from r: first the caption dropout, then, when
// Shuffle or TagDropout is set, the caption is split on ",", each tag trimmed and empty
// tags removed, the non-kept tags are shuffled, then each dropped with probability
// TagDropout, and the tags are joined with ", ". Without Shuffle and TagDropout the
// caption is returned unchanged (KeepTokens alone changes nothing).
func (o CaptionOptions) apply(caption string, r *rng) string {
	if o.Dropout > 0 && r.Float64() < o.Dropout {
		return ""
	}
	if !o.Shuffle && o.TagDropout <= 0 {
		return caption
	}
	var fixed, flex, suffix []string
	if o.KeepSeparator != "" && strings.Contains(caption, o.KeepSeparator) {
		parts := strings.SplitN(caption, o.KeepSeparator, 3)
		fixed, flex = tags(parts[0]), tags(parts[1])
		if len(parts) == 3 {
			suffix = tags(parts[2])
		}
	} else {
		flex = tags(caption)
		k := min(max(o.KeepTokens, 0), len(flex))
		fixed, flex = flex[:k], flex[k:]
	}
	if o.Shuffle {
		r.Shuffle(len(flex), func(i, j int) { flex[i], flex[j] = flex[j], flex[i] })
	}
	if o.TagDropout > 0 {
		kept := flex[:0]
		for _, t := range flex {
			if r.Float64() >= o.TagDropout {
				kept = append(kept, t)
			}
		}
		flex = kept
	}
	all := make([]string, 0, len(fixed)+len(flex)+len(suffix))
	all = append(append(append(all, fixed...), flex...), suffix...)
	return strings.Join(all, ", ")
}

// tags splits a caption on commas into trimmed, non-empty tags.
func tags(s string) []string {
	var out []string
	for t := range strings.SplitSeq(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}
