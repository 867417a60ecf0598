package cuda

import (
	"fmt"
	"sync"
)

// cublasLibraries are the cuBLAS sonames tried, newest first.
var cublasLibraries = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}

// cublasLtLibraries are the cuBLASLt sonames tried, newest first.
var cublasLtLibraries = []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11"}

// cuBLAS enums (cublas_api.h, library_types.h).
const (
	cublasOpN = 0
	cublasOpT = 1

	cudaR32F  = 0  // CUDA_R_32F
	cudaR16BF = 14 // CUDA_R_16BF

	computeF32     = 68 // CUBLAS_COMPUTE_32F
	computeF32TF32 = 77 // CUBLAS_COMPUTE_32F_FAST_TF32
	gemmDefault    = -1 // CUBLAS_GEMM_DEFAULT

	ltDescTransA = 3 // CUBLASLT_MATMUL_DESC_TRANSA
	ltDescTransB = 4 // CUBLASLT_MATMUL_DESC_TRANSB
)

// cublasStatusNames names cublasStatus_t values.
var cublasStatusNames = map[int32]string{
	0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
	7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// cublasCheck turns a cublasStatus_t into nil or an error naming the call.
func cublasCheck(call string, s int32) error {
	if s == 0 {
		return nil
	}
	name := cublasStatusNames[s]
	if name == "" {
		name = "cublasStatus_t"
	}
	return fmt.Errorf("%s: %s (%d)", call, name, s)
}

// cublasLib is the bound cuBLAS (and, when installed, cuBLASLt) API. Handles,
// streams and descriptors are opaque pointers; matrices are device pointers.
type cublasLib struct {
	lib, lt *library

	create      func(h *uintptr) int32
	destroy     func(h uintptr) int32
	setStream   func(h uintptr, s uintptr) int32
	setMathMode func(h uintptr, mode int32) int32
	sgemm       func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) int32
	gemmEx      func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, at, lda int32, b uint64, bt, ldb int32, beta *float32, c uint64, ct, ldc int32, compute, algo int32) int32

	ltCreate        func(h *uintptr) int32
	ltDestroy       func(h uintptr) int32
	ltDescCreate    func(d *uintptr, compute, scale int32) int32
	ltDescDestroy   func(d uintptr) int32
	ltDescSetAttr   func(d uintptr, attr int32, buf *int32, size uint64) int32
	ltLayoutCreate  func(l *uintptr, typ int32, rows, cols uint64, ld int64) int32
	ltLayoutDestroy func(l uintptr) int32
	ltMatmul        func(h, desc uintptr, alpha *float32, a uint64, ad uintptr, b uint64, bd uintptr, beta *float32, c uint64, cd uintptr, d uint64, dd uintptr, algo uintptr, ws uint64, wsSize uint64, s uintptr) int32
}

var (
	cublasOnce sync.Once
	cublasVal  *cublasLib
	cublasErr  error
)

// loadCUBLAS opens cuBLAS once per process; cuBLASLt is optional on top of it.
func loadCUBLAS() (*cublasLib, error) {
	cublasOnce.Do(func() {
		lib, err := openLibrary(cublasLibraries...)
		if err != nil {
			cublasErr = fmt.Errorf("cuBLAS not found (%v): install the CUDA runtime libraries (libcublas12 or the nvidia-cublas-cu12 wheel's lib folder on LD_LIBRARY_PATH); difftune's own GEMM kernel is used instead", err)
			return
		}
		c := &cublasLib{lib: lib}
		if cublasErr = lib.bind([]binding{
			{&c.create, "cublasCreate_v2", false},
			{&c.destroy, "cublasDestroy_v2", false},
			{&c.setStream, "cublasSetStream_v2", false},
			{&c.setMathMode, "cublasSetMathMode", false},
			{&c.sgemm, "cublasSgemm_v2", false},
			{&c.gemmEx, "cublasGemmEx", false},
		}); cublasErr != nil {
			return
		}
		if lt, err := openLibrary(cublasLtLibraries...); err == nil {
			if lt.bind([]binding{
				{&c.ltCreate, "cublasLtCreate", false},
				{&c.ltDestroy, "cublasLtDestroy", false},
				{&c.ltDescCreate, "cublasLtMatmulDescCreate", false},
				{&c.ltDescDestroy, "cublasLtMatmulDescDestroy", false},
				{&c.ltDescSetAttr, "cublasLtMatmulDescSetAttribute", false},
				{&c.ltLayoutCreate, "cublasLtMatrixLayoutCreate", false},
				{&c.ltLayoutDestroy, "cublasLtMatrixLayoutDestroy", false},
				{&c.ltMatmul, "cublasLtMatmul", false},
			}) == nil {
				c.lt = lt
			}
		}
		cublasVal = c
	})
	return cublasVal, cublasErr
}

