package tensor

import (
	"fmt"
	"math"
)

// Fused scaled-dot-product attention, FlashAttention-style: the keys are visited in
// tiles, the softmax is computed online (running max m and running sum l per query
// row), and the Tq×Tk score matrix never exists; a worker holds only a few tiles.
//
// Layouts (heads interleaved, as a Linear produces them):
//
//	q, out  [B, Tq, H, D]
//	k, v    [B, Tk, H, D]
//	lse     [B, H, Tq]   row log-sum-exp of the scaled, masked scores
//	mask    [B, Tk]      additive (0, or −Inf / large negative for padded keys), or nil
//
// Rows of one head are D floats at a stride of H·D floats, which is exactly a
// GEMM operand with leading dimension H·D, so tiles go straight to GemmSerial.
// A query row whose keys are all masked (−Inf) gets output 0, lse −Inf and zero
// gradients.

// Tile sizes: query rows per tile and key rows per tile. 128×128 measured fastest
// of {32, 64, 128}×{64, 128, 256} with the AVX-512 GEMM (T=1024, D=64: forward
// ~12%, backward ~14% faster than 64×64); the tiles (2·64 KiB) stay in L2.
const (
	attnTileQ = 128
	attnTileK = 128
)

// attentionTiles returns the query and key tile sizes used for the given lengths.
func attentionTiles(Tq, Tk int) (bq, bk int) {
	return max(1, min(attnTileQ, Tq)), max(1, min(attnTileK, Tk))
}

// attentionScratchFloats is the per-worker scratch (in float32s) that the attention
// kernels use: two score-sized tiles (S and dP) and one bq×D output accumulator.
// It is bounded by 2·attnTileQ·attnTileK + attnTileQ·D whatever Tq and Tk are.
func attentionScratchFloats(Tq, Tk, D int) int {
	bq, bk := attentionTiles(Tq, Tk)
	return 2*bq*bk + bq*D
}

func checkAttention(kernel string, B, H, Tq, Tk, D int, causal bool, q, k, v, out, lse, mask []float32) {
	if B < 0 || H < 0 || Tq < 0 || Tk < 0 || D < 0 {
		panic(fmt.Sprintf("tensor.%s: negative size B=%d H=%d Tq=%d Tk=%d D=%d", kernel, B, H, Tq, Tk, D))
	}
	if causal && Tq != Tk {
		panic(fmt.Sprintf("tensor.%s: causal attention needs Tq == Tk, got Tq=%d Tk=%d", kernel, Tq, Tk))
	}
	kernelCheckLen(kernel, "q", len(q), B*Tq*H*D)
	kernelCheckLen(kernel, "k", len(k), B*Tk*H*D)
	kernelCheckLen(kernel, "v", len(v), B*Tk*H*D)
	kernelCheckLen(kernel, "out", len(out), B*Tq*H*D)
	kernelCheckOptLen(kernel, "lse", lse, B*H*Tq)
	kernelCheckOptLen(kernel, "mask", mask, B*Tk)
}

