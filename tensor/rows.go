package tensor

import "math"

// Row kernels of the normalisations (float32 data, float64 arithmetic) and the
// elementwise update kernels (axpy, AdamW). Each has a plain Go loop (…Go) and, where
// the CPU has AVX-512, an assembly version (rows_amd64.s) for the longest prefix whose
// length is a multiple of 16; the Go loop does the rest. The elementwise kernels do
// exactly the Go loop's operations in its order (no FMA), so their results are equal
// bit for bit; the reductions add in another order (lanes of 8 float64).
//
// A per-element operand w of the norm kernels may be "broadcast": wInc 0 means every
// element uses w[0] (a group norm channel's weight, or 1 for none).

// rowSum64 returns Σ x[i] in float64.
func rowSum64(x []float32) float64 {
	n, s := 0, 0.0
	if rowsAVX512 && len(x) >= 16 {
		n = len(x) &^ 15
		s = sum64AVX512(&x[0], n)
	}
	return s + sum64Go(x[n:])
}

func sum64Go(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	return s
}

// rowCentredSq64 returns Σ (x[i] − mu)² in float64.
func rowCentredSq64(x []float32, mu float64) float64 {
	n, s := 0, 0.0
	if rowsAVX512 && len(x) >= 16 {
		n = len(x) &^ 15
		s = centredSq64AVX512(&x[0], n, mu)
	}
	return s + centredSq64Go(x[n:], mu)
}

func centredSq64Go(x []float32, mu float64) float64 {
	var s float64
	for _, v := range x {
		d := float64(v) - mu
		s += d * d
	}
	return s
}

// broadcast16 returns w itself when inc is 1, or 16 copies of w[0] (for the assembly,
// which loads 8 at a time from a pointer it does not advance) when inc is 0.
func broadcast16(w []float32, inc int, buf *[16]float32) []float32 {
	if inc != 0 {
		return w
	}
	for i := range buf {
		buf[i] = w[0]
	}
	return buf[:]
}

// rowGradSums64 returns s1 = Σ d[i] and s2 = Σ d[i]·(x[i] − mu) with d = g[i]·w[i·wInc],
// in float64: the two reductions of a normalisation's input gradient.
func rowGradSums64(g, x, w []float32, wInc int, mu float64) (s1, s2 float64) {
	n := 0
	if rowsAVX512 && len(x) >= 16 {
		n = len(x) &^ 15
		var buf [16]float32
		wb := broadcast16(w, wInc, &buf)
		_, _, _ = g[n-1], x[n-1], wb[(n-1)*wInc]
		s1, s2 = gradSums64AVX512(&g[0], &x[0], &wb[0], n, wInc*32, mu)
	}
	t1, t2 := gradSums64Go(g[n:len(x)], x[n:], w[n*wInc:], wInc, mu)
	return s1 + t1, s2 + t2
}

func gradSums64Go(g, x, w []float32, wInc int, mu float64) (s1, s2 float64) {
	x = x[:len(g)]
	for i, v := range g {
		d := float64(v) * float64(w[i*wInc])
		s1 += d
		s2 += d * (float64(x[i]) - mu)
	}
	return s1, s2
}

// normRow writes out[i] = float32(((x[i] − mu)·r)·w[i·wInc] + b[i·bInc]).
func normRow(out, x, w []float32, wInc int, b []float32, bInc int, mu, r float64) {
	n := 0
	if rowsAVX512 && len(x) >= 16 {
		n = len(x) &^ 15
		var wbuf, bbuf [16]float32
		wb, bb := broadcast16(w, wInc, &wbuf), broadcast16(b, bInc, &bbuf)
		_, _, _, _ = out[n-1], x[n-1], wb[(n-1)*wInc], bb[(n-1)*bInc]
		normRowAVX512(&out[0], &x[0], &wb[0], &bb[0], n, wInc*32, bInc*32, mu, r)
	}
	normRowGo(out[n:len(x)], x[n:], w[n*wInc:], wInc, b[n*bInc:], bInc, mu, r)
}

func normRowGo(out, x, w []float32, wInc int, b []float32, bInc int, mu, r float64) {
	out = out[:len(x)]
	for i, v := range x {
		out[i] = float32((float64(v)-mu)*r*float64(w[i*wInc]) + float64(b[i*bInc]))
	}
}