// gemmCall is a row-major GEMM expressed as cuBLAS's column-major call.
type gemmCall struct {
	transA, transB int32
	m, n, k        int32
	a, b           uint64
	lda, ldb, ldc  int32
}

// rowMajorNT maps row-major C[M,N] = A[M,K]·B[N,K]ᵀ (a Linear layer's X·Wᵀ) onto
// column-major cuBLAS: a row-major C is a column-major Cᵀ = B·Aᵀ, where row-major B
// read column-major is Bᵀ (so op T) and row-major A read column-major is Aᵀ (op N).
func rowMajorNT(m, n, k int, a, b uint64) gemmCall {
	return gemmCall{transA: cublasOpT, transB: cublasOpN, m: int32(n), n: int32(m), k: int32(k),
		a: b, lda: int32(k), b: a, ldb: int32(k), ldc: int32(n)}
}

// CUBLAS is a cuBLAS handle bound to a device's stream.
type CUBLAS struct {
	lib    *cublasLib
	dev    *Device
	handle uintptr
}

// NewCUBLAS creates a cuBLAS handle on d's stream, or fails saying cuBLAS is not
// installed.
func (d *Device) NewCUBLAS() (*CUBLAS, error) {
	lib, err := loadCUBLAS()
	if err != nil {
		return nil, err
	}
	c := &CUBLAS{lib: lib, dev: d}
	err = d.do(func() error {
		if err := cublasCheck("cublasCreate_v2", lib.create(&c.handle)); err != nil {
			return err
		}
		return cublasCheck("cublasSetStream_v2", lib.setStream(c.handle, d.stream))
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// HasLt reports whether cuBLASLt was found next to cuBLAS.
func (c *CUBLAS) HasLt() bool { return c.lib.lt != nil }

// Close destroys the handle.
func (c *CUBLAS) Close() error {
	return c.dev.do(func() error { return cublasCheck("cublasDestroy_v2", c.lib.destroy(c.handle)) })
}

// SgemmNT computes row-major C[M,N] = alpha·A[M,K]·B[N,K]ᵀ + beta·C in float32
// (tf32 tensor cores when tf32 is set), asynchronously on the device's stream.
func (c *CUBLAS) SgemmNT(C, A, B Buffer, m, n, k int, alpha, beta float32, tf32 bool) error {
	checkGemm("SgemmNT", C, A, B, m, n, k, 4)
	g := rowMajorNT(m, n, k, A.Ptr, B.Ptr)
	mode := int32(0) // CUBLAS_DEFAULT_MATH
	if tf32 {
		mode = 3 // CUBLAS_TF32_TENSOR_OP_MATH
	}
	return c.dev.do(func() error {
		if err := cublasCheck("cublasSetMathMode", c.lib.setMathMode(c.handle, mode)); err != nil {
			return err
		}
		return cublasCheck("cublasSgemm_v2", c.lib.sgemm(c.handle, g.transA, g.transB, g.m, g.n, g.k, &alpha, g.a, g.lda, g.b, g.ldb, &beta, C.Ptr, g.ldc))
	})
}

// GemmBF16NT computes row-major C[M,N] (float32) = alpha·A[M,K]·B[N,K]ᵀ + beta·C
// with A and B in bfloat16 and float32 accumulation, asynchronously.
func (c *CUBLAS) GemmBF16NT(C, A, B Buffer, m, n, k int, alpha, beta float32) error {
	checkGemm("GemmBF16NT", C, A, B, m, n, k, 2)
	g := rowMajorNT(m, n, k, A.Ptr, B.Ptr)
	return c.dev.do(func() error {
		return cublasCheck("cublasGemmEx", c.lib.gemmEx(c.handle, g.transA, g.transB, g.m, g.n, g.k, &alpha,
			g.a, cudaR16BF, g.lda, g.b, cudaR16BF, g.ldb, &beta, C.Ptr, cudaR32F, g.ldc, computeF32, gemmDefault))
	})
}

// checkGemm panics when the buffers are too small for the shapes (A and B hold
// elements of elem bytes, C float32).
func checkGemm(op string, C, A, B Buffer, m, n, k, elem int) {
	if m <= 0 || n <= 0 || k <= 0 || A.Bytes < int64(m*k*elem) || B.Bytes < int64(n*k*elem) || C.Bytes < int64(m*n*4) {
		panic(fmt.Sprintf("cuda.%s: A %d B, B %d B, C %d B for M %d, N %d, K %d", op, A.Bytes, B.Bytes, C.Bytes, m, n, k))
	}
}
