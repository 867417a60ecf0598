//go:build !purego

package tensor

// cpuid executes the CPUID instruction with the given leaf (EAX) and subleaf (ECX).
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

// xgetbv reads extended control register XCR0 (which register states the OS saves).
func xgetbv() (eax, edx uint32)

// cpuFeatures is what the GEMM kernels need to know about this CPU.
type cpuFeatures struct {
	avx2FMA bool // AVX2 + FMA3, with YMM state enabled by the OS
	avx512F bool // AVX-512 Foundation, with ZMM/opmask state enabled by the OS
	// avx512BF16: AVX512_BF16 (VDPBF16PS) with AVX-512 usable, and BMI2 (the pair
	// packing uses BZHI).
	avx512BF16 bool
}

var cpu = detectCPU()

func detectCPU() cpuFeatures {
	var f cpuFeatures
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return f
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const (
		fmaBit     = 1 << 12
		osxsaveBit = 1 << 27
		avxBit     = 1 << 28
	)
	if ecx1&osxsaveBit == 0 || ecx1&avxBit == 0 {
		return f // no XGETBV, or no AVX at all
	}
	xcr0, _ := xgetbv()
	const (
		xmmYmmState = 1<<1 | 1<<2        // SSE and AVX (upper YMM) state
		zmmState    = 1<<5 | 1<<6 | 1<<7 // opmask, upper ZMM0-15, ZMM16-31
	)
	osYMM := xcr0&xmmYmmState == xmmYmmState
	osZMM := osYMM && xcr0&zmmState == zmmState
	maxSub7, ebx7, _, _ := cpuid(7, 0)
	const (
		bmi2Bit    = 1 << 8
		avx2Bit    = 1 << 5
		avx512FBit = 1 << 16
		avx512BF16 = 1 << 5 // CPUID.(EAX=7, ECX=1):EAX
	)
	f.avx2FMA = osYMM && ecx1&fmaBit != 0 && ebx7&avx2Bit != 0
	f.avx512F = osZMM && f.avx2FMA && ebx7&avx512FBit != 0
	if maxSub7 >= 1 {
		eax71, _, _, _ := cpuid(7, 1)
		f.avx512BF16 = f.avx512F && ebx7&bmi2Bit != 0 && eax71&avx512BF16 != 0
	}
	return f
}
