package train

import (
	"image"
	"image/color"
	"math"

	"github.com/difftune/difftune/sampler"
)

// PlotLoss draws the loss per step (grey) and its exponential moving average (blue)
// on a white 640×360 canvas with a frame, and writes it as a PNG atomically.
func PlotLoss(path string, losses []float64) error {
	const w, h, pad = 640, 360, 20
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	frame := color.RGBA{0, 0, 0, 255}
	for x := pad; x < w-pad; x++ {
		img.SetRGBA(x, pad, frame)
		img.SetRGBA(x, h-pad, frame)
	}
	for y := pad; y <= h-pad; y++ {
		img.SetRGBA(pad, y, frame)
		img.SetRGBA(w-pad, y, frame)
	}
	if len(losses) > 0 {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, l := range losses {
			if !math.IsNaN(l) && !math.IsInf(l, 0) {
				lo, hi = math.Min(lo, l), math.Max(hi, l)
			}
		}
		if hi <= lo {
			hi = lo + 1
		}
		pt := func(i int, v float64) (int, int) {
			x := pad + int(float64(i)/float64(max(1, len(losses)-1))*float64(w-2*pad))
			y := h - pad - int((v-lo)/(hi-lo)*float64(h-2*pad))
			return x, y
		}
		ema := losses[0]
		var px, py, ex, ey int
		for i, l := range losses {
			ema = 0.9*ema + 0.1*l
			x, y := pt(i, l)
			x2, y2 := pt(i, ema)
			if i > 0 {
				line(img, px, py, x, y, color.RGBA{170, 170, 170, 255})
				line(img, ex, ey, x2, y2, color.RGBA{30, 90, 200, 255})
			}
			px, py, ex, ey = x, y, x2, y2
		}
	}
	return sampler.WritePNG(path, img, map[string]string{"Software": "difftune", "Title": "training loss"})
}

// line draws a segment with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
