package cuda

import (
	"embed"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// kernelFS holds the PTX that kernels/build.sh generates from kernels/*.cu.
//
//go:embed kernels/*.ptx
var kernelFS embed.FS

// kernelParams is each kernel's parameter count as the Go side launches it; a test
// checks the embedded PTX declares every one with this count.
var kernelParams = map[string]int{
	"add_f32": 4, "mul_f32": 4, "scale_f32": 4,
	"silu_forward": 3, "silu_backward": 4, "gelu_tanh_forward": 3, "gelu_tanh_backward": 4,
	"adamw_update":    11,
	"softmax_forward": 4, "softmax_backward": 5,
	"layernorm_forward": 9, "layernorm_backward": 10,
	"groupnorm_forward": 11, "groupnorm_backward": 12,
	"rmsnorm_forward": 7, "rmsnorm_backward": 8,
	"gemm_f32_ref": 8, "gemm_bf16_tc": 8, "gemm_tf32_tc": 8,
	"attention_forward": 13, "attention_backward": 17,
}

// ptxModules returns the embedded PTX files by name, in name order.
func ptxModules() (names []string, text map[string]string) {
	ents, err := kernelFS.ReadDir("kernels")
	if err != nil {
		panic(err) // embedded at build time
	}
	text = map[string]string{}
	for _, e := range ents {
		b, err := kernelFS.ReadFile("kernels/" + e.Name())
		if err != nil {
			panic(err)
		}
		names = append(names, e.Name())
		text[e.Name()] = string(b)
	}
	sort.Strings(names)
	return names, text
}

var (
	entryRE = regexp.MustCompile(`(?m)^\.visible \.entry (\w+)\(`)
	paramRE = regexp.MustCompile(`^\s*\.param `)
)

// ptxEntries returns each kernel (.entry) that PTX text declares with its number
// of parameters.
func ptxEntries(ptx string) map[string]int {
	out := map[string]int{}
	for _, m := range entryRE.FindAllStringSubmatchIndex(ptx, -1) {
		name := ptx[m[2]:m[3]]
		rest := ptx[m[1]:]
		end := strings.Index(rest, ")")
		if end < 0 {
			end = len(rest)
		}
		n := 0
		for _, line := range strings.Split(rest[:end], "\n") {
			if paramRE.MatchString(line) {
				n++
			}
		}
		out[name] = n
	}
	return out
}

// Buffers passed to kernels as optional arguments (a norm's w or b, attention's
// mask) are the zero Buffer when absent: a null pointer on the device.

// need panics unless b holds n float32 (or bf16 when elem is 2) elements.
func need(op, what string, b Buffer, n, elem int) {
	if b.Bytes < int64(n)*int64(elem) {
		panic(fmt.Sprintf("cuda.%s: %s holds %d bytes, want %d elements of %d bytes", op, what, b.Bytes, n, elem))
	}
}

// needOpt is need for an optional buffer.
func needOpt(op, what string, b Buffer, n int) {
	if b.Ptr != 0 {
		need(op, what, b, n, 4)
	}
}

const threads = 256 // block size of every kernel but the GEMMs' fixed 256 too

// grid1 is the grid of a grid-stride loop over n elements.
func (d *Device) grid1(n int) [3]uint32 {
	blocks := max(1, min((n+threads-1)/threads, 32*max(d.info.SMs, 1)))
	return [3]uint32{uint32(blocks), 1, 1}
}

var block1 = [3]uint32{threads, 1, 1}

// elementwise launches a grid-stride kernel over n elements of the given buffers.
func (d *Device) elementwise(name string, n int, bufs ...Buffer) error {
	args := make([]any, 0, len(bufs)+1)
	for i, b := range bufs {
		need(name, fmt.Sprintf("buffer %d", i), b, n, 4)
		args = append(args, b.Ptr)
	}
	return d.Launch(name, d.grid1(n), block1, 0, append(args, int32(n))...)
}

// Add writes out = a + b over n float32 elements.
func (d *Device) Add(out, a, b Buffer, n int) error { return d.elementwise("add_f32", n, out, a, b) }

// Mul writes out = a·b over n float32 elements.
func (d *Device) Mul(out, a, b Buffer, n int) error { return d.elementwise("mul_f32", n, out, a, b) }

// Scale writes out = s·x over n float32 elements.
func (d *Device) Scale(out, x Buffer, s float32, n int) error {
	need("Scale", "out", out, n, 4)
	need("Scale", "x", x, n, 4)
	return d.Launch("scale_f32", d.grid1(n), block1, 0, out.Ptr, x.Ptr, s, int32(n))
}

// SiLUForward writes out = x·σ(x).
func (d *Device) SiLUForward(out, x Buffer, n int) error {
	return d.elementwise("silu_forward", n, out, x)
}

// SiLUBackward accumulates dx += dout·SiLU′(x).
func (d *Device) SiLUBackward(dx, dout, x Buffer, n int) error {
	return d.elementwise("silu_backward", n, dx, dout, x)
}

// GELUTanhForward writes PyTorch's tanh-approximated GELU of x.
func (d *Device) GELUTanhForward(out, x Buffer, n int) error {
	return d.elementwise("gelu_tanh_forward", n, out, x)
}

// GELUTanhBackward accumulates dx += dout·GELU′(x) (tanh approximation).
func (d *Device) GELUTanhBackward(dx, dout, x Buffer, n int) error {
	return d.elementwise("gelu_tanh_backward", n, dx, dout, x)
}

// AdamWUpdate applies one AdamW step to n parameters (see train.AdamW.Step for the
// scalars: decay = 1 − lr·wd, stepSize = lr/(1 − β1ᵗ), rc2 = 1/√(1 − β2ᵗ)).
func (d *Device) AdamWUpdate(p, g, m, v Buffer, n int, b1, b2, eps, decay, stepSize, rc2 float32) error {
	for i, b := range []Buffer{p, g, m, v} {
		need("AdamWUpdate", fmt.Sprintf("buffer %d", i), b, n, 4)
	}
	return d.Launch("adamw_update", d.grid1(n), block1, 0, p.Ptr, g.Ptr, m.Ptr, v.Ptr, int32(n), b1, b2, eps, decay, stepSize, rc2)
}

// rows launches a one-block-per-row kernel.
func (d *Device) rows(name string, rows int, args ...any) error {
	return d.Launch(name, [3]uint32{uint32(max(rows, 1)), 1, 1}, block1, 0, args...)
}

// SoftmaxForward normalises each of rows rows of C elements.
func (d *Device) SoftmaxForward(out, x Buffer, rows, c int) error {
	need("SoftmaxForward", "out", out, rows*c, 4)
	need("SoftmaxForward", "x", x, rows*c, 4)
	return d.rows("softmax_forward", rows, out.Ptr, x.Ptr, int32(rows), int32(c))
}

// SoftmaxBackward accumulates dx += y·(dout − Σ y·dout) from the saved output y.
func (d *Device) SoftmaxBackward(dx, dout, y Buffer, rows, c int) error {
	for i, b := range []Buffer{dx, dout, y} {
		need("SoftmaxBackward", fmt.Sprintf("buffer %d", i), b, rows*c, 4)
	}
	return d.rows("softmax_backward", rows, dx.Ptr, dout.Ptr, y.Ptr, int32(rows), int32(c))
}

// LayerNormForward normalises each row of x [rows, c] and applies w and b (either
// may be the zero Buffer), writing the per-row mean and 1/std.
func (d *Device) LayerNormForward(out, mean, rstd, x, w, b Buffer, rows, c int, eps float32) error {
	const op = "LayerNormForward"
	need(op, "out", out, rows*c, 4)
	need(op, "x", x, rows*c, 4)
	need(op, "mean", mean, rows, 4)
	need(op, "rstd", rstd, rows, 4)
	needOpt(op, "w", w, c)
	needOpt(op, "b", b, c)
	return d.rows("layernorm_forward", rows, out.Ptr, mean.Ptr, rstd.Ptr, x.Ptr, w.Ptr, b.Ptr, int32(rows), int32(c), eps)
}

// LayerNormBackward accumulates into dx, dw and db (any may be the zero Buffer).
func (d *Device) LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd Buffer, rows, c int) error {
	const op = "LayerNormBackward"
	need(op, "dout", dout, rows*c, 4)
	need(op, "x", x, rows*c, 4)
	need(op, "mean", mean, rows, 4)
	need(op, "rstd", rstd, rows, 4)
	needOpt(op, "dx", dx, rows*c)
	needOpt(op, "dw", dw, c)
	needOpt(op, "db", db, c)
	needOpt(op, "w", w, c)
	return d.rows("layernorm_backward", rows, dx.Ptr, dw.Ptr, db.Ptr, dout.Ptr, x.Ptr, w.Ptr, mean.Ptr, rstd.Ptr, int32(rows), int32(c))
}