// normDxRow accumulates dx[i] += float32(r·((d − a) − ((x[i] − mu)·r)·bb)) with
// d = g[i]·w[i·wInc]: the input gradient of layer, group and RMS norm.
func normDxRow(dx, g, x, w []float32, wInc int, mu, r, a, bb float64) {
	n := 0
	if rowsAVX512 && len(x) >= 16 {
		n = len(x) &^ 15
		var buf [16]float32
		wb := broadcast16(w, wInc, &buf)
		_, _, _, _ = dx[n-1], g[n-1], x[n-1], wb[(n-1)*wInc]
		normDxRowAVX512(&dx[0], &g[0], &x[0], &wb[0], n, wInc*32, mu, r, a, bb)
	}
	normDxRowGo(dx[n:len(x)], g[n:len(x)], x[n:], w[n*wInc:], wInc, mu, r, a, bb)
}

func normDxRowGo(dx, g, x, w []float32, wInc int, mu, r, a, bb float64) {
	dx, g = dx[:len(x)], g[:len(x)]
	for i, v := range x {
		d := float64(g[i]) * float64(w[i*wInc])
		dx[i] += float32(r * ((d - a) - (float64(v)-mu)*r*bb))
	}
}

// normPartRow accumulates the weight and bias gradient partials of a row:
// pw[i] += (g[i]·(x[i] − mu))·r and, unless pb is nil, pb[i] += g[i].
func normPartRow(pw, pb []float64, g, x []float32, mu, r float64) {
	n := 0
	if rowsAVX512 && len(x) >= 16 {
		n = len(x) &^ 15
		var dummy [8]float64
		pbp, pbStep := &dummy[0], 0
		if pb != nil {
			_ = pb[n-1]
			pbp, pbStep = &pb[0], 64
		}
		_, _, _ = pw[n-1], g[n-1], x[n-1]
		normPartRowAVX512(&pw[0], pbp, &g[0], &x[0], n, pbStep, mu, r)
	}
	if pb != nil {
		pb = pb[n:]
	}
	normPartRowGo(pw[n:], pb, g[n:len(x)], x[n:], mu, r)
}

func normPartRowGo(pw, pb []float64, g, x []float32, mu, r float64) {
	pw, g = pw[:len(x)], g[:len(x)]
	for i, v := range x {
		gv := float64(g[i])
		pw[i] += gv * (float64(v) - mu) * r
	}
	if pb != nil {
		pb = pb[:len(x)]
		for i, v := range g {
			pb[i] += float64(v)
		}
	}
}

// binaryRowFast computes o[i] = x[i·sx] op y[i·sy] for the longest prefix of o whose
// length is a multiple of 16, where the CPU has AVX-512 and the strides are 0 or 1 (not
// both 0), and returns that length (0 otherwise). IEEE arithmetic rounds the same in
// every lane, so the results are the Go loops' (binaryRows) bit for bit.
func binaryRowFast(op binaryOp, o, x, y []float32, sx, sy int) int {
	n := len(o) &^ 15
	if !rowsAVX512 || n == 0 || sx|sy > 1 || sx < 0 || sy < 0 || sx+sy == 0 {
		return 0
	}
	var xb, yb [16]float32
	xs, ys := broadcast16(x, sx, &xb), broadcast16(y, sy, &yb)
	_, _, _ = o[n-1], xs[(n-1)*sx], ys[(n-1)*sy]
	binaryRowAVX512(int(op), &o[0], &xs[0], &ys[0], n, sx*64, sy*64)
	return n
}

// negZero is −0: y + −0 is y for every y (−0 included), so it is the c that makes
// mulAddRow and mulAccPlusRow plain products.
var negZero = float32(math.Copysign(0, -1))

// mulAddRow writes o[i] = x[i]·(y[i] + c) + z[i], each operation rounded to float32
// (c = negZero for o = x·y + z).
func mulAddRow(o, x, y, z []float32, c float32) {
	n := 0
	if rowsAVX512 && len(o) >= 16 {
		n = len(o) &^ 15
		_, _, _ = x[n-1], y[n-1], z[n-1]
		mulAddAVX512(&o[0], &x[0], &y[0], &z[0], n, c)
	}
	x, y, z = x[n:len(o)], y[n:len(o)], z[n:len(o)]
	for i := range o[n:] {
		o[n+i] = float32(x[i]*(y[i]+c)) + z[i]
	}
}

