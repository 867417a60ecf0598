package tensor

import "fmt"

// ConvParams describes a 2-D convolution in NCHW layout: x [N, C, H, W],
// w [O, C/Groups, KH, KW], bias [O], out [N, O, OH, OW].
type ConvParams struct {
	N, C, H, W       int
	O, KH, KW        int
	StrideH, StrideW int
	PadH, PadW       int
	Groups           int
}

// OH is the output height (H + 2·PadH − KH)/StrideH + 1.
func (p ConvParams) OH() int { return (p.H+2*p.PadH-p.KH)/p.StrideH + 1 }

// OW is the output width (W + 2·PadW − KW)/StrideW + 1.
func (p ConvParams) OW() int { return (p.W+2*p.PadW-p.KW)/p.StrideW + 1 }

// Check panics when the parameters are inconsistent.
func (p ConvParams) Check() { p.check("ConvParams.Check") }

func (p ConvParams) check(kernel string) {
	bad := func(why string) { panic(fmt.Sprintf("tensor.%s: %s (%+v)", kernel, why, p)) }
	switch {
	case p.N < 0 || p.C <= 0 || p.H <= 0 || p.W <= 0 || p.O <= 0 || p.KH <= 0 || p.KW <= 0:
		bad("sizes must be positive")
	case p.StrideH <= 0 || p.StrideW <= 0:
		bad("strides must be positive")
	case p.PadH < 0 || p.PadW < 0:
		bad("padding must be non-negative")
	case p.Groups <= 0:
		bad("Groups must be positive")
	case p.C%p.Groups != 0 || p.O%p.Groups != 0:
		bad(fmt.Sprintf("C=%d and O=%d must both be divisible by Groups=%d", p.C, p.O, p.Groups))
	case p.H+2*p.PadH < p.KH || p.W+2*p.PadW < p.KW:
		bad("kernel larger than the padded input")
	}
}

func (p ConvParams) checkBuffers(kernel, outName string, out, x, w, bias []float32, outOpt, xOpt, wOpt bool) {
	p.check(kernel)
	n := func(name string, s []float32, want int, opt bool) {
		if opt {
			kernelCheckOptLen(kernel, name, s, want)
		} else {
			kernelCheckLen(kernel, name, len(s), want)
		}
	}
	n("x", x, p.N*p.C*p.H*p.W, xOpt)
	n("w", w, p.O*(p.C/p.Groups)*p.KH*p.KW, wOpt)
	kernelCheckOptLen(kernel, "bias", bias, p.O)
	n(outName, out, p.N*p.O*p.OH()*p.OW(), outOpt)
}

// pointwise reports whether the convolution is a plain GEMM (1×1, stride 1, no pad).
func (p ConvParams) pointwise() bool {
	return p.KH == 1 && p.KW == 1 && p.StrideH == 1 && p.StrideW == 1 && p.PadH == 0 && p.PadW == 0
}

// convColTarget bounds the im2col tile a worker holds: about 512 KiB of float32.
const convColTarget = 1 << 17

// rowsPerTile picks how many output rows one im2col tile holds: bounded by
// convColTarget, and small enough that there are about two tasks per worker when
// there are few images.
func (p ConvParams) rowsPerTile() int {
	OH, OW := p.OH(), p.OW()
	K := p.C / p.Groups * p.KH * p.KW
	r := max(1, min(OH, convColTarget/max(K*OW, 1)))
	if imgs := p.N * p.Groups; imgs > 0 && imgs < 2*Threads() {
		need := (2*Threads() + imgs - 1) / imgs
		r = min(r, max(1, (OH+need-1)/need))
	}
	return r
}

// convCeilDiv and convFloorDiv are a/b rounded up and down for b > 0 and any sign of a.
func convCeilDiv(a, b int) int {
	if a <= 0 {
		return -(-a / b)
	}
	return (a + b - 1) / b
}

func convFloorDiv(a, b int) int {
	if a >= 0 {
		return a / b
	}
	return -((-a + b - 1) / b)
}

// owRange is the range [lo, hi) of output columns whose input column
// ow·StrideW − PadW + kw lies inside [0, W).
func (p ConvParams) owRange(kw int) (lo, hi int) {
	lo = max(0, convCeilDiv(p.PadW-kw, p.StrideW))
	hi = min(p.OW(), convFloorDiv(p.W-1+p.PadW-kw, p.StrideW)+1)
	return lo, max(lo, hi)
}

