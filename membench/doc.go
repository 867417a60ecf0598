// Package membench reproduces the memory results of "Activations Aren't Cheap in
// LoRA, Weights Are": peak training memory split into parameters, gradients, optimizer
// state, saved activations and transients, for full finetuning and each adapter form,
// on a DiT-XL/2-shaped model, an SD1.5-UNet-shaped model and a Llama-3.2-1B-shaped
// decoder, at token counts from 256 to 16384. It backs `difftune bench memory`.
//
// The decoder (RMSNorm, rotary positions, grouped-query attention, SwiGLU) is
// benchmark code that stands in for the paper's language model, not a product model.
package membench
