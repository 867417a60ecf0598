package tensor

import (
	"math"
	"math/rand"
	"testing"
)

// f16Value is an independent decoder of IEEE half precision via math.Ldexp, used to
// check F16ToF32.
func f16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e, m := int(h>>10)&0x1f, float64(h&0x3ff)
	switch e {
	case 0:
		return sign * math.Ldexp(m, -24)
	case 0x1f:
		if m == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1024+m, e-25)
}

func TestF16ToF32AllInputs(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got, want := F16ToF32(h), f16Value(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) || math.Float32bits(got)>>31 != uint32(h>>15) {
				t.Fatalf("F16ToF32(%#04x) = %v, want NaN with the same sign", h, got)
			}
			// The payload moves to the top of the float32 mantissa.
			if math.Float32bits(got)&0x7fffff != uint32(h&0x3ff)<<13 {
				t.Fatalf("F16ToF32(%#04x): payload %#x not kept", h, math.Float32bits(got))
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != (h&0x8000 != 0) {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, got, want)
		}
		// Round trip is exact for every input, NaNs included.
		if back := F32ToF16(got); back != h {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x", h, back)
		}
	}
}

func TestBF16AllInputs(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := BF16ToF32(h)
		if math.Float32bits(got) != uint32(h)<<16 {
			t.Fatalf("BF16ToF32(%#04x) = %#08x", h, math.Float32bits(got))
		}
		if back := F32ToBF16(got); back != h {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", h, back)
		}
	}
}

// roundRef narrows x to the nearest value among the sorted finite values of a 16-bit
// format (ties to the even encoding), or ±Inf beyond the overflow threshold: the
// reference for both F32ToF16 and F32ToBF16 on random and tricky inputs.
type halfFormat struct {
	name   string
	decode func(uint16) float32
	encode func(float32) uint16
	// values: all finite non-negative encodings in increasing order (encoding == index
	// for both formats, since positive finite encodings are ordered like their values).
	maxFinite uint16
}

func (f halfFormat) ref(x float32) uint16 {
	if x != x {
		panic("NaN")
	}
	var sign uint16
	if math.Signbit(float64(x)) {
		sign, x = 0x8000, -x
	}
	// Binary search for the largest encoding with value <= x.
	lo, hi := 0, int(f.maxFinite)
	if float64(x) >= float64(f.decode(f.maxFinite)) {
		lo = int(f.maxFinite)
	} else {
		for lo < hi {
			mid := (lo + hi + 1) / 2
			if f.decode(uint16(mid)) <= x {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
	}
	below := float64(f.decode(uint16(lo)))
	var aboveV float64
	if lo == int(f.maxFinite) {
		// The next "value" is 2^(emax+1): halfway between it and maxFinite overflows.
		ulp := below - float64(f.decode(uint16(lo-1)))
		aboveV = below + ulp
	} else {
		aboveV = float64(f.decode(uint16(lo + 1)))
	}
	d := float64(x) - below
	half := (aboveV - below) / 2
	r := uint16(lo)
	if d > half || (d == half && lo&1 == 1) {
		r++ // lo+1 beyond maxFinite is the Inf encoding for both formats
	}
	return sign | r
}

func halfFormats() []halfFormat {
	return []halfFormat{
		{"f16", F16ToF32, F32ToF16, 0x7bff},
		{"bf16", BF16ToF32, F32ToBF16, 0x7f7f},
	}
}

func TestF32ToHalfRounding(t *testing.T) {
	for _, f := range halfFormats() {
		var xs []float32
		// Every midpoint between adjacent encodings, and its neighbours one float32 ulp away.
		for h := 0; h < int(f.maxFinite); h++ {
			a, b := float64(f.decode(uint16(h))), float64(f.decode(uint16(h+1)))
			mid := float32((a + b) / 2) // exact: midpoints need one more bit than the format
			xs = append(xs, mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, float32(math.Inf(1))), f.decode(uint16(h)))
		}
		// Overflow threshold region, tiny values, float32 subnormals, zero.
		mx := float64(f.decode(f.maxFinite))
		ulp := mx - float64(f.decode(f.maxFinite-1))
		thr := float32(mx + ulp/2)
		xs = append(xs, thr, math.Nextafter32(thr, 0), math.Nextafter32(thr, float32(math.Inf(1))), math.MaxFloat32,
			0, math.SmallestNonzeroFloat32, 1e-38, 1e-30, 2.9e-8, 2.98e-8, 3e-8, 5.96e-8, 6e-8, 1)
		rng := rand.New(rand.NewSource(1))
		for i := 0; i < 200000; i++ {
			xs = append(xs, math.Float32frombits(rng.Uint32()&0x7fffffff))
		}
		for _, x := range xs {
			if x != x {
				continue
			}
			for _, v := range []float32{x, -x} {
				if got, want := f.encode(v), f.ref(v); got != want {
					t.Fatalf("%s: encode(%g = %#08x) = %#04x, want %#04x", f.name, v, math.Float32bits(v), got, want)
				}
			}
		}
	}
}

func TestF32ToHalfSpecial(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	cases := []struct {
		name string
		got  uint16
		want uint16
	}{
		{"f16 +Inf", F32ToF16(inf), 0x7c00},
		{"f16 -Inf", F32ToF16(-inf), 0xfc00},
		{"f16 65504", F32ToF16(65504), 0x7bff},
		{"f16 65519.99 rounds down", F32ToF16(65519.996), 0x7bff},
		{"f16 65520 overflows", F32ToF16(65520), 0x7c00},
		{"f16 1+2^-11 tie to even", F32ToF16(1 + 1.0/2048), 0x3c00},
		{"f16 1+3·2^-11 tie to even", F32ToF16(1 + 3.0/2048), 0x3c02},
		{"f16 smallest subnormal", F32ToF16(5.9604645e-8), 0x0001},
		{"f16 half smallest subnormal ties to 0", F32ToF16(2.9802322e-8), 0x0000},
		{"f16 just above half smallest", F32ToF16(math.Nextafter32(2.9802322e-8, 1)), 0x0001},
		{"f16 largest subnormal rounds to smallest normal", F32ToF16(6.1035156e-5 - 2.9e-8), 0x0400},
		{"f16 -0", F32ToF16(float32(math.Copysign(0, -1))), 0x8000},
		{"bf16 1+2^-8 tie to even", F32ToBF16(1 + 1.0/256), 0x3f80},
		{"bf16 1+3·2^-8 tie to even", F32ToBF16(1 + 3.0/256), 0x3f82},
		{"bf16 max float32 overflows", F32ToBF16(math.MaxFloat32), 0x7f80},
		{"bf16 -Inf", F32ToBF16(-inf), 0xff80},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %#04x, want %#04x", c.name, c.got, c.want)
		}
	}
	// NaN stays NaN, even when its payload is only in bits that are dropped.
	for _, bits := range []uint32{math.Float32bits(nan), 0x7f800001, 0xff800001, 0x7fc00000, 0x7f801000} {
		x := math.Float32frombits(bits)
		if h := F32ToF16(x); h&0x7c00 != 0x7c00 || h&0x3ff == 0 || h>>15 != uint16(bits>>31) {
			t.Errorf("F32ToF16(NaN %#08x) = %#04x, not a NaN of the same sign", bits, h)
		}
		if h := F32ToBF16(x); h&0x7f80 != 0x7f80 || h&0x7f == 0 || h>>15 != uint16(bits>>31) {
			t.Errorf("F32ToBF16(NaN %#08x) = %#04x, not a NaN of the same sign", bits, h)
		}
	}
}
