package data

import "math/bits"

// rng is a SplitMix64 generator (Steele, Lea and Flood, "Fast splittable pseudorandom
// number generators", OOPSLA 2014). difftune draws every random decision of the data
// pipeline from a fresh rng seeded by hashing (seed, epoch, item, repeat, purpose), so a
// decision depends only on those numbers and never on what was drawn before it: a run
// can resume at any batch and see the same crops, flips and captions. The algorithm is
// written out here, not taken from math/rand/v2, so that the streams are fixed by this
// file and cannot change with a Go release.
type rng struct{ s uint64 }

// Purposes: each random decision about a sample has its own stream.
const (
	streamOrder   uint64 = iota + 1 // the epoch's sample order
	streamBatches                   // the epoch's batch order
	streamFlip                      // horizontal flip of one sample
	streamCrop                      // random crop offset of one sample
	streamCaption                   // caption variant, dropout, shuffle of one sample
)

// mix64 is SplitMix64's output function, a bijective 64-bit hash.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// newRNG seeds a generator from a list of numbers; different lists give unrelated
// streams.
func newRNG(parts ...uint64) *rng {
	h := uint64(0x6a09e667f3bcc908)
	for _, p := range parts {
		h = mix64(h ^ mix64(p+0x9e3779b97f4a7c15))
	}
	return &rng{s: h}
}

// Uint64 returns the next 64 random bits.
func (r *rng) Uint64() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// Float64 returns a uniform number in [0, 1) with 53 random bits.
func (r *rng) Float64() float64 { return float64(r.Uint64()>>11) / (1 << 53) }

// IntN returns a uniform integer in [0, n) (Lemire's multiply-and-reject method, so
// there is no modulo bias). It panics if n <= 0.
func (r *rng) IntN(n int) int {
	if n <= 0 {
		panic("data: rng.IntN of a non-positive bound")
	}
	bound := uint64(n)
	for {
		hi, lo := bits.Mul64(r.Uint64(), bound)
		if lo >= bound || lo >= (-bound)%bound {
			return int(hi)
		}
	}
}

// Shuffle permutes n elements with the Fisher–Yates shuffle, calling swap(i, j).
func (r *rng) Shuffle(n int, swap func(i, j int)) {
	for i := n - 1; i > 0; i-- {
		swap(i, r.IntN(i+1))
	}
}
