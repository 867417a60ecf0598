// Package adapters attaches trainable adapters — LoRA, LoCon, DoRA, LoHa, LoKr, IA3 —
// to the Linear and Conv2d layers of a model, in one of three forms:
//
//   - activation: what PEFT and LyCORIS do, y = base(x) + adapter(dropout(x)); it saves
//     the adapter's activations (the dropout output and its mask per adapter, H = x̃·Aᵀ).
//   - weight: W′ = f(W, θ) is merged inside the op and only x is saved, shared by every
//     adapter that reads the same x (q, k, v). Input dropout cannot be written as a
//     weight change, so this form refuses dropout > 0.
//   - auto (the default): for LoRA on a Linear, the merged forward with the rank-r
//     backward when the token count N exceeds d_in·d_out/(d_in+d_out), the rank-r path
//     with H recomputed otherwise (and whenever input dropout is on, the mask
//     regenerated from a seed); for LoCon, the rank-r branch under Checkpoint; both
//     save x only. Other kinds merge as the weight form does, or with dropout compute
//     as the activation form.
//
// See "Activations Aren't Cheap in LoRA, Weights Are" and DESIGN.md for the algebra
// and the saved-byte formulas the tests check exactly.
//
// Adapters are saved in the kohya format ComfyUI, A1111/Forge and diffusers load
// (lora_unet_<module path with _>.lora_down.weight ...), or in PEFT/diffusers naming.
package adapters