// attentionForward writes out = softmax(q·kᵀ·scale + mask)·v and lse (lse may be nil
// when the backward pass is not needed). Tasks are (batch, head, query tile).
func attentionForward(out, lse, q, k, v, mask []float32, B, H, Tq, Tk, D int, scale float32, causal bool) {
	checkAttention("attentionForward", B, H, Tq, Tk, D, causal, q, k, v, out, lse, mask)
	if B*H*Tq == 0 {
		return
	}
	HD := H * D
	bq, bk := attentionTiles(Tq, Tk)
	qTiles := (Tq + bq - 1) / bq
	negInf := float32(math.Inf(-1))
	parallelFor(B*H*qTiles, 1, func(lo, hi int) {
		sp := kernelGetScratch(attentionScratchFloats(Tq, Tk, D))
		defer kernelPutScratch(sp)
		S := (*sp)[:bq*bk]
		acc := (*sp)[2*bq*bk : 2*bq*bk+bq*D]
		var m [attnTileQ]float32
		var l [attnTileQ]float64
		for t := lo; t < hi; t++ {
			qt, bh := t%qTiles, t/qTiles
			b, h := bh/H, bh%H
			i0 := qt * bq
			i1 := min(i0+bq, Tq)
			br := i1 - i0
			qoff := (b*Tq+i0)*HD + h*D
			clear(acc[:br*D])
			for r := 0; r < br; r++ {
				m[r], l[r] = negInf, 0
			}
			jEnd := Tk
			if causal {
				jEnd = i1 // keys j <= i < i1
			}
			for j0 := 0; j0 < jEnd; j0 += bk {
				j1 := min(j0+bk, jEnd)
				bc := j1 - j0
				koff := (b*Tk+j0)*HD + h*D
				St := S[:br*bc]
				GemmSerial(false, true, br, bc, D, scale, q[qoff:], HD, k[koff:], HD, 0, St, bc)
				for r := 0; r < br; r++ {
					s := St[r*bc : r*bc+bc]
					if mask != nil {
						for c, mv := range mask[b*Tk+j0 : b*Tk+j1] {
							s[c] += mv
						}
					}
					if causal {
						for c := max(0, i0+r+1-j0); c < bc; c++ {
							s[c] = negInf
						}
					}
					mNew := m[r]
					for _, sv := range s {
						if sv > mNew { // not the max builtin: its NaN and ±0 handling is slow
							mNew = sv
						}
					}
					if mNew == negInf { // nothing visible yet: contributes nothing
						clear(s)
						continue
					}
					sum := kernelExpShift(s, mNew)
					if m[r] != mNew {
						alpha := kernelExpf(m[r] - mNew)
						l[r] *= float64(alpha)
						if l[r] != 0 {
							ar := acc[r*D : r*D+D]
							for d := range ar {
								ar[d] *= alpha
							}
						}
						m[r] = mNew
					}
					l[r] += float64(sum)
				}
				GemmSerial(false, false, br, D, bc, 1, St, bc, v[koff:], HD, 1, acc[:br*D], D)
			}
			for r := 0; r < br; r++ {
				or := out[qoff+r*HD : qoff+r*HD+D]
				li := (b*H+h)*Tq + i0 + r
				if l[r] == 0 { // fully masked row
					clear(or)
					if lse != nil {
						lse[li] = negInf
					}
					continue
				}
				inv := float32(1 / l[r])
				for d, a := range acc[r*D : r*D+D] {
					or[d] = a * inv
				}
				if lse != nil {
					lse[li] = m[r] + float32(math.Log(l[r]))
				}
			}
		}
	})
}

// attentionBackward accumulates dq, dk, dv (each may be nil) for attentionForward.
// The probabilities are recomputed tile by tile as P = exp(S − lse) and
// dS = P ∘ (dP − Δ) with dP = dout·vᵀ and Δ_i = rowsum(dout_i ∘ out_i).
//
// When the (batch, head) pairs spread evenly enough over the workers (at least 3/4
// busy), each worker owns whole heads and updates dq, dk and dv from the same
// tiles (five tile products per block). Otherwise the work splits into a pass
// over (head, key tile) for dk, dv and a pass over (head, query tile) for dq, which
// recomputes S and dP once more but keeps every worker busy. Either way each
// gradient element is summed by one worker in a fixed order (no races, deterministic).
func attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, mask []float32, B, H, Tq, Tk, D int, scale float32, causal bool) {
	const kn = "attentionBackward"
	checkAttention(kn, B, H, Tq, Tk, D, causal, q, k, v, out, lse, mask)
	kernelCheckLen(kn, "lse", len(lse), B*H*Tq)
	kernelCheckLen(kn, "dout", len(dout), B*Tq*H*D)
	kernelCheckOptLen(kn, "dq", dq, B*Tq*H*D)
	kernelCheckOptLen(kn, "dk", dk, B*Tk*H*D)
	kernelCheckOptLen(kn, "dv", dv, B*Tk*H*D)
	if (dq == nil && dk == nil && dv == nil) || B*H*Tq*Tk == 0 {
		return
	}
	bq, bk := attentionTiles(Tq, Tk)
	qTiles, kTiles := (Tq+bq-1)/bq, (Tk+bk-1)/bk
	a := attnBwd{dq: dq, dk: dk, dv: dv, dout: dout, q: q, k: k, v: v, out: out, lse: lse, mask: mask,
		H: H, Tq: Tq, Tk: Tk, D: D, bq: bq, bk: bk, scale: scale, causal: causal}
	scratch := attentionScratchFloats(Tq, Tk, D)
	// First query tile that sees key tile starting at j0 (causal: keys j <= i).
	firstQ := func(j0 int) int {
		if causal {
			return j0 / bq * bq
		}
		return 0
	}
	// End of the keys that query tile [i0, i1) sees.
	keyEnd := func(i1 int) int {
		if causal {
			return i1
		}
		return Tk
	}
	// One pass over whole heads keeps B·H/(rounds·workers) of the workers busy;
	// two passes keep all of them busy but do about 7/5 of the work.
	bh, w := B*H, Threads()
	if rounds := (bh + w - 1) / w; 4*bh >= 3*rounds*w {
		parallelFor(B*H, 1, func(lo, hi int) {
			sp := kernelGetScratch(scratch)
			defer kernelPutScratch(sp)
			for bh := lo; bh < hi; bh++ {
				for j0 := 0; j0 < Tk; j0 += bk {
					for i0 := firstQ(j0); i0 < Tq; i0 += bq {
						a.block(*sp, bh/H, bh%H, i0, min(i0+bq, Tq), j0, min(j0+bk, Tk), true, true)
					}
				}
			}
		})
		return
	}
	if dk != nil || dv != nil {
		parallelFor(B*H*kTiles, 1, func(lo, hi int) {
			sp := kernelGetScratch(scratch)
			defer kernelPutScratch(sp)
			for t := lo; t < hi; t++ {
				kt, bh := t%kTiles, t/kTiles
				j0 := kt * bk
				for i0 := firstQ(j0); i0 < Tq; i0 += bq {
					a.block(*sp, bh/H, bh%H, i0, min(i0+bq, Tq), j0, min(j0+bk, Tk), false, true)
				}
			}
		})
	}
	if dq != nil {
		parallelFor(B*H*qTiles, 1, func(lo, hi int) {
			sp := kernelGetScratch(scratch)
			defer kernelPutScratch(sp)
			for t := lo; t < hi; t++ {
				qt, bh := t%qTiles, t/qTiles
				i0 := qt * bq
				i1 := min(i0+bq, Tq)
				for j0 := 0; j0 < keyEnd(i1); j0 += bk {
					a.block(*sp, bh/H, bh%H, i0, i1, j0, min(j0+bk, keyEnd(i1)), true, false)
				}
			}
		})
	}
}

