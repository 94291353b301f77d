package engine

import "testing"

func TestFormatComputedRate(t *testing.T) {
	for in, want := range map[float64]string{0: "unlimited", 187.654: "188/s", 1234.5: "1230/s", 2.5: "2.5/s", 0.5: "30/m", 1.0 / 300: "12/h"} {
		if got := FormatComputedRate(in); got != want {
			t.Errorf("FormatComputedRate(%v) = %q, want %q", in, got, want)
		}
	}
}
