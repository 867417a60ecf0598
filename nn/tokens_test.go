package nn

import (
	"slices"
	"testing"

	"github.com/difftune/difftune/tensor"
)

// TestTokensImage checks Tokens' layout on a 1×2×2×3 image (token i is position i
// row-major, its features the channels there) and that Image inverts it.
func TestTokensImage(t *testing.T) {
	x := tensor.FromFloat32([]float32{0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15}, 1, 2, 2, 3) // [N, C, H, W]
	defer x.Release()
	tok := Tokens(x)
	defer tok.Release()
	if want := []float32{0, 10, 1, 11, 2, 12, 3, 13, 4, 14, 5, 15}; !slices.Equal(tok.Shape(), []int{1, 6, 2}) || !slices.Equal(tok.Float32s(), want) {
		t.Fatalf("Tokens: shape %v values %v, want [1 6 2] %v", tok.Shape(), tok.Float32s(), want)
	}
	back := Image(2, 3)(tok)
	defer back.Release()
	if !slices.Equal(back.Shape(), x.Shape()) || !slices.Equal(back.Float32s(), x.Float32s()) {
		t.Fatalf("Image(Tokens(x)) = %v %v, want x", back.Shape(), back.Float32s())
	}
}