// GroupNormForward normalises x [n, c, hw] over groups of c/g channels.
func (d *Device) GroupNormForward(out, mean, rstd, x, w, b Buffer, n, c, hw, g int, eps float32) error {
	const op = "GroupNormForward"
	if g <= 0 || c%g != 0 {
		panic(fmt.Sprintf("cuda.%s: %d groups for %d channels", op, g, c))
	}
	need(op, "out", out, n*c*hw, 4)
	need(op, "x", x, n*c*hw, 4)
	need(op, "mean", mean, n*g, 4)
	need(op, "rstd", rstd, n*g, 4)
	needOpt(op, "w", w, c)
	needOpt(op, "b", b, c)
	return d.rows("groupnorm_forward", n*g, out.Ptr, mean.Ptr, rstd.Ptr, x.Ptr, w.Ptr, b.Ptr, int32(n), int32(c), int32(hw), int32(g), eps)
}

// GroupNormBackward accumulates into dx, dw and db (any may be the zero Buffer).
func (d *Device) GroupNormBackward(dx, dw, db, dout, x, w, mean, rstd Buffer, n, c, hw, g int) error {
	const op = "GroupNormBackward"
	if g <= 0 || c%g != 0 {
		panic(fmt.Sprintf("cuda.%s: %d groups for %d channels", op, g, c))
	}
	need(op, "dout", dout, n*c*hw, 4)
	need(op, "x", x, n*c*hw, 4)
	need(op, "mean", mean, n*g, 4)
	need(op, "rstd", rstd, n*g, 4)
	needOpt(op, "dx", dx, n*c*hw)
	needOpt(op, "dw", dw, c)
	needOpt(op, "db", db, c)
	needOpt(op, "w", w, c)
	return d.rows("groupnorm_backward", n*g, dx.Ptr, dw.Ptr, db.Ptr, dout.Ptr, x.Ptr, w.Ptr, mean.Ptr, rstd.Ptr, int32(n), int32(c), int32(hw), int32(g))
}

