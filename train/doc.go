// Package train holds the training loop's parts: the AdamW optimizer, and the
// single-step benchmark that `difftune bench step` runs (DDPM noising, forward, MSE,
// backward, AdamW, with the forward/backward/optimizer split and peak memory).
package train
