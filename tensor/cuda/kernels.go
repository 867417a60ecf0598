package cuda

// kernelPTX is the PTX of kernels/*.cu; empty until the kernels land.
var kernelPTX []byte

// kernelParams is each kernel's parameter count, as the Go side launches it.
var kernelParams = map[string]int{}
