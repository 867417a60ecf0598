package textenc

// ByteTokenizer is the tiny pipelines' tokenizer: each UTF-8 byte of the prompt is a
// token (ids 0..255), wrapped in start (256) and end (257) tokens, truncated so the end
// token always fits, and padded to Length with the end token as SD1's CLIP pads. It
// needs no vocabulary file.
type ByteTokenizer struct {
	Length int // tokens per sequence, start and end included
}

// Byte tokenizer ids beyond the 256 byte values.
const (
	ByteStart     = 256
	ByteEnd       = 257
	ByteVocabSize = 258
)

// Encode tokenizes each prompt to exactly Length ids. It panics if Length < 2.
func (b ByteTokenizer) Encode(prompts []string) [][]int {
	if b.Length < 2 {
		panic("textenc.ByteTokenizer: Length < 2 leaves no room for start and end tokens")
	}
	out := make([][]int, len(prompts))
	for i, p := range prompts {
		ids := make([]int, 0, b.Length)
		ids = append(ids, ByteStart)
		for j := 0; j < len(p) && len(ids) < b.Length-1; j++ {
			ids = append(ids, int(p[j]))
		}
		for len(ids) < b.Length {
			ids = append(ids, ByteEnd)
		}
		out[i] = ids
	}
	return out
}

// TinyCLIPConfig is the text encoder of the tiny pipelines: the CLIP architecture at a
// width of 32, over the byte tokenizer's vocabulary and 32 positions.
func TinyCLIPConfig() CLIPConfig {
	return CLIPConfig{VocabSize: ByteVocabSize, HiddenSize: 32, IntermediateSize: 64, NumHiddenLayers: 2,
		NumAttentionHeads: 2, MaxPositionEmbeddings: 32, HiddenAct: "quick_gelu", LayerNormEps: 1e-5, EOSTokenID: ByteEnd}
}
