package textenc

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// WordTokenizer is a word-level tokenizer with its own vocabulary, for small models
// trained from scratch (the emoji-base model): a prompt is lowercased and split into
// runs of letters and digits; each word known to the vocabulary is one token, any
// other word the unknown token. Sequences are wrapped in start and end tokens,
// truncated so the end token fits, and padded to Length with the end token (as SD1's
// CLIP pads, so the pooled output is read at the first end token).
type WordTokenizer struct {
	Vocab  []string // the words, id = WordFirst + index
	Length int      // tokens per sequence, start and end included
	index  map[string]int
}

// WordTokenizer's reserved ids.
const (
	WordStart   = 0
	WordEnd     = 1
	WordUnknown = 2
	WordFirst   = 3 // the first word's id
)

// NewWordTokenizer builds a tokenizer over vocab (words as Words splits them; no
// duplicates).
func NewWordTokenizer(vocab []string, length int) (*WordTokenizer, error) {
	if length < 2 {
		return nil, fmt.Errorf("word tokenizer: length %d leaves no room for start and end tokens", length)
	}
	t := &WordTokenizer{Vocab: vocab, Length: length, index: make(map[string]int, len(vocab))}
	for i, w := range vocab {
		if ws := Words(w); len(ws) != 1 || ws[0] != w {
			return nil, fmt.Errorf("word tokenizer: vocabulary entry %d %q is not one lowercase word", i, w)
		}
		if _, dup := t.index[w]; dup {
			return nil, fmt.Errorf("word tokenizer: vocabulary entry %d %q appears twice", i, w)
		}
		t.index[w] = WordFirst + i
	}
	return t, nil
}

// VocabSize is the embedding rows a text encoder over t needs.
func (t *WordTokenizer) VocabSize() int { return WordFirst + len(t.Vocab) }

// Words splits text into lowercase runs of letters and digits.
func Words(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// Encode tokenizes each prompt to exactly Length ids.
func (t *WordTokenizer) Encode(prompts []string) [][]int {
	out := make([][]int, len(prompts))
	for i, p := range prompts {
		ids := make([]int, 0, t.Length)
		ids = append(ids, WordStart)
		for _, w := range Words(p) {
			if len(ids) == t.Length-1 {
				break
			}
			id, ok := t.index[w]
			if !ok {
				id = WordUnknown
			}
			ids = append(ids, id)
		}
		for len(ids) < t.Length {
			ids = append(ids, WordEnd)
		}
		out[i] = ids
	}
	return out
}

// Unknown returns the words of prompt the vocabulary lacks, for a warning.
func (t *WordTokenizer) Unknown(prompt string) []string {
	var out []string
	for _, w := range Words(prompt) {
		if _, ok := t.index[w]; !ok {
			out = append(out, w)
		}
	}
	return out
}

// BuildVocab returns the words of texts seen at least minCount times, most frequent
// first (ties alphabetical), at most max of them (0: no limit). The order is a
// function of the texts alone, so the same captions give the same vocabulary.
func BuildVocab(texts []string, minCount, max int) []string {
	counts := map[string]int{}
	for _, s := range texts {
		for _, w := range Words(s) {
			counts[w]++
		}
	}
	var words []string
	for w, c := range counts {
		if c >= minCount {
			words = append(words, w)
		}
	}
	sort.Slice(words, func(i, j int) bool {
		if counts[words[i]] != counts[words[j]] {
			return counts[words[i]] > counts[words[j]]
		}
		return words[i] < words[j]
	})
	if max > 0 && len(words) > max {
		words = words[:max]
	}
	return words
}
