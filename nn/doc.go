// Package nn holds the layers the denoisers are built from — Linear, Conv2d,
// GroupNorm, LayerNorm, Embedding, diffusers-style Attention, FeedForward,
// ResnetBlock2D and Upsample2D (shared by the UNet and the VAE), and the
// sinusoidal timestep embedding — and the state-dict load and save that map their
// parameters to checkpoint keys.
//
// A layer registers each parameter under the exact key fragment the checkpoints use
// ("weight", "to_out.0.bias"), so Params(prefix) yields the checkpoint keys and loading
// is a lookup and a shape check. Models that also load original LDM single-file
// checkpoints declare one Alias table each; PlaceAliases and ModulePaths do the
// renaming.
//
// A Builder makes these layers for a model's constructor in one of three modes —
// placeholders to load into, PyTorch's random initialisation, or shapes alone — so
// one construction serves New, NewRandom and ParamShapes.
//
// Forward methods return a new tensor and release their own intermediates; the caller
// owns (and releases) what they return.
package nn
