// Package pipeline assembles a text-to-image model from its parts — a denoiser (UNet,
// DiT, PixArt), a tokenizer and text encoder, a latent codec, and a noise schedule —
// and runs it: prompts to conditioning, conditioning to images. The trainer and
// `difftune sample` both start from a Pipeline.
//
// Today it builds the tiny pixel-space pipelines (tiny-unet, tiny-dit, tiny-pixart:
// 32×32 RGB, a byte tokenizer, a 32-wide CLIP, random weights from a fixed seed) that
// tests and demos run in seconds. Real checkpoints (diffusers folders and single-file
// Stable Diffusion models) come with the VAE and the model loader.
package pipeline