// RMSNormForward divides each row by its root mean square and applies w.
func (d *Device) RMSNormForward(out, rstd, x, w Buffer, rows, c int, eps float32) error {
	const op = "RMSNormForward"
	need(op, "out", out, rows*c, 4)
	need(op, "x", x, rows*c, 4)
	need(op, "rstd", rstd, rows, 4)
	needOpt(op, "w", w, c)
	return d.rows("rmsnorm_forward", rows, out.Ptr, rstd.Ptr, x.Ptr, w.Ptr, int32(rows), int32(c), eps)
}

// RMSNormBackward accumulates into dx and dw (either may be the zero Buffer).
func (d *Device) RMSNormBackward(dx, dw, dout, x, w, rstd Buffer, rows, c int) error {
	const op = "RMSNormBackward"
	need(op, "dout", dout, rows*c, 4)
	need(op, "x", x, rows*c, 4)
	need(op, "rstd", rstd, rows, 4)
	needOpt(op, "dx", dx, rows*c)
	needOpt(op, "dw", dw, c)
	needOpt(op, "w", w, c)
	return d.rows("rmsnorm_backward", rows, dx.Ptr, dw.Ptr, dout.Ptr, x.Ptr, w.Ptr, rstd.Ptr, int32(rows), int32(c))
}

// gemm launches a 128x128-tile GEMM kernel (C[m,n] = alpha·A[m,k]·B[n,k]ᵀ + beta·C).
func (d *Device) gemm(name string, C, A, B Buffer, m, n, k, elem int, alpha, beta float32) error {
	checkGemm(name, C, A, B, m, n, k, elem)
	grid := [3]uint32{uint32((n + 127) / 128), uint32((m + 127) / 128), 1}
	return d.Launch(name, grid, block1, 0, C.Ptr, A.Ptr, B.Ptr, int32(m), int32(n), int32(k), alpha, beta)
}

// GemmBF16 computes C[m,n] (float32) = alpha·A[m,k]·B[n,k]ᵀ + beta·C with A and B in
// bfloat16 on tensor cores (mma.sync m16n8k16, fp32 accumulation). A and B must be
// 16-byte aligned (every Buffer from Alloc is).
func (d *Device) GemmBF16(C, A, B Buffer, m, n, k int, alpha, beta float32) error {
	return d.gemm("gemm_bf16_tc", C, A, B, m, n, k, 2, alpha, beta)
}

