package cuda

import (
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/difftune/difftune/tensor"
)

// Device is one GPU: its primary context, a stream every copy and launch is ordered
// on, a caching allocator, and the loaded kernels. It implements tensor.Device.
// A Device is safe for concurrent use; work is ordered on its one stream.
type Device struct {
	drv    *driver
	info   DeviceInfo
	dev    int32
	ctx    uintptr
	stream uintptr
	alloc  *Allocator

	mu      sync.Mutex
	modules map[string]uintptr // PTX file → loaded module
	funcs   map[string]uintptr
	closed  bool
}

var _ tensor.Device = (*Device)(nil)

// Available reports whether a CUDA driver answers with at least one GPU; the error
// says why not and what to do.
func Available() error {
	_, err := Count()
	return err
}

// Count returns the number of GPUs, or an error when there is no usable driver or
// no GPU.
func Count() (int, error) {
	d, err := loadDriver()
	if err != nil {
		return 0, err
	}
	n, err := d.deviceCount()
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("no CUDA device: the NVIDIA driver sees no GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES); use --device cpu")
	}
	return n, nil
}

// Open retains GPU ordinal's primary context, creates a stream and loads the
// embedded kernels. It fails when there is no driver, the ordinal is out of range,
// or the kernels do not JIT-compile for the GPU (the error carries the JIT log).
func Open(ordinal int) (*Device, error) {
	n, err := Count()
	if err != nil {
		return nil, err
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("cuda:%d: no such GPU (this machine has %d: cuda:0 to cuda:%d)", ordinal, n, n-1)
	}
	drv, _ := loadDriver()
	info, dev, err := drv.info(ordinal)
	if err != nil {
		return nil, err
	}
	if info.Major < 8 {
		return nil, fmt.Errorf("cuda:%d (%s) has compute capability %d.%d; difftune's kernels need 8.0 or newer (A100, RTX 30xx, H100); use --device cpu", ordinal, info.Name, info.Major, info.Minor)
	}
	d := &Device{drv: drv, info: info, dev: dev, modules: map[string]uintptr{}, funcs: map[string]uintptr{}}
	if err := drv.check("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain(&d.ctx, dev)); err != nil {
		return nil, err
	}
	d.alloc = newAllocator(driverBackend{d}, 8<<30)
	err = d.do(func() error {
		if err := drv.check("cuStreamCreate", drv.cuStreamCreate(&d.stream, 0)); err != nil {
			return err
		}
		names, text := ptxModules()
		for _, n := range names {
			m, err := drv.loadModule([]byte(text[n]))
			if err != nil {
				return fmt.Errorf("load kernels/%s: %w", n, err)
			}
			d.modules[n] = m
		}
		return nil
	})
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("cuda:%d (%s): %w", ordinal, info.Name, err)
	}
	return d, nil
}

