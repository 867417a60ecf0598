// Package pipeline assembles a text-to-image model from its parts — a denoiser (UNet,
// DiT, PixArt), a tokenizer and text encoder, a latent codec, and a noise schedule —
// and runs it: prompts to conditioning, conditioning to images. The trainer and
// `difftune sample` both start from a Pipeline.
//
// Load builds the tiny pixel-space presets (tiny-unet, tiny-dit, tiny-pixart: 32×32
// RGB, a byte tokenizer, a 32-wide CLIP, random weights from a fixed seed) that tests
// and demos run in seconds, and loads Stable Diffusion 1.x/2.x checkpoints: diffusers
// folders and single .safetensors files in the original LDM naming, whose
// architecture is detected from key names and shapes (Describe reads headers only).
// Those pipelines work in the VAE's latent space (EncodeImages, DecodeLatents) with
// CLIP conditioning and the model's noise schedule. SDXL, SD3, Flux and inpainting
// checkpoints are recognised and refused by name.
package pipeline
