package tui

import (
	"math"
	"strconv"
	"strings"

	"github.com/guptarohit/asciigraph"
)

// chart renders a titled trend chart of exactly h+1 lines (title, then h rows) that fit w
// cells. extra, when not nil, is drawn as a second series (the rate cap). Labels are compact
// ("1.2k") so that the plot keeps its width; asciigraph's ragged lines are padded and clipped.
func chart(title string, values, extra []float64, w, h int, peaks bool, color asciigraph.AnsiColor, st Styles) []string {
	out := []string{fit(" "+st.Accent.Render(title), w)}
	if h < 1 {
		return out
	}
	if len(values) == 0 {
		values = []float64{0}
	}
	const labelW = 7 // "  1.2k ┤": asciigraph's offset of 3, a four-cell label, the axis
	plotW := max(w-labelW-1, 2)
	values = resample(values, plotW, peaks)
	series := [][]float64{values}
	colors := []asciigraph.AnsiColor{color}
	upper := 1.0
	for _, v := range values {
		upper = max(upper, v)
	}
	if extra != nil {
		extra = resample(extra, plotW, false)
		series = append(series, extra)
		colors = append(colors, st.ChartCap)
		for _, v := range extra {
			upper = max(upper, v)
		}
	}
	opts := []asciigraph.Option{
		asciigraph.Height(h - 1), asciigraph.Width(plotW), asciigraph.LowerBound(0), asciigraph.UpperBound(upper),
		asciigraph.YAxisValueFormatter(compact),
	}
	if !st.Plain {
		opts = append(opts, asciigraph.SeriesColors(colors...))
	}
	plot := asciigraph.PlotMany(series, opts...)
	for _, line := range strings.Split(plot, "\n") {
		if len(out) > h {
			break
		}
		out = append(out, fit(line, w))
	}
	for len(out) <= h {
		out = append(out, strings.Repeat(" ", w))
	}
	return out
}

// compact formats an axis value in at most four cells: 0, 12, 240, 1.2k, 35k, 2.1M, 0.5.
func compact(v float64) string {
	a := math.Abs(v)
	var s string
	switch {
	case a < 0.05:
		s = "0"
	case a >= 1e6:
		s = strconv.FormatFloat(v/1e6, 'f', prec(a/1e6), 64) + "M"
	case a >= 1e3:
		s = strconv.FormatFloat(v/1e3, 'f', prec(a/1e3), 64) + "k"
	case a >= 10 || a == 0:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	default:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strings.Repeat(" ", max(0, 4-len(s))) + s
}

func prec(v float64) int {
	if v >= 10 {
		return 0
	}
	return 1
}

// resample fits values into at most n columns: each column is the mean of its seconds, or
// their maximum when peaks is set, so that a one-second burst of 429s is not sampled away.
func resample(values []float64, n int, peaks bool) []float64 {
	if len(values) <= n {
		return values
	}
	out := make([]float64, n)
	for i := range out {
		from, to := i*len(values)/n, (i+1)*len(values)/n
		sum, top := 0.0, 0.0
		for _, v := range values[from:to] {
			sum += v
			top = max(top, v)
		}
		if peaks {
			out[i] = top
		} else {
			out[i] = sum / float64(to-from)
		}
	}
	return out
}