// im2col fills col [Cg·KH·KW × (oh1−oh0)·OW] for channels [c0, c1) of one image
// group xg [Cg, H, W] (rows of col for other channels are left alone).
func (p ConvParams) im2col(col, xg []float32, c0, c1, oh0, oh1 int) {
	OW := p.OW()
	cols := (oh1 - oh0) * OW
	HW := p.H * p.W
	for c := c0; c < c1; c++ {
		xc := xg[c*HW : c*HW+HW]
		for kh := 0; kh < p.KH; kh++ {
			for kw := 0; kw < p.KW; kw++ {
				row := col[((c*p.KH+kh)*p.KW+kw)*cols:][:cols]
				lo, hi := p.owRange(kw)
				for oh := oh0; oh < oh1; oh++ {
					dst := row[(oh-oh0)*OW : (oh-oh0+1)*OW]
					ih := oh*p.StrideH - p.PadH + kh
					if ih < 0 || ih >= p.H {
						clear(dst)
						continue
					}
					clear(dst[:lo])
					clear(dst[hi:])
					xr := xc[ih*p.W : ih*p.W+p.W]
					iw := lo*p.StrideW - p.PadW + kw
					if p.StrideW == 1 {
						copy(dst[lo:hi], xr[iw:iw+hi-lo])
						continue
					}
					for ow := lo; ow < hi; ow++ {
						dst[ow] = xr[iw]
						iw += p.StrideW
					}
				}
			}
		}
	}
}

// col2im accumulates col [Cg·KH·KW × (oh1−oh0)·OW] into channels [c0, c1) of dxg.
func (p ConvParams) col2im(dxg, col []float32, c0, c1, oh0, oh1 int) {
	OW := p.OW()
	cols := (oh1 - oh0) * OW
	HW := p.H * p.W
	for c := c0; c < c1; c++ {
		dc := dxg[c*HW : c*HW+HW]
		for kh := 0; kh < p.KH; kh++ {
			for kw := 0; kw < p.KW; kw++ {
				row := col[((c*p.KH+kh)*p.KW+kw)*cols:][:cols]
				lo, hi := p.owRange(kw)
				for oh := oh0; oh < oh1; oh++ {
					ih := oh*p.StrideH - p.PadH + kh
					if ih < 0 || ih >= p.H {
						continue
					}
					src := row[(oh-oh0)*OW : (oh-oh0+1)*OW]
					dr := dc[ih*p.W : ih*p.W+p.W]
					iw := lo*p.StrideW - p.PadW + kw
					if p.StrideW == 1 {
						d := dr[iw : iw+hi-lo]
						for i, v := range src[lo:hi] {
							d[i] += v
						}
						continue
					}
					for ow := lo; ow < hi; ow++ {
						dr[iw] += src[ow]
						iw += p.StrideW
					}
				}
			}
		}
	}
}

// conv2dForward writes out = conv(x, w) + bias (bias may be nil).
//
// Work is split into tasks (image, group, tile of output rows); each task im2cols
// its tile into a per-worker scratch buffer and runs one GemmSerial
// out_tile[Og × cols] = W_g[Og × K] · col[K × cols]. The 1×1 stride-1 unpadded
// case multiplies by x directly.
func conv2dForward(out, x, w, bias []float32, p ConvParams) {
	p.checkBuffers("conv2dForward", "out", out, x, w, bias, false, false, false)
	G := p.Groups
	Cg, Og := p.C/G, p.O/G
	K := Cg * p.KH * p.KW
	OH, OW := p.OH(), p.OW()
	OHW, HW := OH*OW, p.H*p.W
	rpt := p.rowsPerTile()
	tiles := (OH + rpt - 1) / rpt
	pw := p.pointwise()
	parallelFor(p.N*G*tiles, 1, func(lo, hi int) {
		var colp *[]float32
		if !pw {
			colp = kernelGetScratch(K * rpt * OW)
			defer kernelPutScratch(colp)
		}
		for t := lo; t < hi; t++ {
			tile, ng := t%tiles, t/tiles
			n, g := ng/G, ng%G
			oh0 := tile * rpt
			oh1 := min(oh0+rpt, OH)
			cols := (oh1 - oh0) * OW
			xg := x[(n*p.C+g*Cg)*HW:]
			wg := w[g*Og*K:]
			og := out[(n*p.O+g*Og)*OHW+oh0*OW:]
			if pw {
				GemmSerial(false, false, Og, cols, K, 1, wg, K, xg[oh0*OW:], HW, 0, og, OHW)
			} else {
				col := (*colp)[:K*cols]
				p.im2col(col, xg, 0, Cg, oh0, oh1)
				GemmSerial(false, false, Og, cols, K, 1, wg, K, col, cols, 0, og, OHW)
			}
			if bias != nil {
				for o := 0; o < Og; o++ {
					bv := bias[g*Og+o]
					r := og[o*OHW : o*OHW+cols]
					for i := range r {
						r[i] += bv
					}
				}
			}
		}
	})
}

