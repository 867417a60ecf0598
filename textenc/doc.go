// Package textenc turns prompts into the conditioning the denoisers read: the CLIP
// text transformer (Hugging Face CLIPTextModel names, "text_model.*"), and a byte-level
// tokenizer that needs no vocabulary file, used by the tiny test pipelines.
//
// CLIPTokenizer is CLIP's byte-pair tokenizer (vocab.json + merges.txt, or openai's
// bpe gzip file). Single-file Stable Diffusion checkpoints name the text encoder
// under LDMPrefix (SD 1.x: Hugging Face names follow) or OpenCLIPPrefix (SD 2.x:
// OpenCLIPToHF maps the names, splitting the fused in_proj), and DetectCLIPConfig
// reads the architecture from the shapes.
package textenc