// GemmTF32 is GemmBF16 for float32 A and B, rounded to tf32 (mma.sync m16n8k8).
func (d *Device) GemmTF32(C, A, B Buffer, m, n, k int, alpha, beta float32) error {
	return d.gemm("gemm_tf32_tc", C, A, B, m, n, k, 4, alpha, beta)
}

// GemmRef is the plain fp32 reference GEMM, one thread per output element.
func (d *Device) GemmRef(C, A, B Buffer, m, n, k int, alpha, beta float32) error {
	checkGemm("GemmRef", C, A, B, m, n, k, 4)
	return d.Launch("gemm_f32_ref", d.grid1(m*n), block1, 0, C.Ptr, A.Ptr, B.Ptr, int32(m), int32(n), int32(k), alpha, beta)
}

// Attention shapes: q [b, tq, h·dh], k and v [b, tk, h·dh], lse [b, h, tq], mask nil
// or [b, tk].
type AttentionShape struct{ B, H, Tq, Tk, D int }

func (s AttentionShape) check(op string, q, k, v, out, lse, mask Buffer) {
	if s.D <= 0 || s.D > 256 || s.B <= 0 || s.H <= 0 || s.Tq <= 0 || s.Tk <= 0 {
		panic(fmt.Sprintf("cuda.%s: shape %+v (head dimension 1 to 256)", op, s))
	}
	need(op, "q", q, s.B*s.Tq*s.H*s.D, 4)
	need(op, "out", out, s.B*s.Tq*s.H*s.D, 4)
	need(op, "k", k, s.B*s.Tk*s.H*s.D, 4)
	need(op, "v", v, s.B*s.Tk*s.H*s.D, 4)
	need(op, "lse", lse, s.B*s.H*s.Tq, 4)
	needOpt(op, "mask", mask, s.B*s.Tk)
}

// attention launch geometry: 8 queries (warps) per block, 32 keys per tile.
func (s AttentionShape) launch() (grid, block [3]uint32, smem uint32) {
	return [3]uint32{uint32((s.Tq + 7) / 8), uint32(s.H), uint32(s.B)}, block1, uint32(2 * 32 * s.D * 4)
}

// AttentionForward is fused attention with the scale 1/√D: it writes out and the
// per-row log-sum-exp lse that backward needs. mask may be the zero Buffer.
func (d *Device) AttentionForward(out, lse, q, k, v, mask Buffer, s AttentionShape, scale float32, causal bool) error {
	s.check("AttentionForward", q, k, v, out, lse, mask)
	if causal && s.Tq != s.Tk {
		panic(fmt.Sprintf("cuda.AttentionForward: causal attention needs Tq == Tk, got %d and %d", s.Tq, s.Tk))
	}
	grid, block, smem := s.launch()
	return d.Launch("attention_forward", grid, block, smem, out.Ptr, lse.Ptr, q.Ptr, k.Ptr, v.Ptr, mask.Ptr,
		int32(s.B), int32(s.H), int32(s.Tq), int32(s.Tk), int32(s.D), scale, b2i(causal))
}

// AttentionBackward accumulates dq, dk and dv from dout and forward's out and lse.
func (d *Device) AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, mask Buffer, s AttentionShape, scale float32, causal bool) error {
	s.check("AttentionBackward", q, k, v, out, lse, mask)
	need("AttentionBackward", "dq", dq, s.B*s.Tq*s.H*s.D, 4)
	need("AttentionBackward", "dout", dout, s.B*s.Tq*s.H*s.D, 4)
	need("AttentionBackward", "dk", dk, s.B*s.Tk*s.H*s.D, 4)
	need("AttentionBackward", "dv", dv, s.B*s.Tk*s.H*s.D, 4)
	grid, block, smem := s.launch()
	return d.Launch("attention_backward", grid, block, smem, dq.Ptr, dk.Ptr, dv.Ptr, dout.Ptr, q.Ptr, k.Ptr, v.Ptr, out.Ptr, lse.Ptr, mask.Ptr,
		int32(s.B), int32(s.H), int32(s.Tq), int32(s.Tk), int32(s.D), scale, b2i(causal))
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
