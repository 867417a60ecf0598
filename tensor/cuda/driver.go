package cuda

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// driverLibrary is the CUDA driver's soname; the driver package installs it, the
// CUDA toolkit is not needed.
const driverLibrary = "libcuda.so.1"

// Attributes of cuDeviceGetAttribute (CUdevice_attribute in cuda.h).
const (
	attrMultiprocessorCount     = 16
	attrComputeCapabilityMajor  = 75
	attrComputeCapabilityMinor  = 76
	attrMaxSharedPerBlockOptin  = 97
	funcAttrMaxDynamicSharedMem = 8 // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
)

// JIT options of cuModuleLoadDataEx (CUjit_option in cuda.h).
const (
	jitInfoLogBuffer      = 3
	jitInfoLogBufferSize  = 4
	jitErrorLogBuffer     = 5
	jitErrorLogBufferSize = 6
	jitLogVerbose         = 12
)

// driver holds the bound driver API. CUdevice is an int, CUdeviceptr a 64-bit
// integer, and contexts, streams, modules and functions are opaque pointers, kept as
// uintptr since Go never dereferences them.
type driver struct {
	lib *library

	cuInit                    func(flags uint32) Result
	cuDriverGetVersion        func(v *int32) Result
	cuGetErrorName            func(r Result, s **byte) Result
	cuGetErrorString          func(r Result, s **byte) Result
	cuDeviceGetCount          func(n *int32) Result
	cuDeviceGet               func(dev *int32, ordinal int32) Result
	cuDeviceGetName           func(name *byte, n int32, dev int32) Result
	cuDeviceTotalMem          func(bytes *uint64, dev int32) Result
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) Result
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) Result
	cuDevicePrimaryCtxRelease func(dev int32) Result
	cuCtxCreate               func(ctx *uintptr, flags uint32, dev int32) Result
	cuCtxDestroy              func(ctx uintptr) Result
	cuCtxSetCurrent           func(ctx uintptr) Result
	cuCtxSynchronize          func() Result
	cuMemAlloc                func(p *uint64, bytes uint64) Result
	cuMemFree                 func(p uint64) Result
	cuMemGetInfo              func(free, total *uint64) Result
	cuMemcpyHtoD              func(dst uint64, src unsafe.Pointer, n uint64) Result
	cuMemcpyDtoH              func(dst unsafe.Pointer, src uint64, n uint64) Result
	cuMemcpyDtoD              func(dst, src uint64, n uint64) Result
	cuMemcpyHtoDAsync         func(dst uint64, src unsafe.Pointer, n uint64, s uintptr) Result
	cuMemcpyDtoHAsync         func(dst unsafe.Pointer, src uint64, n uint64, s uintptr) Result
	cuMemcpyDtoDAsync         func(dst, src uint64, n uint64, s uintptr) Result
	cuMemsetD8Async           func(dst uint64, v uint8, n uint64, s uintptr) Result
	cuStreamCreate            func(s *uintptr, flags uint32) Result
	cuStreamDestroy           func(s uintptr) Result
	cuStreamSynchronize       func(s uintptr) Result
	cuModuleLoadDataEx        func(m *uintptr, image *byte, nopt uint32, opts *int32, vals *uintptr) Result
	cuModuleUnload            func(m uintptr) Result
	cuModuleGetFunction       func(f *uintptr, m uintptr, name *byte) Result
	cuFuncSetAttribute        func(f uintptr, attr int32, v int32) Result
	cuLaunchKernel            func(f uintptr, gx, gy, gz, bx, by, bz, smem uint32, s uintptr, params *uintptr, extra *uintptr) Result
	cuEventCreate             func(e *uintptr, flags uint32) Result
	cuEventRecord             func(e uintptr, s uintptr) Result
	cuEventSynchronize        func(e uintptr) Result
	cuEventElapsedTime        func(ms *float32, start, end uintptr) Result
	cuEventDestroy            func(e uintptr) Result
}

