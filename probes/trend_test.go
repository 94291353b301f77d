package probes_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/throttle-dev/throttle/probes"
)

// TestTrendOf: a slope has to leave its noise band (the larger of rel × mean and twice the
// standard error of the fitted change) to count; change is the fitted line's total change.
func TestTrendOf(t *testing.T) {
	for _, tc := range []struct {
		name       string
		values     []float64
		rel        float64
		want       probes.Trend
		change     float64 // the fitted change, checked when check is set
		check      bool
		changeNear float64 // tolerance on change
	}{
		// Fewer than three points: no line to trust.
		{name: "none", values: nil, rel: 0.15, want: probes.Flat, check: true},
		{name: "one", values: []float64{100}, rel: 0.15, want: probes.Flat, check: true},
		{name: "two far apart", values: []float64{100, 500}, rel: 0.15, want: probes.Flat, check: true},
		{name: "two falling", values: []float64{500, 100}, rel: 0, want: probes.Flat, check: true},

		// Flat, with and without noise.
		{name: "constant", values: []float64{180, 180, 180, 180, 180}, rel: 0.15, want: probes.Flat, check: true},
		{name: "constant zero", values: []float64{0, 0, 0}, rel: 0.15, want: probes.Flat, check: true},
		{name: "constant, no relative band", values: []float64{7, 7, 7, 7}, rel: 0, want: probes.Flat, check: true},
		{name: "noise around 100", values: []float64{100, 104, 97, 102, 99, 101, 98, 103, 96, 100, 102, 99}, rel: 0.15, want: probes.Flat},
		{name: "large zigzag with a slight climb", values: []float64{100, 160, 90, 170, 95, 175}, rel: 0.15, want: probes.Flat},
		{name: "large zigzag, no relative band", values: []float64{100, 160, 90, 170, 95, 175}, rel: 0, want: probes.Flat},

		// A single high window is noise, wherever it is.
		{name: "spike first", values: []float64{400, 100, 100, 100, 100}, rel: 0.15, want: probes.Flat},
		{name: "spike in the middle", values: []float64{100, 100, 400, 100, 100}, rel: 0.15, want: probes.Flat, change: 0, check: true},
		{name: "spike last", values: []float64{100, 100, 100, 100, 1000}, rel: 0.15, want: probes.Flat},
		{name: "spike last over noise", values: []float64{100, 104, 97, 102, 99, 101, 98, 103, 96, 100, 102, 900}, rel: 0.15, want: probes.Flat},
		{name: "spike last, no relative band", values: []float64{100, 100, 100, 100, 1000}, rel: 0, want: probes.Flat},

		// Steady climbs and falls; on a straight line the fitted change is exact.
		{name: "steady climb", values: []float64{100, 110, 120, 130, 140}, rel: 0.15, want: probes.Rising, change: 40, check: true},
		{name: "steady climb over a minute", values: []float64{100, 120, 140, 160, 180, 200, 220, 240, 260, 280, 300, 320}, rel: 0.15, want: probes.Rising, change: 220, check: true},
		{name: "noisy climb", values: []float64{100, 112, 118, 133, 139, 151}, rel: 0.15, want: probes.Rising, change: 175.5 / 17.5 * 5, check: true},
		{name: "steady fall", values: []float64{200, 180, 160, 140, 120}, rel: 0.15, want: probes.Falling, change: -80, check: true},
		{name: "noisy fall", values: []float64{0.05, 0.041, 0.036, 0.024, 0.021, 0.009}, rel: 0.15, want: probes.Falling},
		{name: "a step up that stays", values: []float64{100, 100, 100, 100, 300, 300}, rel: 0.15, want: probes.Rising},

		// The relative band: a 10% climb across the series is flat at 15%, rising at 5%.
		{name: "small climb inside a 15% band", values: []float64{100, 105, 110}, rel: 0.15, want: probes.Flat, change: 10, check: true},
		{name: "small climb outside a 5% band", values: []float64{100, 105, 110}, rel: 0.05, want: probes.Rising, change: 10, check: true},
		{name: "small fall inside a 15% band", values: []float64{110, 105, 100}, rel: 0.15, want: probes.Flat, change: -10, check: true},
		{name: "small fall outside a 5% band", values: []float64{110, 105, 100}, rel: 0.05, want: probes.Falling, change: -10, check: true},
		{name: "any straight climb without a relative band", values: []float64{100, 100.5, 101}, rel: 0, want: probes.Rising, change: 1, check: true},
		{name: "climb from zero (mean small)", values: []float64{0, 0.001, 0.002, 0.003}, rel: 0.15, want: probes.Rising, change: 0.003, check: true, changeNear: 1e-12},
	} {
		got, change := probes.TrendOf(tc.values, tc.rel)
		if got != tc.want {
			t.Errorf("%s: TrendOf(%v, %v) = %v (change %.4g), want %v", tc.name, tc.values, tc.rel, got, change, tc.want)
		}
		tol := tc.changeNear
		if tol == 0 {
			tol = 1e-9 * max(1, math.Abs(tc.change))
		}
		if tc.check && math.Abs(change-tc.change) > tol {
			t.Errorf("%s: TrendOf(%v, %v) change = %v, want %v", tc.name, tc.values, tc.rel, change, tc.change)
		}
	}
}

// TestTrendOfSpikeLastIsNoiseAtAnyLength: one high last window over a flat series never reads
// as a trend, whatever the number of windows, while two high windows (a step) do from four on.
func TestTrendOfSpikeLastIsNoiseAtAnyLength(t *testing.T) {
	for n := 3; n <= 24; n++ {
		for _, high := range []int{1, 2} {
			v := make([]float64, n)
			for i := range v {
				v[i] = 180
			}
			for i := n - high; i < n; i++ {
				v[i] = 2000
			}
			want := probes.Flat
			if high == 2 && n >= 4 {
				want = probes.Rising
			}
			if got, _ := probes.TrendOf(v, 0.15); got != want {
				t.Errorf("TrendOf(%d windows, last %d high) = %v, want %v", n, high, got, want)
			}
		}
	}
}

// TestTrendString names the trends.
func TestTrendString(t *testing.T) {
	for tr, want := range map[probes.Trend]string{probes.Rising: "rising", probes.Flat: "flat", probes.Falling: "falling"} {
		if got := fmt.Sprint(tr); got != want {
			t.Errorf("Trend(%d).String() = %q, want %q", tr, got, want)
		}
	}
}
