// Package dit holds difftune's transformer denoisers: DiT (Peebles & Xie, as
// facebookresearch/DiT builds it) and PixArt-α (as diffusers v0.27.2's
// Transformer2DModel with norm_type "ada_norm_single" builds it).
//
// Parameter names are the checkpoint keys: DiT's own (x_embedder.proj,
// blocks.N.adaLN_modulation.1, final_layer.linear, ...) and diffusers' for PixArt-α
// (pos_embed.proj, adaln_single.linear, transformer_blocks.N.attn1.to_q, ...), so a
// checkpoint loads with Load (a lookup and a shape check per key) and adapters target
// layers by those names.
//
// Configs come from LoadConfig (DiT's constructor arguments as JSON, or a diffusers
// config.json), from DetectConfig (tensor names and shapes of a checkpoint header,
// plus its "config" metadata when present), or from Presets. New, NewDiT and NewPixArt
// build a randomly initialised model.
//
// Both models can run every block under gradient checkpointing (the Checkpoint field, tensor.Checkpoint) and
// record the bytes each block leaves saved for backward (SavedPerBlock).
//
// PixArt-α 1024 px conditions on each sample's resolution and aspect ratio
// (diffusers' use_additional_conditions): those embedders are built and Forward takes
// them as a SizeCond; models without them ignore it, as diffusers does.
//
// Forward of both models follows the tensor package's ownership rule: inputs are not
// consumed, every intermediate is released before returning, and the caller releases
// the output.
package dit
