// Package tensor holds difftune's numeric core: float32 N-d row-major tensors on a
// Device, a per-device allocator that counts live, peak and saved bytes exactly, the
// kernels (GEMM, convolution, fused attention, norms, activations), and a small
// reverse-mode autograd in the style of micrograd.
//
// # Storage and release
//
// Every tensor's storage comes from its device's allocator. A *Tensor holds one
// reference to its storage; views (Reshape of contiguous data, Slice along the first
// axis) take another. Release drops the tensor's reference; the storage returns to the
// device's pool when the last reference goes. Nothing is left to the garbage collector
// for accounting: a tensor that is never released stays counted as live, which the
// tests use to find leaks.
//
// # Autograd
//
// An op whose inputs require gradients records a node: its inputs, the tensors it saved
// for backward, and a backward closure that accumulates into the inputs' gradients.
// Each op saves only what the gradients that are actually needed require: a matmul
// with a frozen B does not keep A. Saved tensors are retained until Backward has used
// them (or DropGraph is called). MemStats.Saved counts every saved activation storage
// once, however many ops keep it; leaf tensors (parameters, data) are resident anyway
// and are not counted. Backward(loss) walks the graph in reverse topological order,
// frees each node's saved tensors and intermediate gradients as soon as they are used,
// and leaves gradients only on leaves that require them (Grad).
//
// NoGrad runs a function without recording anything; Checkpoint runs a function without
// saving its internals and recomputes it during backward.
//
// Ops panic on shape misuse with a message naming the op and both shapes; they never
// return errors, since their inputs come from code, not from users.
package tensor