// conv2dBackward accumulates dx, dw, dbias (each may be nil) for conv2dForward.
//
//   - dbias[o] += Σ dout[:, o]; one worker owns each o.
//   - dw_g[Og × K] += dout_tile[Og × cols] · col[K × cols]ᵀ, tasks as in the forward
//     pass, split into at most Threads() contiguous slots with private partial sums
//     that are added in slot order (race-free, deterministic for a thread count).
//   - dcol[K × cols] = W_gᵀ · dout_tile, then col2im accumulates it into dx. Tiles of
//     one image overlap in dx, so a worker owns whole (image, group) pairs; with few
//     images the tiles run in turn with a parallel Gemm and a channel-parallel col2im.
func conv2dBackward(dx, dw, dbias, dout, x, w []float32, p ConvParams) {
	// x is read only for dw and w only for dx, so callers that keep just what the
	// requested gradients need may pass nil for the other.
	p.checkBuffers("conv2dBackward", "dout", dout, x, w, nil, false, dw == nil, dx == nil)
	xLen, wLen := p.N*p.C*p.H*p.W, p.O*(p.C/p.Groups)*p.KH*p.KW
	kernelCheckOptLen("conv2dBackward", "dx", dx, xLen)
	kernelCheckOptLen("conv2dBackward", "dw", dw, wLen)
	kernelCheckOptLen("conv2dBackward", "dbias", dbias, p.O)
	G := p.Groups
	Cg, Og := p.C/G, p.O/G
	K := Cg * p.KH * p.KW
	OH, OW := p.OH(), p.OW()
	OHW, HW := OH*OW, p.H*p.W
	rpt := p.rowsPerTile()
	tiles := (OH + rpt - 1) / rpt
	tasks := p.N * G * tiles
	pw := p.pointwise()

	if dbias != nil {
		parallelFor(p.O, max(1, kernelGrain/max(p.N*OHW, 1)), func(lo, hi int) {
			for o := lo; o < hi; o++ {
				var s float64
				for n := 0; n < p.N; n++ {
					var si float32
					for _, v := range dout[(n*p.O+o)*OHW : (n*p.O+o+1)*OHW] {
						si += v
					}
					s += float64(si)
				}
				dbias[o] += float32(s)
			}
		})
	}

	if dw != nil && tasks > 0 {
		slots := max(1, min(Threads(), tasks))
		var part []float32
		if slots > 1 {
			// Per-slot partial sums come from the device pool, so the memory
			// counters see them.
			ps := CPU.alloc(F32, slots*wLen, true)
			defer ps.release()
			part = ps.f32
		}
		parallelFor(slots, 1, func(lo, hi int) {
			var colp *[]float32
			if !pw {
				colp = kernelGetScratch(K * rpt * OW)
				defer kernelPutScratch(colp)
			}
			for sl := lo; sl < hi; sl++ {
				acc := dw
				if part != nil {
					acc = part[sl*wLen : (sl+1)*wLen]
				}
				for t := sl * tasks / slots; t < (sl+1)*tasks/slots; t++ {
					tile, ng := t%tiles, t/tiles
					n, g := ng/G, ng%G
					oh0 := tile * rpt
					oh1 := min(oh0+rpt, OH)
					cols := (oh1 - oh0) * OW
					xg := x[(n*p.C+g*Cg)*HW:]
					dg := dout[(n*p.O+g*Og)*OHW+oh0*OW:]
					if pw {
						GemmSerial(false, true, Og, K, cols, 1, dg, OHW, xg[oh0*OW:], HW, 1, acc[g*Og*K:], K)
					} else {
						col := (*colp)[:K*cols]
						p.im2col(col, xg, 0, Cg, oh0, oh1)
						GemmSerial(false, true, Og, K, cols, 1, dg, OHW, col, cols, 1, acc[g*Og*K:], K)
					}
				}
			}
		})
		if part != nil {
			parallelFor(wLen, 1024, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					var s float32
					for sl := 0; sl < slots; sl++ {
						s += part[sl*wLen+i]
					}
					dw[i] += s
				}
			})
		}
	}

	if dx == nil || tasks == 0 {
		return
	}
	if pw { // tiles of dx are disjoint: every task may run in parallel
		parallelFor(tasks, 1, func(lo, hi int) {
			for t := lo; t < hi; t++ {
				tile, ng := t%tiles, t/tiles
				n, g := ng/G, ng%G
				oh0 := tile * rpt
				cols := (min(oh0+rpt, OH) - oh0) * OW
				GemmSerial(true, false, Cg, cols, Og, 1, w[g*Og*K:], K, dout[(n*p.O+g*Og)*OHW+oh0*OW:], OHW,
					1, dx[(n*p.C+g*Cg)*HW+oh0*OW:], HW)
			}
		})
		return
	}
	if p.N*G >= Threads() {
		parallelFor(p.N*G, 1, func(lo, hi int) {
			colp := kernelGetScratch(K * rpt * OW)
			defer kernelPutScratch(colp)
			for ng := lo; ng < hi; ng++ {
				n, g := ng/G, ng%G
				for oh0 := 0; oh0 < OH; oh0 += rpt {
					oh1 := min(oh0+rpt, OH)
					cols := (oh1 - oh0) * OW
					col := (*colp)[:K*cols]
					GemmSerial(true, false, K, cols, Og, 1, w[g*Og*K:], K, dout[(n*p.O+g*Og)*OHW+oh0*OW:], OHW, 0, col, cols)
					p.col2im(dx[(n*p.C+g*Cg)*HW:], col, 0, Cg, oh0, oh1)
				}
			}
		})
		return
	}
	colp := kernelGetScratch(K * rpt * OW)
	defer kernelPutScratch(colp)
	for ng := 0; ng < p.N*G; ng++ {
		n, g := ng/G, ng%G
		for oh0 := 0; oh0 < OH; oh0 += rpt {
			oh1 := min(oh0+rpt, OH)
			cols := (oh1 - oh0) * OW
			col := (*colp)[:K*cols]
			Gemm(true, false, K, cols, Og, 1, w[g*Og*K:], K, dout[(n*p.O+g*Og)*OHW+oh0*OW:], OHW, 0, col, cols)
			dxg := dx[(n*p.C+g*Cg)*HW:]
			parallelFor(Cg, max(1, kernelGrain/max(p.KH*p.KW*cols, 1)), func(c0, c1 int) {
				p.col2im(dxg, col, c0, c1, oh0, oh1)
			})
		}
	}
}

