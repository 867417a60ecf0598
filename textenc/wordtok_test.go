package textenc

import (
	"slices"
	"testing"
)

func TestWordTokenizer(t *testing.T) {
	vocab := BuildVocab([]string{"red apple, food fruit", "green apple", "Red heart"}, 1, 0)
	if want := []string{"apple", "red", "food", "fruit", "green", "heart"}; !slices.Equal(vocab, want) {
		t.Fatalf("vocab %v, want %v", vocab, want)
	}
	if got := BuildVocab([]string{"red apple", "green apple"}, 2, 0); !slices.Equal(got, []string{"apple"}) {
		t.Fatalf("min count 2: %v", got)
	}
	tok, err := NewWordTokenizer(vocab, 6)
	if err != nil {
		t.Fatal(err)
	}
	got := tok.Encode([]string{"RED apple!", "", "a green-apple heart fruit food"})
	want := [][]int{
		{WordStart, WordFirst + 1, WordFirst, WordEnd, WordEnd, WordEnd},
		{WordStart, WordEnd, WordEnd, WordEnd, WordEnd, WordEnd},
		{WordStart, WordUnknown, WordFirst + 4, WordFirst, WordFirst + 5, WordEnd}, // truncated so the end fits
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("prompt %d: %v, want %v", i, got[i], want[i])
		}
	}
	if u := tok.Unknown("a red cat"); !slices.Equal(u, []string{"a", "cat"}) {
		t.Errorf("unknown %v", u)
	}
	if tok.VocabSize() != WordFirst+6 {
		t.Errorf("vocab size %d", tok.VocabSize())
	}
	for _, bad := range [][]string{{"two words"}, {"Upper"}, {"x", "x"}} {
		if _, err := NewWordTokenizer(bad, 6); err == nil {
			t.Errorf("vocab %q accepted", bad)
		}
	}
}