// mulAccPlusRow accumulates d[i] += x[i]·(y[i] + c), each operation rounded to float32.
func mulAccPlusRow(d, x, y []float32, c float32) {
	n := 0
	if rowsAVX512 && len(d) >= 16 {
		n = len(d) &^ 15
		_, _ = x[n-1], y[n-1]
		mulAccAVX512(&d[0], &x[0], &y[0], n, c)
	}
	x, y = x[n:len(d)], y[n:len(d)]
	for i := range d[n:] {
		d[n+i] += float32(x[i] * (y[i] + c))
	}
}

// acc64Fast accumulates a[i] += float64(x[i]·y[i]) (the product rounded to float32),
// or a[i] += float64(x[i]) when y is nil, over the longest prefix of a whose length is
// a multiple of 16 where the CPU has AVX-512, and returns that length.
func acc64Fast(a []float64, x, y []float32) int {
	n := len(a) &^ 15
	if !rowsAVX512 || n == 0 {
		return 0
	}
	_ = x[n-1]
	yp := &x[0]
	if y != nil {
		_ = y[n-1]
		yp = &y[0]
	}
	accMul64AVX512(&a[0], &x[0], yp, n, y != nil)
	return n
}

// axpyRow accumulates d[i] += a·x[i] (float32, not fused).
func axpyRow(d, x []float32, a float32) {
	n := 0
	if rowsAVX512 && len(d) >= 16 {
		n = len(d) &^ 15
		_ = x[n-1]
		axpyAVX512(&d[0], &x[0], n, a)
	}
	axpyRowGo(d[n:], x[n:len(d)], a)
}

func axpyRowGo(d, x []float32, a float32) {
	x = x[:len(d)]
	if a == 1 {
		for i, v := range x {
			d[i] += v
		}
		return
	}
	for i, v := range x {
		d[i] += a * v
	}
}

// AdamWUpdate applies one AdamW step to a parameter slice p with gradient g and
// moments m, v (all of p's length), in float32 and in this order:
//
//	m = β1·m + (1−β1)·g;  v = β2·v + ((1−β2)·g)·g;  p = p·decay − (stepSize·m) / (√v·rc2 + eps)
//
// where decay = 1 − lr·wd, stepSize = lr/(1−β1^t) and rc2 = 1/√(1−β2^t). The AVX-512
// version computes the same operations (square root and division correctly rounded,
// as Go's), so the result does not depend on the CPU or the thread count. Long slices
// are updated in parallel. It panics if a slice is shorter than p.
func AdamWUpdate(p, g, m, v []float32, b1, b2, eps, decay, stepSize, rc2 float32) {
	if len(g) < len(p) || len(m) < len(p) || len(v) < len(p) {
		panic("tensor.AdamWUpdate: gradient or moment shorter than the parameter")
	}
	const block = 1 << 12 // elements per parallel task, a multiple of 16
	parallelFor((len(p)+block-1)/block, 4, func(lo, hi int) {
		hi = min(hi*block, len(p))
		p, g, m, v := p[lo*block:hi], g[lo*block:hi], m[lo*block:hi], v[lo*block:hi]
		n := 0
		if rowsAVX512 && len(p) >= 16 {
			n = len(p) &^ 15
			adamWAVX512(&p[0], &g[0], &m[0], &v[0], n, b1, b2, eps, decay, stepSize, rc2)
		}
		adamWGo(p[n:], g[n:], m[n:], v[n:], b1, b2, eps, decay, stepSize, rc2)
	})
}

func adamWGo(p, g, m, v []float32, b1, b2, eps, decay, stepSize, rc2 float32) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	c1, c2 := 1-b1, 1-b2
	for j := range p {
		gj := g[j]
		mj := b1*m[j] + c1*gj
		vj := b2*v[j] + c2*gj*gj
		m[j], v[j] = mj, vj
		p[j] = p[j]*decay - stepSize*mj/(sqrt32(vj)*rc2+eps)
	}
}

// sqrt32 is the correctly rounded float32 square root (the float64 root rounded once
// more is exact for square roots).
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }
