package sampler

import (
	"math"
	"math/bits"

	"github.com/difftune/difftune/tensor"
)

// NoiseSource gives the standard-normal noise a sampler draws: the initial latent
// and the fresh noise of ancestral steps (Euler ancestral, DDIM with eta > 0, DDPM).
// *RNG is the implementation; tests replay recorded draws through it.
type NoiseSource interface {
	// Randn returns a new tensor of the given shape filled with N(0, 1) draws.
	Randn(shape ...int) *tensor.Tensor
}

// RNG is difftune's documented Gaussian generator: a seed gives the same float32
// normals, bit for bit, on every run and every machine with IEEE-754 float64
// arithmetic, so a seed reproduces an image. The algorithm, exactly:
//
// Bits. Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011; the Random123 reference) with multipliers 0xD2511F53, 0xCD9E8D57 and key
// increments 0x9E3779B9, 0xBB67AE85. The key is (k0, k1) = (low, high 32 bits of the
// seed). Block b of stream s (s = 0 unless Stream is used) encrypts the counter
// (c0, c1, c2, c3) = (low, high 32 bits of b, low, high 32 bits of s) into four words
// (x0, x1, x2, x3). One round: (hi0, lo0) = 0xD2511F53·c0, (hi1, lo1) = 0xCD9E8D57·c2
// (64-bit products), c = (hi1^c1^k0, lo1, hi0^c3^k1, lo0); the key is bumped by the
// increments between rounds (ten rounds, nine bumps).
//
// Uniforms. A = x1<<32 | x0 and B = x3<<32 | x2 as 64-bit words;
// u1 = ((A>>11) + 1)·2⁻⁵³ in (0, 1] and u2 = (B>>11)·2⁻⁵³ in [0, 1), both exact.
//
// Normals (Box–Muller). Block b gives normal 2b = float32(r·cos θ) and normal 2b+1 =
// float32(r·sin θ), with r = sqrt(−2·ln u1) and θ = 2π·u2, computed in float64 by the
// fixed operation sequences of logUnit and sinCos2Pi below (every operation rounded to
// float64, no fused multiply-add; sqrt correctly rounded), so that the result does not
// depend on a platform's libm. The generator is a position j in this sequence of
// normals: Randn(shape) returns normals j, j+1, ..., j+n−1 in row-major order and
// advances j by n. Draws therefore depend only on (seed, stream, position), never on
// how they were split into calls.
type RNG struct {
	seed   uint64
	stream uint64
	pos    uint64
}

// NewRNG returns a generator for seed, at position 0 of stream 0.
func NewRNG(seed uint64) *RNG { return &RNG{seed: seed} }

// Stream returns an independent generator with the same seed on stream s (counter
// words c2, c3), at position 0; e.g. one stream per image of a batch.
func (r *RNG) Stream(s uint64) *RNG { return &RNG{seed: r.seed, stream: s} }

// Pos returns the index of the next normal.
func (r *RNG) Pos() uint64 { return r.pos }

// SetPos moves the generator to normal index p.
func (r *RNG) SetPos(p uint64) { r.pos = p }

// Randn returns a new tensor of N(0, 1) draws (see RNG for the exact sequence).
func (r *RNG) Randn(shape ...int) *tensor.Tensor {
	t := tensor.Zeros(shape...)
	r.FillNormal(t.Data())
	return t
}

// FillNormal writes the next len(dst) normals into dst.
func (r *RNG) FillNormal(dst []float32) {
	j := r.pos
	for i := 0; i < len(dst); {
		z0, z1 := r.pair(j / 2)
		if j%2 == 0 {
			dst[i] = z0
			i++
			j++
			if i == len(dst) {
				break
			}
		}
		dst[i] = z1
		i++
		j++
	}
	r.pos = j
}

// pair returns the two normals of block b.
func (r *RNG) pair(b uint64) (float32, float32) {
	x := philox4x32([4]uint32{uint32(b), uint32(b >> 32), uint32(r.stream), uint32(r.stream >> 32)},
		[2]uint32{uint32(r.seed), uint32(r.seed >> 32)})
	a := uint64(x[1])<<32 | uint64(x[0])
	c := uint64(x[3])<<32 | uint64(x[2])
	u1 := float64((a>>11)+1) * 0x1p-53
	u2 := float64(c>>11) * 0x1p-53
	rad := math.Sqrt(-2 * logUnit(u1))
	s, co := sinCos2Pi(u2)
	return float32(float64(rad * co)), float32(float64(rad * s))
}

// philox4x32 is Philox4x32-10.
func philox4x32(c [4]uint32, k [2]uint32) [4]uint32 {
	for round := 0; round < 10; round++ {
		if round > 0 {
			k[0] += 0x9E3779B9
			k[1] += 0xBB67AE85
		}
		hi0, lo0 := bits.Mul32(0xD2511F53, c[0])
		hi1, lo1 := bits.Mul32(0xCD9E8D57, c[2])
		c = [4]uint32{hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0}
	}
	return c
}

// logCoef[k] is the float64 nearest to 1/(2k+1).
var logCoef = [11]float64{1, 1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9, 1.0 / 11, 1.0 / 13, 1.0 / 15, 1.0 / 17, 1.0 / 19, 1.0 / 21}

// logUnit returns ln u for u in (0, 1] by a fixed float64 sequence: u = m·2^e with m
// in [√½, √2) (m, e from the exponent bits; m ← 2m, e ← e−1 when the frexp mantissa
// is below 0.70710678118654752), s = (m−1)/(m+1), z = s·s,
// p = Horner(z; 1/1, 1/3, ..., 1/21) evaluated from 1/21 down as p ← p·z + c,
// ln u = e·ln2 + 2·(s·p), where ln2 and the c are the float64 values nearest to the
// real constants. Accurate to a few ulp; exact reproducibility is its purpose.
func logUnit(u float64) float64 {
	m, e := math.Frexp(u)
	if m < 0.70710678118654752 {
		m *= 2
		e--
	}
	s := (m - 1) / (m + 1)
	z := float64(s * s)
	p := logCoef[len(logCoef)-1]
	for k := len(logCoef) - 2; k >= 0; k-- {
		p = float64(p*z) + logCoef[k]
	}
	return float64(float64(e)*math.Ln2) + float64(2*float64(s*p))
}

// sinCoef[k] is the float64 nearest to (−1)^k/(2k+1)!; cosCoef[k] to (−1)^k/(2k)!.
var (
	sinCoef = [10]float64{1, -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880, -1.0 / 39916800,
		1.0 / 6227020800, -1.0 / 1307674368000, 1.0 / 355687428096000, -1.0 / 121645100408832000}
	cosCoef = [10]float64{1, -1.0 / 2, 1.0 / 24, -1.0 / 720, 1.0 / 40320, -1.0 / 3628800,
		1.0 / 479001600, -1.0 / 87178291200, 1.0 / 20922789888000, -1.0 / 6402373705728000}
)

// sinCos2Pi returns sin 2πu and cos 2πu for u in [0, 1) by a fixed float64 sequence:
// q = roundHalfEven(4u), r = u − q/4 (exact, |r| ≤ 1/8), θ = (2π)·r with 2π the
// float64 nearest, t = θ·θ, S = θ·Horner(t; sinCoef), C = Horner(t; cosCoef) (from
// the highest coefficient down, p ← p·t + c), then rotated by q quarter turns:
// q mod 4 = 0: (S, C); 1: (C, −S); 2: (−S, −C); 3: (−C, S) as (sin, cos).
func sinCos2Pi(u float64) (sin, cos float64) {
	q := math.RoundToEven(4 * u)
	r := u - q/4
	th := float64(2 * math.Pi * r)
	t := float64(th * th)
	ps, pc := sinCoef[len(sinCoef)-1], cosCoef[len(cosCoef)-1]
	for k := len(sinCoef) - 2; k >= 0; k-- {
		ps = float64(ps*t) + sinCoef[k]
		pc = float64(pc*t) + cosCoef[k]
	}
	s, c := float64(th*ps), pc
	switch int(q) % 4 {
	case 1:
		return c, -s
	case 2:
		return -s, -c
	case 3:
		return -c, s
	}
	return s, c
}