// attnBwd carries the operands of one attentionBackward call.
type attnBwd struct {
	dq, dk, dv, dout, q, k, v, out, lse, mask []float32
	H, Tq, Tk, D, bq, bk                      int
	scale                                     float32
	causal                                    bool
}

// block accumulates the gradients from query rows [i0, i1) and key rows [j0, j1) of
// head (b, h): into dq when wantQ, into dk and dv when wantKV (nil ones skipped).
// buf is a scratch of attentionScratchFloats floats.
func (a *attnBwd) block(buf []float32, b, h, i0, i1, j0, j1 int, wantQ, wantKV bool) {
	br, bc := i1-i0, j1-j0
	D, HD := a.D, a.H*a.D
	qoff := (b*a.Tq+i0)*HD + h*D
	koff := (b*a.Tk+j0)*HD + h*D
	P := buf[:br*bc]
	dS := buf[a.bq*a.bk : a.bq*a.bk+br*bc]
	negInf := float32(math.Inf(-1))
	GemmSerial(false, true, br, bc, D, a.scale, a.q[qoff:], HD, a.k[koff:], HD, 0, P, bc)
	var delta [attnTileQ]float32
	live := false
	for r := 0; r < br; r++ {
		p := P[r*bc : r*bc+bc]
		L := a.lse[(b*a.H+h)*a.Tq+i0+r]
		if L == negInf {
			clear(p)
			continue
		}
		live = true
		if a.mask != nil {
			for c, mv := range a.mask[b*a.Tk+j0 : b*a.Tk+j1] {
				p[c] += mv
			}
		}
		kernelExpShift(p, L)
		if a.causal {
			clear(p[max(0, min(bc, i0+r+1-j0)):])
		}
		var s float32
		o := a.out[qoff+r*HD : qoff+r*HD+D]
		for d, g := range a.dout[qoff+r*HD : qoff+r*HD+D] {
			s += g * o[d]
		}
		delta[r] = s
	}
	if !live {
		return
	}
	if wantKV && a.dv != nil {
		GemmSerial(true, false, bc, D, br, 1, P, bc, a.dout[qoff:], HD, 1, a.dv[koff:], HD)
	}
	needQ := wantQ && a.dq != nil
	needK := wantKV && a.dk != nil
	if !needQ && !needK {
		return
	}
	GemmSerial(false, true, br, bc, D, 1, a.dout[qoff:], HD, a.v[koff:], HD, 0, dS, bc)
	for r := 0; r < br; r++ {
		p, ds := P[r*bc:r*bc+bc], dS[r*bc:r*bc+bc]
		dr := delta[r]
		for c, pv := range p {
			ds[c] = pv * (ds[c] - dr)
		}
	}
	if needQ {
		GemmSerial(false, false, br, D, bc, a.scale, dS, bc, a.k[koff:], HD, 1, a.dq[qoff:], HD)
	}
	if needK {
		GemmSerial(true, false, bc, D, br, a.scale, dS, bc, a.q[qoff:], HD, 1, a.dk[koff:], HD)
	}
}