// bindings lists the symbols; the _v2 names are the ABI every driver since CUDA
// 4.0/11.0 exports for these calls.
func (d *driver) bindings() []binding {
	return []binding{
		{&d.cuInit, "cuInit", false},
		{&d.cuDriverGetVersion, "cuDriverGetVersion", false},
		{&d.cuGetErrorName, "cuGetErrorName", false},
		{&d.cuGetErrorString, "cuGetErrorString", false},
		{&d.cuDeviceGetCount, "cuDeviceGetCount", false},
		{&d.cuDeviceGet, "cuDeviceGet", false},
		{&d.cuDeviceGetName, "cuDeviceGetName", false},
		{&d.cuDeviceTotalMem, "cuDeviceTotalMem_v2", false},
		{&d.cuDeviceGetAttribute, "cuDeviceGetAttribute", false},
		{&d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", false},
		{&d.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", false},
		{&d.cuCtxCreate, "cuCtxCreate_v2", true},
		{&d.cuCtxDestroy, "cuCtxDestroy_v2", true},
		{&d.cuCtxSetCurrent, "cuCtxSetCurrent", false},
		{&d.cuCtxSynchronize, "cuCtxSynchronize", false},
		{&d.cuMemAlloc, "cuMemAlloc_v2", false},
		{&d.cuMemFree, "cuMemFree_v2", false},
		{&d.cuMemGetInfo, "cuMemGetInfo_v2", false},
		{&d.cuMemcpyHtoD, "cuMemcpyHtoD_v2", false},
		{&d.cuMemcpyDtoH, "cuMemcpyDtoH_v2", false},
		{&d.cuMemcpyDtoD, "cuMemcpyDtoD_v2", false},
		{&d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", false},
		{&d.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", false},
		{&d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", false},
		{&d.cuMemsetD8Async, "cuMemsetD8Async", false},
		{&d.cuStreamCreate, "cuStreamCreate", false},
		{&d.cuStreamDestroy, "cuStreamDestroy_v2", false},
		{&d.cuStreamSynchronize, "cuStreamSynchronize", false},
		{&d.cuModuleLoadDataEx, "cuModuleLoadDataEx", false},
		{&d.cuModuleUnload, "cuModuleUnload", false},
		{&d.cuModuleGetFunction, "cuModuleGetFunction", false},
		{&d.cuFuncSetAttribute, "cuFuncSetAttribute", false},
		{&d.cuLaunchKernel, "cuLaunchKernel", false},
		{&d.cuEventCreate, "cuEventCreate", false},
		{&d.cuEventRecord, "cuEventRecord", false},
		{&d.cuEventSynchronize, "cuEventSynchronize", false},
		{&d.cuEventElapsedTime, "cuEventElapsedTime", false},
		{&d.cuEventDestroy, "cuEventDestroy_v2", false},
	}
}

var (
	driverOnce sync.Once
	driverVal  *driver
	driverErr  error
)

// loadDriver opens and initialises the driver once per process.
func loadDriver() (*driver, error) {
	driverOnce.Do(func() { driverVal, driverErr = openDriver(driverLibrary) })
	return driverVal, driverErr
}

// openDriver opens the driver library name, binds it and calls cuInit.
func openDriver(name string) (*driver, error) {
	lib, err := openLibrary(name)
	if err != nil {
		return nil, fmt.Errorf("no NVIDIA driver: %s not found (%v); use --device cpu", name, err)
	}
	d := &driver{lib: lib}
	if err := lib.bind(d.bindings()); err != nil {
		return nil, fmt.Errorf("NVIDIA driver unusable: %v; update the driver or use --device cpu", err)
	}
	if err := d.check("cuInit", d.cuInit(0)); err != nil {
		return nil, fmt.Errorf("%w; is a GPU visible (nvidia-smi, CUDA_VISIBLE_DEVICES)? else use --device cpu", err)
	}
	return d, nil
}

// check turns r into nil or an *Error naming call.
func (d *driver) check(call string, r Result) error {
	if r == Success {
		return nil
	}
	return newError(call, r, d.name)
}

// name asks the driver for r's name and description.
func (d *driver) name(r Result) (name, desc string) {
	var n, s *byte
	if d.cuGetErrorName(r, &n) == Success {
		name = goString(n)
	}
	if d.cuGetErrorString(r, &s) == Success {
		desc = goString(s)
	}
	return name, desc
}

// goString copies a NUL-terminated C string.
func goString(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for i := 0; ; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(p), i))
		if c == 0 {
			return string(b)
		}
		b = append(b, c)
	}
}

// cString returns s as a NUL-terminated byte slice.
func cString(s string) []byte { return append([]byte(s), 0) }

// DeviceInfo describes one GPU.
type DeviceInfo struct {
	Ordinal        int
	Name           string
	TotalMem       int64
	Major, Minor   int // compute capability
	SMs            int
	SharedPerBlock int // the opt-in maximum of dynamic shared memory per block
	DriverVersion  int // e.g. 12040 for CUDA 12.4
}

// deviceCount returns the number of GPUs the driver sees.
func (d *driver) deviceCount() (int, error) {
	var n int32
	if err := d.check("cuDeviceGetCount", d.cuDeviceGetCount(&n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// info queries ordinal's name, memory and compute capability.
func (d *driver) info(ordinal int) (DeviceInfo, int32, error) {
	inf := DeviceInfo{Ordinal: ordinal}
	var dev, v int32
	if err := d.check("cuDeviceGet", d.cuDeviceGet(&dev, int32(ordinal))); err != nil {
		return inf, 0, err
	}
	name := make([]byte, 256)
	if err := d.check("cuDeviceGetName", d.cuDeviceGetName(&name[0], int32(len(name)), dev)); err != nil {
		return inf, 0, err
	}
	inf.Name = goString(&name[0])
	var mem uint64
	if err := d.check("cuDeviceTotalMem_v2", d.cuDeviceTotalMem(&mem, dev)); err != nil {
		return inf, 0, err
	}
	inf.TotalMem = int64(mem)
	for _, a := range []struct {
		attr int32
		dst  *int
	}{{attrComputeCapabilityMajor, &inf.Major}, {attrComputeCapabilityMinor, &inf.Minor},
		{attrMultiprocessorCount, &inf.SMs}, {attrMaxSharedPerBlockOptin, &inf.SharedPerBlock}} {
		if err := d.check("cuDeviceGetAttribute", d.cuDeviceGetAttribute(&v, a.attr, dev)); err != nil {
			return inf, 0, err
		}
		*a.dst = int(v)
	}
	if err := d.check("cuDriverGetVersion", d.cuDriverGetVersion(&v)); err != nil {
		return inf, 0, err
	}
	inf.DriverVersion = int(v)
	return inf, dev, nil
}

// loadModule JIT-compiles PTX image, returning the module or an error that carries
// the JIT's error and info logs.
func (d *driver) loadModule(image []byte) (uintptr, error) {
	const logSize = 1 << 14
	info, elog := make([]byte, logSize), make([]byte, logSize)
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&info[0])
	pin.Pin(&elog[0])
	opts := []int32{jitInfoLogBuffer, jitInfoLogBufferSize, jitErrorLogBuffer, jitErrorLogBufferSize, jitLogVerbose}
	// The size options are passed by value in the pointer slot and overwritten with
	// the bytes written.
	vals := []uintptr{uintptr(unsafe.Pointer(&info[0])), logSize, uintptr(unsafe.Pointer(&elog[0])), logSize, 1}
	img := append(append([]byte(nil), image...), 0)
	var m uintptr
	r := d.cuModuleLoadDataEx(&m, &img[0], uint32(len(opts)), &opts[0], &vals[0])
	if r != Success {
		e := newError("cuModuleLoadDataEx", r, d.name)
		e.Detail = jitLog("JIT error log", elog, vals[3]) + jitLog("JIT info log", info, vals[1])
		return 0, e
	}
	return m, nil
}

// jitLog formats the first n bytes of a JIT log buffer, or nothing when empty.
func jitLog(what string, buf []byte, n uintptr) string {
	n = min(n, uintptr(len(buf)))
	s := goString(&buf[0])
	if uintptr(len(s)) > n {
		s = s[:n]
	}
	if s == "" {
		return ""
	}
	return what + ":\n" + s + "\n"
}

// function looks up a kernel in a module.
func (d *driver) function(m uintptr, name string) (uintptr, error) {
	var f uintptr
	n := cString(name)
	if err := d.check("cuModuleGetFunction("+name+")", d.cuModuleGetFunction(&f, m, &n[0])); err != nil {
		return 0, err
	}
	return f, nil
}

// launch runs kernel f on stream s. args are the kernel's parameters in order:
// uint64 (a device pointer), int32, uint32 or float32; each is passed by address, as
// cuLaunchKernel's kernelParams wants.
func (d *driver) launch(name string, f uintptr, grid, block [3]uint32, smem uint32, s uintptr, args []any) error {
	slots := make([]uint64, max(len(args), 1))
	for i, a := range args {
		switch v := a.(type) {
		case uint64:
			slots[i] = v
		case int32:
			*(*int32)(unsafe.Pointer(&slots[i])) = v
		case uint32:
			*(*uint32)(unsafe.Pointer(&slots[i])) = v
		case float32:
			*(*float32)(unsafe.Pointer(&slots[i])) = v
		default:
			panic(fmt.Sprintf("cuda: kernel %s argument %d has type %T (want uint64, int32, uint32 or float32)", name, i, a))
		}
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&slots[0])
	ptrs := make([]uintptr, len(slots))
	for i := range slots {
		ptrs[i] = uintptr(unsafe.Pointer(&slots[i]))
	}
	r := d.cuLaunchKernel(f, grid[0], grid[1], grid[2], block[0], block[1], block[2], smem, s, &ptrs[0], nil)
	return d.check("cuLaunchKernel("+name+")", r)
}