// do runs fs in order, stopping at the first error, on a locked OS thread with the device's context current, as every
// driver call needs.
func (d *Device) do(fs ...func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.drv.check("cuCtxSetCurrent", d.drv.cuCtxSetCurrent(d.ctx)); err != nil {
		return err
	}
	for _, f := range fs {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// Name returns "cuda:N".
func (d *Device) Name() string { return fmt.Sprintf("cuda:%d", d.info.Ordinal) }

// Info describes the GPU.
func (d *Device) Info() DeviceInfo { return d.info }

// Stats returns the allocator's memory counters.
func (d *Device) Stats() tensor.MemStats { return d.alloc.Stats() }

// ResetPeak sets the peak counters to the current values.
func (d *Device) ResetPeak() { d.alloc.ResetPeak() }

// Allocator returns the device's caching allocator.
func (d *Device) Allocator() *Allocator { return d.alloc }

// Alloc returns device memory for bytes, from the cache when it can. The contents
// are unspecified.
func (d *Device) Alloc(bytes int64) (Buffer, error) { return d.alloc.Alloc(bytes) }

// Free returns b to the cache. Work on the stream that still reads b is ordered
// before any later use of the block, since everything runs on one stream.
func (d *Device) Free(b Buffer) error { return d.alloc.Free(b) }

// Zero sets b's bytes to zero, asynchronously on the stream.
func (d *Device) Zero(b Buffer) error {
	return d.do(func() error {
		return d.drv.check("cuMemsetD8Async", d.drv.cuMemsetD8Async(b.Ptr, 0, uint64(b.Bytes), d.stream))
	})
}

// checkCopy panics when a copy of n bytes does not fit buffer b.
func checkCopy(op string, b Buffer, n int64) {
	if n > b.Bytes {
		panic(fmt.Sprintf("cuda.%s: %d bytes for a %d-byte buffer", op, n, b.Bytes))
	}
}

// Upload copies src into dst and waits for the copy (src is pageable Go memory).
// It panics when src is larger than dst.
func Upload[T float32 | uint16 | int32](d *Device, dst Buffer, src []T) error {
	if len(src) == 0 {
		return nil
	}
	n := int64(len(src)) * int64(unsafe.Sizeof(src[0]))
	checkCopy("Upload", dst, n)
	return d.do(func() error {
		return d.drv.check("cuMemcpyHtoDAsync_v2", d.drv.cuMemcpyHtoDAsync(dst.Ptr, unsafe.Pointer(&src[0]), uint64(n), d.stream))
	}, d.sync)
}

// Download copies the start of src into dst once the stream's earlier work is done.
// It panics when dst is larger than src.
func Download[T float32 | uint16 | int32](d *Device, dst []T, src Buffer) error {
	if len(dst) == 0 {
		return nil
	}
	n := int64(len(dst)) * int64(unsafe.Sizeof(dst[0]))
	checkCopy("Download", src, n)
	return d.do(func() error {
		return d.drv.check("cuMemcpyDtoHAsync_v2", d.drv.cuMemcpyDtoHAsync(unsafe.Pointer(&dst[0]), src.Ptr, uint64(n), d.stream))
	}, d.sync)
}

// Copy copies n bytes from src to dst on the device, asynchronously on the stream.
func (d *Device) Copy(dst, src Buffer, n int64) error {
	checkCopy("Copy", dst, n)
	checkCopy("Copy", src, n)
	return d.do(func() error {
		return d.drv.check("cuMemcpyDtoDAsync_v2", d.drv.cuMemcpyDtoDAsync(dst.Ptr, src.Ptr, uint64(n), d.stream))
	})
}

// Synchronize waits for the stream's work and returns the first asynchronous error
// (a kernel fault shows up here).
func (d *Device) Synchronize() error { return d.do(d.sync) }

func (d *Device) sync() error {
	return d.drv.check("cuStreamSynchronize", d.drv.cuStreamSynchronize(d.stream))
}

// Elapsed runs f, which queues work on the stream, between two events and returns
// the GPU time between them.
func (d *Device) Elapsed(f func() error) (time.Duration, error) {
	var start, end uintptr
	var ms float32
	err := d.do(func() error {
		if err := d.drv.check("cuEventCreate", d.drv.cuEventCreate(&start, 0)); err != nil {
			return err
		}
		defer d.drv.cuEventDestroy(start)
		if err := d.drv.check("cuEventCreate", d.drv.cuEventCreate(&end, 0)); err != nil {
			return err
		}
		defer d.drv.cuEventDestroy(end)
		if err := d.drv.check("cuEventRecord", d.drv.cuEventRecord(start, d.stream)); err != nil {
			return err
		}
		if err := f(); err != nil {
			return err
		}
		if err := d.drv.check("cuEventRecord", d.drv.cuEventRecord(end, d.stream)); err != nil {
			return err
		}
		if err := d.drv.check("cuEventSynchronize", d.drv.cuEventSynchronize(end)); err != nil {
			return err
		}
		return d.drv.check("cuEventElapsedTime", d.drv.cuEventElapsedTime(&ms, start, end))
	})
	return time.Duration(float64(ms) * float64(time.Millisecond)), err
}

// MemInfo returns the GPU's free and total memory as the driver sees it.
func (d *Device) MemInfo() (free, total int64, err error) {
	var f, t uint64
	err = d.do(func() error { return d.drv.check("cuMemGetInfo_v2", d.drv.cuMemGetInfo(&f, &t)) })
	return int64(f), int64(t), err
}

// Close waits for the stream, frees the cache, unloads the kernels and releases
// the context. Buffers still live are the caller's leak; Stats shows them.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	keep(d.do(func() error {
		if d.stream != 0 {
			keep(d.sync())
			keep(d.drv.check("cuStreamDestroy_v2", d.drv.cuStreamDestroy(d.stream)))
		}
		keep(d.alloc.EmptyCache())
		for _, m := range d.modules {
			keep(d.drv.check("cuModuleUnload", d.drv.cuModuleUnload(m)))
		}
		return nil
	}))
	keep(d.drv.check("cuDevicePrimaryCtxRelease_v2", d.drv.cuDevicePrimaryCtxRelease(d.dev)))
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// driverBackend allocates with cuMemAlloc in the device's context.
type driverBackend struct{ d *Device }

func (b driverBackend) malloc(bytes int64) (uint64, error) {
	var p uint64
	err := b.d.do(func() error { return b.d.drv.check("cuMemAlloc_v2", b.d.drv.cuMemAlloc(&p, uint64(bytes))) })
	return p, err
}

func (b driverBackend) free(p uint64) error {
	return b.d.do(func() error { return b.d.drv.check("cuMemFree_v2", b.d.drv.cuMemFree(p)) })
}

// function returns the named kernel, looked up once.
func (d *Device) function(name string) (uintptr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f, ok := d.funcs[name]; ok {
		return f, nil
	}
	var f uintptr
	err := d.do(func() error {
		_, text := ptxModules()
		for file, m := range d.modules {
			if _, ok := ptxEntries(text[file])[name]; ok {
				var err error
				f, err = d.drv.function(m, name)
				return err
			}
		}
		return fmt.Errorf("cuda: no loaded PTX declares kernel %s", name)
	})
	if err != nil {
		return 0, err
	}
	d.funcs[name] = f
	return f, nil
}

// Launch runs kernel name with grid and block dimensions, smem bytes of dynamic
// shared memory, and args (uint64 device pointers, int32, uint32, float32), on the
// device's stream. It panics when the Go side's argument count differs from the
// kernel's declared parameter count in kernelParams.
func (d *Device) Launch(name string, grid, block [3]uint32, smem uint32, args ...any) error {
	if want, ok := kernelParams[name]; !ok || want != len(args) {
		panic(fmt.Sprintf("cuda.Launch: kernel %s with %d arguments (declared %d, known %v)", name, len(args), want, ok))
	}
	f, err := d.function(name)
	if err != nil {
		return err
	}
	return d.do(func() error {
		if smem > 48<<10 {
			if err := d.drv.check("cuFuncSetAttribute("+name+")", d.drv.cuFuncSetAttribute(f, funcAttrMaxDynamicSharedMem, int32(smem))); err != nil {
				return err
			}
		}
		return d.drv.launch(name, f, grid, block, smem, d.stream, args)
	})
}