// conv2dRef is the direct 7-loop reference for conv2dForward (float64 sums).
func conv2dRef(out, x, w, bias []float32, p ConvParams) {
	p.Check()
	G := p.Groups
	Cg, Og := p.C/G, p.O/G
	OH, OW := p.OH(), p.OW()
	for n := 0; n < p.N; n++ {
		for o := 0; o < p.O; o++ {
			g := o / Og
			for oh := 0; oh < OH; oh++ {
				for ow := 0; ow < OW; ow++ {
					var s float64
					if bias != nil {
						s = float64(bias[o])
					}
					for ci := 0; ci < Cg; ci++ {
						c := g*Cg + ci
						for kh := 0; kh < p.KH; kh++ {
							for kw := 0; kw < p.KW; kw++ {
								ih := oh*p.StrideH - p.PadH + kh
								iw := ow*p.StrideW - p.PadW + kw
								if ih < 0 || ih >= p.H || iw < 0 || iw >= p.W {
									continue
								}
								s += float64(x[((n*p.C+c)*p.H+ih)*p.W+iw]) * float64(w[((o*Cg+ci)*p.KH+kh)*p.KW+kw])
							}
						}
					}
					out[((n*p.O+o)*OH+oh)*OW+ow] = float32(s)
				}
			}
		}
	}
}

// conv2dBackwardRef is the direct reference for conv2dBackward (float64 sums).
func conv2dBackwardRef(dx, dw, dbias, dout, x, w []float32, p ConvParams) {
	p.Check()
	G := p.Groups
	Cg, Og := p.C/G, p.O/G
	OH, OW := p.OH(), p.OW()
	sdx := make([]float64, len(x))
	sdw := make([]float64, len(w))
	sdb := make([]float64, p.O)
	for n := 0; n < p.N; n++ {
		for o := 0; o < p.O; o++ {
			g := o / Og
			for oh := 0; oh < OH; oh++ {
				for ow := 0; ow < OW; ow++ {
					gv := float64(dout[((n*p.O+o)*OH+oh)*OW+ow])
					sdb[o] += gv
					for ci := 0; ci < Cg; ci++ {
						c := g*Cg + ci
						for kh := 0; kh < p.KH; kh++ {
							for kw := 0; kw < p.KW; kw++ {
								ih := oh*p.StrideH - p.PadH + kh
								iw := ow*p.StrideW - p.PadW + kw
								if ih < 0 || ih >= p.H || iw < 0 || iw >= p.W {
									continue
								}
								xi := ((n*p.C+c)*p.H+ih)*p.W + iw
								wi := ((o*Cg+ci)*p.KH+kh)*p.KW + kw
								sdx[xi] += gv * float64(w[wi])
								sdw[wi] += gv * float64(x[xi])
							}
						}
					}
				}
			}
		}
	}
	for i := range sdx {
		if dx != nil {
			dx[i] += float32(sdx[i])
		}
	}
	for i := range sdw {
		if dw != nil {
			dw[i] += float32(sdw[i])
		}
	}
	for i := range sdb {
		if dbias != nil {
			dbias[i] += float32(sdb[i])
		}
	}
}
