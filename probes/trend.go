package probes

import "math"

// Trend is the direction of a series of window values.
type Trend int8

// The trends of [TrendOf].
const (
	Falling Trend = -1
	Flat    Trend = 0
	Rising  Trend = 1
)

// String returns "falling", "flat" or "rising".
func (t Trend) String() string {
	switch t {
	case Rising:
		return "rising"
	case Falling:
		return "falling"
	}
	return "flat"
}

// TrendOf fits a least-squares line through values (one per window, oldest first) and calls
// the series rising or falling only when the line's change across the series leaves a noise
// band: the larger of rel times the mean and twice the standard error of that change. A
// single high window is noise, a steady climb is a trend. change is the fitted line's total
// change from the first window to the last.
func TrendOf(values []float64, rel float64) (t Trend, change float64) {
	n := float64(len(values))
	if len(values) < 3 {
		return Flat, 0
	}
	var sx, sy, sxx, sxy float64
	for i, v := range values {
		x := float64(i)
		sx, sy, sxx, sxy = sx+x, sy+v, sxx+x*x, sxy+x*v
	}
	den := n*sxx - sx*sx
	slope := (n*sxy - sx*sy) / den
	icept := (sy - slope*sx) / n
	var sse float64
	for i, v := range values {
		r := v - (icept + slope*float64(i))
		sse += r * r
	}
	// Standard error of the slope, times the span, is the uncertainty of the change.
	seSlope := math.Sqrt(sse/(n-2)) / math.Sqrt(sxx-sx*sx/n)
	change = slope * (n - 1)
	band := max(rel*math.Abs(sy/n), 2*seSlope*(n-1))
	switch {
	case change > band:
		return Rising, change
	case change < -band:
		return Falling, change
	}
	return Flat, change
}
