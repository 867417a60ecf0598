// Package cuda is difftune's NVIDIA GPU device. It binds the CUDA driver API
// (libcuda.so.1) at run time through purego, so the same binary builds without cgo,
// CUDA headers or CUDA libraries, and runs on the CPU where no driver is installed.
//
// The package has four parts, one file each:
//
//   - driver.go binds the driver API: initialisation, devices, contexts, memory,
//     copies, streams, modules and kernel launches. Every failure names the call and
//     its CUresult (errors.go).
//   - alloc.go is a caching allocator (size-class free lists, as PyTorch's) with the
//     same exact MemStats accounting as the CPU device.
//   - device.go ties them together as a tensor.Device with the embedded kernels
//     (kernels/*.cu compiled to PTX by kernels/build.sh; kernels.go launches them).
//   - cublas.go optionally binds cuBLAS and cuBLASLt when they are installed.
//
// Select parses the --device flag (auto, cpu, cuda, cuda:N).
//
// The tensor package's ops do not dispatch to this device yet: it allocates, copies
// and launches kernels on its own buffers.
package cuda

//go:generate sh kernels/build.sh
