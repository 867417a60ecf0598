// Package unet is the Stable Diffusion 1.x/2.x denoiser: diffusers' (v0.27)
// UNet2DConditionModel with ResnetBlock2D, Transformer2DModel (self-attention,
// cross-attention to the text encoder's hidden states, GEGLU feed-forward),
// CrossAttnDownBlock2D/DownBlock2D, UNetMidBlock2DCrossAttn and
// CrossAttnUpBlock2D/UpBlock2D.
//
// Parameter names are diffusers' checkpoint keys ("down_blocks.0.attentions.0.
// transformer_blocks.0.attn1.to_q.weight"); LDMToDiffusers and DiffusersToLDM convert
// the original single-file names ("model.diffusion_model.input_blocks.1.1....") through
// one alias table, with block positions derived from the Config.
//
// A Config comes from a diffusers config.json (LoadConfig), from the key names and
// shapes of a checkpoint header (DetectConfig, no tensor data read), or from Presets
// (sd15, sd21, tiny-unet). New builds a model to load weights into, NewRandom one
// initialised from a seed, and ParamShapes the parameter names and shapes alone.
//
// Forward(sample, timesteps, encoderHiddenStates) returns the prediction. With
// GradientCheckpointing every resnet and transformer block is recomputed in backward
// instead of keeping its activations; BlockSaved reports, after each recorded
// forward, the activation bytes each block keeps for backward.
package unet
