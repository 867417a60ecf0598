// Package vae is Stable Diffusion's image autoencoder: diffusers' (v0.27)
// AutoencoderKL. The Encoder maps an image [N, 3, H, W] in [-1, 1] to the moments
// [N, 2·latent_channels, H/f, W/f] of a diagonal Gaussian (f = 2^(levels-1), 8 for
// SD); the Decoder maps latents back to an image.
//
//	image ─conv_in─ DownEncoderBlock2D… ─ mid (resnet, attention, resnet) ─ norm, SiLU, conv_out ─ quant_conv ─▶ moments
//	z ─post_quant_conv─ conv_in ─ mid ─ UpDecoderBlock2D… ─ norm, SiLU, conv_out ─▶ image
//
// The model never applies scaling_factor (0.18215 for SD): pipelines do, and
// EncodeLatents and DecodeLatents are those pipeline conventions
// (z_model = scaling·(z_vae − shift)).
//
// Parameter names are diffusers' keys ("encoder.down_blocks.0.resnets.1.conv2.weight");
// LDMToDiffusers and DiffusersToLDM convert the original single-file names
// ("first_stage_model.encoder.down.0.block.1.conv2.weight") through one alias table.
// The mid-block attention's q, k, v and proj_out are 1×1 convolutions [C, C, 1, 1] in
// LDM files and Linear weights [C, C] here: LDMShape and DiffusersShape say how.
//
// A Config comes from a diffusers config.json (LoadConfig) or from Presets ("sd").
// New builds a model to load weights into; ParamShapes lists names and shapes without
// allocating. TiledEncode and TiledDecode process large images in overlapping tiles
// blended linearly, as diffusers' tiled_encode and tiled_decode do.
package vae
