//go:build !purego

package tensor

import (
	"math/rand/v2"
	"testing"
)

// benchRows runs f as "go" (rows.go's Go loops only) and "avx512" sub-benchmarks on one
// thread, so that `go test -bench Rows` prints the two side by side.
func benchRows(b *testing.B, bytes int64, f func()) { benchFast(b, &rowsAVX512, bytes, f) }

// benchFast is benchRows for the kernels that fast switches between Go and AVX-512.
func benchFast(b *testing.B, fast *bool, bytes int64, f func()) {
	SetThreads(1)
	defer SetThreads(0)
	for _, asm := range []bool{false, true} {
		name := "go"
		if asm {
			name = "avx512"
			if !cpu.avx512F {
				continue
			}
		}
		b.Run(name, func(b *testing.B) {
			old := *fast
			*fast = asm
			defer func() { *fast = old }()
			b.SetBytes(bytes)
			b.ReportAllocs()
			for b.Loop() {
				f()
			}
		})
	}
}

func benchData(n int) []float32 { return randRow(rand.New(rand.NewPCG(7, 8)), n, 0) }

// DiT-S/2 at batch 4, latent 32: 1024 tokens of 384.
func BenchmarkRowsLayerNormForward(b *testing.B) {
	const rows, C = 1024, 384
	x, out, mean, rstd := benchData(rows*C), make([]float32, rows*C), make([]float32, rows), make([]float32, rows)
	benchRows(b, rows*C*8, func() { layerNormForward(out, mean, rstd, x, nil, nil, rows, C, 1e-6) })
}

func BenchmarkRowsLayerNormBackward(b *testing.B) {
	const rows, C = 1024, 384
	x, g, dx, mean, rstd := benchData(rows*C), benchData(rows*C), make([]float32, rows*C), make([]float32, rows), make([]float32, rows)
	layerNormForward(make([]float32, rows*C), mean, rstd, x, nil, nil, rows, C, 1e-6)
	benchRows(b, rows*C*12, func() { layerNormBackward(dx, nil, nil, g, x, nil, mean, rstd, rows, C) })
}

func BenchmarkRowsLayerNormBackwardAffine(b *testing.B) {
	const rows, C = 1024, 384
	x, g, dx, w := benchData(rows*C), benchData(rows*C), make([]float32, rows*C), benchData(C)
	dw, db, mean, rstd := make([]float32, C), make([]float32, C), make([]float32, rows), make([]float32, rows)
	layerNormForward(make([]float32, rows*C), mean, rstd, x, w, nil, rows, C, 1e-6)
	benchRows(b, rows*C*12, func() { layerNormBackward(dx, dw, db, g, x, w, mean, rstd, rows, C) })
}

// SD1.5's first UNet stage at 64×64 latent: 320 channels in 32 groups.
func BenchmarkRowsGroupNormForward(b *testing.B) {
	const N, C, HW, G = 1, 320, 64 * 64, 32
	x, out, w, bias := benchData(N*C*HW), make([]float32, N*C*HW), benchData(C), benchData(C)
	mean, rstd := make([]float32, N*G), make([]float32, N*G)
	benchRows(b, N*C*HW*8, func() { groupNormForward(out, mean, rstd, x, w, bias, N, C, HW, G, 1e-5) })
}

func BenchmarkRowsGroupNormBackward(b *testing.B) {
	const N, C, HW, G = 1, 320, 64 * 64, 32
	x, g, dx, w := benchData(N*C*HW), benchData(N*C*HW), make([]float32, N*C*HW), benchData(C)
	dw, db, mean, rstd := make([]float32, C), make([]float32, C), make([]float32, N*G), make([]float32, N*G)
	groupNormForward(make([]float32, N*C*HW), mean, rstd, x, w, nil, N, C, HW, G, 1e-5)
	benchRows(b, N*C*HW*12, func() { groupNormBackward(dx, dw, db, g, x, w, mean, rstd, N, C, HW, G) })
}

func BenchmarkRowsRMSNormForward(b *testing.B) {
	const rows, C = 1024, 384
	x, out, w, rstd := benchData(rows*C), make([]float32, rows*C), benchData(C), make([]float32, rows)
	benchRows(b, rows*C*8, func() { rmsNormForward(out, rstd, x, w, rows, C, 1e-6) })
}

// One million parameters (LoRA on a large model, or a slice of full finetuning).
func BenchmarkRowsAdamW(b *testing.B) {
	const n = 1 << 20
	p, g, m, v := benchData(n), benchData(n), make([]float32, n), make([]float32, n)
	benchRows(b, n*24, func() { AdamWUpdate(p, g, m, v, 0.9, 0.999, 1e-8, 0.999, 1e-4, 1.2) })
}

// Gradient accumulation of a [1024, 384] activation.
func BenchmarkRowsAxpy(b *testing.B) {
	const n = 1024 * 384
	d, x := benchData(n), benchData(n)
	benchRows(b, n*12, func() { axpyRow(d, x, 1) })
}

// Broadcast add of a [1024, 384] activation and a [384] bias.
func BenchmarkRowsAddBias(b *testing.B) {
	const rows, C = 1024, 384
	x, bias, out := benchData(rows*C), benchData(C), make([]float32, rows*C)
	benchRows(b, rows*C*8, func() {
		for r := range rows {
			addRow(out[r*C:r*C+C], x[r*C:r*C+C], bias, 1, 1)
		}
	})
}

// DiT-S/2's adaLN modulate and gated residual backward at batch 4, 256 tokens.
func BenchmarkRowsModulateBackward(b *testing.B) {
	const n, t, d = 4, 256, 384
	x, g, dx := benchData(n*t*d), benchData(n*t*d), make([]float32, n*t*d)
	sc, dsh, dsc := benchData(n*d), make([]float32, n*d), make([]float32, n*d)
	benchRows(b, n*t*d*16, func() { modulateBackward(dx, dsh, dsc, g, x, sc, n, t, d) })
}

func BenchmarkRowsGatedAddBackward(b *testing.B) {
	const n, t, d = 4, 256, 384
	h, g, dx, dh := benchData(n*t*d), benchData(n*t*d), make([]float32, n*t*d), make([]float32, n*t*d)
	gate, dgate := benchData(n*d), make([]float32, n*d)
	benchRows(b, n*t*d*20, func() { gatedAddBackward(dx, dgate, dh, g, gate, h, n, t, d) })
}

// SD1.5's first UNet stage at 64×64 latent: [1, 320, 64, 64].
func BenchmarkRowsSiLUForward(b *testing.B) {
	const n = 320 * 64 * 64
	x, out := benchData(n), make([]float32, n)
	benchFast(b, &siluUseFast, n*8, func() { siluForward(out, x) })
}

func BenchmarkRowsSiLUBackward(b *testing.B) {
	const n = 320 * 64 * 64
	x, g, dx := benchData(n), benchData(n), make([]float32, n)
	benchFast(b, &siluUseFast, n*12, func() { siluBackward(dx, g, x) })
}
