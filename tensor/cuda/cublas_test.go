package cuda

import "testing"

// TestRowMajorNTMapping runs the column-major GEMM cuBLAS would run, with the
// arguments rowMajorNT gives, and checks it is row-major A·Bᵀ.
func TestRowMajorNTMapping(t *testing.T) {
	const M, N, K = 3, 5, 4
	A := make([]float32, M*K) // row-major [M, K]
	B := make([]float32, N*K) // row-major [N, K]
	for i := range A {
		A[i] = float32(i%7) - 2
	}
	for i := range B {
		B[i] = float32(i%5) - 1.5
	}
	const aID, bID = 1, 2
	g := rowMajorNT(M, N, K, aID, bID)
	mats := map[uint64][]float32{aID: A, bID: B}
	// at reads op(X)[i, j] of a column-major X with leading dimension ld.
	at := func(x []float32, trans int32, ld, i, j int) float32 {
		if trans == cublasOpT {
			return x[j+i*ld]
		}
		return x[i+j*ld]
	}
	C := make([]float32, M*N)
	for i := range int(g.m) {
		for j := range int(g.n) {
			var s float32
			for p := range int(g.k) {
				s += at(mats[g.a], g.transA, int(g.lda), i, p) * at(mats[g.b], g.transB, int(g.ldb), p, j)
			}
			C[i+j*int(g.ldc)] = s
		}
	}
	for i := range M {
		for j := range N {
			var want float32
			for p := range K {
				want += A[i*K+p] * B[j*K+p]
			}
			if C[i*N+j] != want {
				t.Fatalf("C[%d,%d] = %v, want %v", i, j, C[i*N+j], want)
			}
		}
	}
}

func TestCUBLASStatusError(t *testing.T) {
	if err := cublasCheck("cublasGemmEx", 0); err != nil {
		t.Fatal(err)
	}
	if err := cublasCheck("cublasGemmEx", 15); err == nil || err.Error() != "cublasGemmEx: CUBLAS_STATUS_NOT_SUPPORTED (15)" {
		t.Fatalf("error %v", err)
	}
}