// attentionRef is the naive reference: full score rows, float64 softmax.
func attentionRef(out, lse, q, k, v, mask []float32, B, H, Tq, Tk, D int, scale float32, causal bool) {
	HD := H * D
	s := make([]float64, Tk)
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			for i := 0; i < Tq; i++ {
				qi := q[(b*Tq+i)*HD+h*D:][:D]
				mx := math.Inf(-1)
				for j := 0; j < Tk; j++ {
					if causal && j > i {
						s[j] = math.Inf(-1)
						continue
					}
					kj := k[(b*Tk+j)*HD+h*D:][:D]
					var dot float64
					for d := 0; d < D; d++ {
						dot += float64(qi[d]) * float64(kj[d])
					}
					s[j] = dot * float64(scale)
					if mask != nil {
						s[j] += float64(mask[b*Tk+j])
					}
					mx = math.Max(mx, s[j])
				}
				oi := out[(b*Tq+i)*HD+h*D:][:D]
				if math.IsInf(mx, -1) {
					clear(oi)
					if lse != nil {
						lse[(b*H+h)*Tq+i] = float32(math.Inf(-1))
					}
					continue
				}
				var sum float64
				for j := 0; j < Tk; j++ {
					s[j] = math.Exp(s[j] - mx)
					sum += s[j]
				}
				for d := 0; d < D; d++ {
					var o float64
					for j := 0; j < Tk; j++ {
						o += s[j] * float64(v[(b*Tk+j)*HD+h*D+d])
					}
					oi[d] = float32(o / sum)
				}
				if lse != nil {
					lse[(b*H+h)*Tq+i] = float32(mx + math.Log(sum))
				}
			}
		}
	}
}

// attentionBackwardRef is the naive reference backward: it rebuilds the full
// probability matrix P of each head in float64 from q and k (ignoring out and lse)
// and applies dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP − rowsum(P∘dP)), dQ = scale·dS·K,
// dK = scale·dSᵀ·Q.
func attentionBackwardRef(dq, dk, dv, dout, q, k, v, out, lse, mask []float32, B, H, Tq, Tk, D int, scale float32, causal bool) {
	HD := H * D
	P := make([]float64, Tq*Tk)
	dS := make([]float64, Tq*Tk)
	idx := func(b, t, T, h, d int) int { return (b*T+t)*HD + h*D + d }
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			for i := 0; i < Tq; i++ {
				mx := math.Inf(-1)
				for j := 0; j < Tk; j++ {
					var dot float64
					for d := 0; d < D; d++ {
						dot += float64(q[idx(b, i, Tq, h, d)]) * float64(k[idx(b, j, Tk, h, d)])
					}
					sv := dot * float64(scale)
					if mask != nil {
						sv += float64(mask[b*Tk+j])
					}
					if causal && j > i {
						sv = math.Inf(-1)
					}
					P[i*Tk+j] = sv
					mx = math.Max(mx, sv)
				}
				var sum float64
				for j := 0; j < Tk; j++ {
					if math.IsInf(mx, -1) {
						P[i*Tk+j] = 0
						continue
					}
					P[i*Tk+j] = math.Exp(P[i*Tk+j] - mx)
					sum += P[i*Tk+j]
				}
				for j := 0; j < Tk && sum > 0; j++ {
					P[i*Tk+j] /= sum
				}
				// dP_ij = dO_i·v_j; Δ_i = Σ_j P_ij dP_ij.
				var delta float64
				for j := 0; j < Tk; j++ {
					var dp float64
					for d := 0; d < D; d++ {
						dp += float64(dout[idx(b, i, Tq, h, d)]) * float64(v[idx(b, j, Tk, h, d)])
					}
					dS[i*Tk+j] = dp
					delta += P[i*Tk+j] * dp
				}
				for j := 0; j < Tk; j++ {
					dS[i*Tk+j] = P[i*Tk+j] * (dS[i*Tk+j] - delta)
				}
			}
			for i := 0; i < Tq && dq != nil; i++ {
				for d := 0; d < D; d++ {
					var s float64
					for j := 0; j < Tk; j++ {
						s += dS[i*Tk+j] * float64(k[idx(b, j, Tk, h, d)])
					}
					dq[idx(b, i, Tq, h, d)] += float32(s * float64(scale))
				}
			}
			for j := 0; j < Tk; j++ {
				for d := 0; d < D; d++ {
					var sk, sv float64
					for i := 0; i < Tq; i++ {
						sk += dS[i*Tk+j] * float64(q[idx(b, i, Tq, h, d)])
						sv += P[i*Tk+j] * float64(dout[idx(b, i, Tq, h, d)])
					}
					if dk != nil {
						dk[idx(b, j, Tk, h, d)] += float32(sk * float64(scale))
					}
					if dv != nil {
						dv[idx(b, j, Tk, h, d)] += float32(sv)
					}
				}
			}
		}
	}
}
