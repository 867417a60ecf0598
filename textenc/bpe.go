package textenc

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// CLIP's special tokens.
const (
	clipStart = "<|startoftext|>"
	clipEnd   = "<|endoftext|>"
)

// CLIPTokenizer is CLIP's byte-level BPE tokenizer (openai SimpleTokenizer and Hugging
// Face CLIPTokenizer agree on it): text cleanup, lower-casing, a pre-tokenizing regexp,
// byte-to-unicode mapping, and byte-pair merges by rank, words ending in "</w>".
type CLIPTokenizer struct {
	vocab map[string]int
	ranks map[[2]string]int
	start int
	end   int
	// Length is the sequence length Encode produces (77 for Stable Diffusion).
	Length int
	// PadID pads sequences after the end token: the end token itself for SD1 (and
	// Hugging Face's CLIPTokenizer), 0 for openai's clip.tokenize.
	PadID int
	cache map[string][]int
}

// clipPattern is CLIP's pre-tokenizer, applied to cleaned, lower-cased text.
var clipPattern = regexp.MustCompile(`<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`)

// LoadCLIPTokenizer reads a tokenizer from dir: vocab.json and merges.txt (the Hugging
// Face layout of an SD model's tokenizer/ folder), or bpe_simple_vocab_16e6.txt.gz
// (openai CLIP). Errors name the files and say where they come from.
func LoadCLIPTokenizer(dir string) (*CLIPTokenizer, error) {
	vocabPath, mergesPath := filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt")
	if _, err := os.Stat(vocabPath); err == nil {
		t, err := loadHF(vocabPath, mergesPath)
		if err != nil {
			return nil, err
		}
		return t, t.readPad(filepath.Join(dir, "special_tokens_map.json"))
	}
	gz := filepath.Join(dir, "bpe_simple_vocab_16e6.txt.gz")
	if _, err := os.Stat(gz); err == nil {
		return loadOpenAI(gz)
	}
	return nil, fmt.Errorf("tokenizer folder %s has neither vocab.json + merges.txt nor bpe_simple_vocab_16e6.txt.gz; "+
		"copy the tokenizer/ folder of the model's diffusers release (e.g. stable-diffusion-v1-5/tokenizer) there, or pass --tokenizer DIR", dir)
}

