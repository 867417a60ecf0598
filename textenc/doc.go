// Package textenc turns prompts into the conditioning the denoisers read: the CLIP
// text transformer (Hugging Face CLIPTextModel names, "text_model.*"), and a byte-level
// tokenizer that needs no vocabulary file, used by the tiny test pipelines.
//
// The CLIP byte-pair tokenizer that reads vocab.json and merges.txt, and the single-file
// (openai / LDM) names, come with real checkpoints in a later change.
package textenc
