package replay

import (
	"errors"
	"io"
	"testing"
)

// A simulated run's input holds exactly n items, numbered from 0 in order, then ends.
func TestNumberedYieldsNItemsInOrder(t *testing.T) {
	for _, n := range []int64{0, 1, 1000} {
		src := &numbered{n: n}
		for i := range n {
			it, err := src.Next()
			if err != nil || it.Index != i || it.Invalid != "" {
				t.Fatalf("n=%d: item %d is %+v, %v", n, i, it, err)
			}
			if i == 999 && it.Line != "item-999" {
				t.Fatalf("item 999 reads %q", it.Line)
			}
		}
		for range 2 { // and stays ended
			if _, err := src.Next(); !errors.Is(err, io.EOF) {
				t.Fatalf("n=%d: after the last item: %v, want io.EOF", n, err)
			}
		}
	}
}