// readPad sets PadID from the pad_token of a Hugging Face special_tokens_map.json
// ("<|endoftext|>" for SD 1.x, "!" for SD 2.x's OpenCLIP tokenizer). A missing file
// leaves the end token.
func (t *CLIPTokenizer) readPad(path string) error {
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("read tokenizer special tokens: %w", err)
	}
	var m struct {
		Pad json.RawMessage `json:"pad_token"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(m.Pad) == 0 || string(m.Pad) == "null" {
		return nil
	}
	var pad string
	if json.Unmarshal(m.Pad, &pad) != nil {
		var obj struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(m.Pad, &obj); err != nil {
			return fmt.Errorf("%s: pad_token %s is neither a string nor {\"content\": ...}", path, m.Pad)
		}
		pad = obj.Content
	}
	id, ok := t.vocab[pad]
	if !ok {
		return fmt.Errorf("%s: pad_token %q is not in the vocabulary", path, pad)
	}
	t.PadID = id
	return nil
}

func loadHF(vocabPath, mergesPath string) (*CLIPTokenizer, error) {
	raw, err := os.ReadFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("read tokenizer vocabulary: %w", err)
	}
	vocab := map[string]int{}
	if err := json.Unmarshal(raw, &vocab); err != nil {
		return nil, fmt.Errorf("%s: %w (want a JSON object of token -> id)", vocabPath, err)
	}
	f, err := os.Open(mergesPath)
	if err != nil {
		return nil, fmt.Errorf("read tokenizer merges (%s goes with %s): %w", mergesPath, vocabPath, err)
	}
	defer f.Close()
	var merges [][2]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if line == 1 && strings.HasPrefix(text, "#version") || text == "" {
			continue
		}
		a, b, ok := strings.Cut(text, " ")
		if !ok {
			return nil, fmt.Errorf("%s:%d: %q is not a merge \"a b\"", mergesPath, line, text)
		}
		merges = append(merges, [2]string{a, b})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", mergesPath, err)
	}
	return newCLIPTokenizer(vocab, merges, vocabPath)
}

// loadOpenAI derives the vocabulary as SimpleTokenizer does: the 256 byte symbols, the
// same with "</w>", every merge joined, then the two special tokens.
func loadOpenAI(path string) (*CLIPTokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read tokenizer: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (want the gzip file openai CLIP ships)", path, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	lines := strings.Split(string(raw), "\n")
	const n = 49152 - 256 - 2 // SimpleTokenizer's merges = lines[1 : 49152-256-2+1]
	if len(lines) < n+1 {
		return nil, fmt.Errorf("%s: %d lines, want at least %d merges", path, len(lines), n)
	}
	var merges [][2]string
	for _, l := range lines[1 : n+1] {
		a, b, _ := strings.Cut(l, " ")
		merges = append(merges, [2]string{a, b})
	}
	var list []string
	for _, b := range byteOrder {
		list = append(list, byteTable[b])
	}
	for _, b := range byteOrder {
		list = append(list, byteTable[b]+"</w>")
	}
	for _, m := range merges {
		list = append(list, m[0]+m[1])
	}
	list = append(list, clipStart, clipEnd)
	vocab := make(map[string]int, len(list))
	for i, s := range list {
		vocab[s] = i
	}
	return newCLIPTokenizer(vocab, merges, path)
}

func newCLIPTokenizer(vocab map[string]int, merges [][2]string, source string) (*CLIPTokenizer, error) {
	t := &CLIPTokenizer{vocab: vocab, ranks: make(map[[2]string]int, len(merges)), Length: 77, cache: map[string][]int{}}
	for i, m := range merges {
		if _, dup := t.ranks[m]; !dup {
			t.ranks[m] = i
		}
	}
	var ok1, ok2 bool
	t.start, ok1 = vocab[clipStart]
	t.end, ok2 = vocab[clipEnd]
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%s: the vocabulary lacks %s or %s; is this a CLIP tokenizer?", source, clipStart, clipEnd)
	}
	t.PadID = t.end
	return t, nil
}

// byteSymbols returns GPT-2's reversible byte -> printable symbol table and the bytes
// in vocabulary order: printable bytes map to themselves and come first, the others
// map to runes from U+0100 on, in byte order.
func byteSymbols() (sym [256]string, order []byte) {
	printable := func(b int) bool { return b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF }
	for b := 0; b < 256; b++ {
		if printable(b) {
			sym[b] = string(rune(b))
			order = append(order, byte(b))
		}
	}
	next := 256
	for b := 0; b < 256; b++ {
		if !printable(b) {
			sym[b] = string(rune(next))
			order = append(order, byte(b))
			next++
		}
	}
	return sym, order
}

var byteTable, byteOrder = byteSymbols()

// clean is CLIP's text cleanup: NFC (ftfy's effect on ordinary text), HTML unescaped
// twice, whitespace runs collapsed, trimmed, lower-cased.
func clean(s string) string {
	s = norm.NFC.String(s)
	s = html.UnescapeString(html.UnescapeString(s))
	s = strings.Join(strings.Fields(s), " ")
	return strings.ToLower(s)
}

// Tokens returns the BPE ids of text without start, end or padding.
func (t *CLIPTokenizer) Tokens(text string) []int {
	var ids []int
	for _, word := range clipPattern.FindAllString(clean(text), -1) {
		if id, ok := t.vocab[word]; ok && (word == clipStart || word == clipEnd) {
			ids = append(ids, id)
			continue
		}
		if cached, ok := t.cache[word]; ok {
			ids = append(ids, cached...)
			continue
		}
		var wid []int
		for _, sym := range t.bpe(word) {
			if id, ok := t.vocab[sym]; ok {
				wid = append(wid, id)
			}
		}
		if len(t.cache) < 1<<16 {
			t.cache[word] = wid
		}
		ids = append(ids, wid...)
	}
	return ids
}

// bpe splits one pre-token into merged symbols.
func (t *CLIPTokenizer) bpe(word string) []string {
	var syms []string
	for i := 0; i < len(word); i++ {
		syms = append(syms, byteTable[word[i]])
	}
	if len(syms) == 0 {
		return nil
	}
	syms[len(syms)-1] += "</w>"
	for len(syms) > 1 {
		best, at := -1, -1
		for i := 0; i+1 < len(syms); i++ {
			if r, ok := t.ranks[[2]string{syms[i], syms[i+1]}]; ok && (best < 0 || r < best) {
				best, at = r, i
			}
		}
		if at < 0 {
			break
		}
		pair := [2]string{syms[at], syms[at+1]}
		var merged []string
		for i := 0; i < len(syms); i++ {
			if i+1 < len(syms) && syms[i] == pair[0] && syms[i+1] == pair[1] {
				merged = append(merged, pair[0]+pair[1])
				i++
				continue
			}
			merged = append(merged, syms[i])
		}
		syms = merged
	}
	return syms
}

// Encode tokenizes each prompt to exactly Length ids: start token, BPE ids, end token,
// truncated to Length with the end token kept last, then padded with PadID. It also
// reports which prompts were truncated.
func (t *CLIPTokenizer) Encode(prompts []string) (ids [][]int, truncated []bool) {
	for _, p := range prompts {
		seq := append([]int{t.start}, t.Tokens(p)...)
		seq = append(seq, t.end)
		cut := len(seq) > t.Length
		if cut {
			seq = seq[:t.Length]
			seq[t.Length-1] = t.end
		}
		for len(seq) < t.Length {
			seq = append(seq, t.PadID)
		}
		ids = append(ids, seq)
		truncated = append(truncated, cut)
	}
	return ids, truncated
}
