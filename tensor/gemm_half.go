package tensor

import "math"

// Conversions between float32 and the two 16-bit float formats: bfloat16 (the top half
// of a float32: 8 exponent bits, 7 mantissa bits) and IEEE 754 binary16 "f16" (5 exponent
// bits, 10 mantissa bits). Widening is exact. Narrowing rounds to nearest, ties to even.
//
// NaN handling: a NaN stays a NaN of the same sign. Its payload keeps as many top
// mantissa bits as fit; when none of the kept bits is set, the quiet bit is set so the
// result is still a NaN. Consequently bf16→f32→bf16 and f16→f32→f16 round-trip every
// one of the 65536 inputs bit for bit, NaNs included (signalling ones too).

// BF16ToF32 widens a bfloat16 to float32 (exact).
func BF16ToF32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// F32ToBF16 narrows a float32 to bfloat16, rounding to nearest even; overflow gives
// ±Inf, NaN stays NaN (see the note above on payloads).
func F32ToBF16(f float32) uint16 {
	bits := math.Float32bits(f)
	if bits&0x7fffffff > 0x7f800000 { // NaN
		h := uint16(bits >> 16)
		if h&0x7f == 0 {
			h |= 0x40 // payload was only in the dropped bits: make it a quiet NaN
		}
		return h
	}
	bits += 0x7fff + (bits>>16)&1
	return uint16(bits >> 16)
}

// F16ToF32 widens an IEEE 754 half-precision float to float32 (exact, including
// subnormals, ±Inf and NaN).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
	case man == 0: // ±0
		return math.Float32frombits(sign)
	default: // subnormal: man · 2^-24, exact in float32
		return math.Float32frombits(sign | math.Float32bits(float32(man)*(1.0/(1<<24))))
	}
}

// F32ToF16 narrows a float32 to IEEE 754 half precision, rounding to nearest even:
// values of magnitude >= 65520 become ±Inf, tiny ones become half subnormals or ±0,
// NaN stays NaN (see the note above on payloads).
func F32ToF16(f float32) uint16 {
	bits := math.Float32bits(f)
	sign := uint16(bits>>16) & 0x8000
	exp := int(bits>>23) & 0xff
	man := bits & 0x7fffff
	if exp == 0xff {
		if man == 0 {
			return sign | 0x7c00 // ±Inf
		}
		m := uint16(man >> 13)
		if m == 0 {
			m = 0x200 // quiet NaN
		}
		return sign | 0x7c00 | m
	}
	e := exp - 127 + 15 // biased half exponent
	if e >= 0x1f {
		return sign | 0x7c00 // overflow
	}
	if e <= 0 {
		// Half subnormal (or zero): result = round(m · 2^-shift) units of 2^-24.
		m := man | 0x800000
		if exp == 0 {
			m = man // float32 subnormal: far below the half range, rounds to ±0
		}
		shift := uint(14 - e)
		if shift > 24 {
			return sign
		}
		r := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r) // r == 0x400 is the smallest normal: correctly encoded
	}
	r := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, up to 0x7c00 = Inf: correct
	}
	return sign | uint16(r)
}
