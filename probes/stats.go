// Package probes turns a run's event stream into windowed statistics — latency percentiles,
// rates of calls, 429s and errors by class, trends — and judges them: which limit binds, what
// the advisor suggests, what the auto-tuner changes. Observers read them; the engine never
// waits for them.
package probes

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency bounds of the histograms: 1 µs to 10 minutes at 3 significant digits.
const (
	minLatencyMicros = 1
	maxLatencyMicros = 10 * 60 * 1e6
	sigFigs          = 3
)

// Stats are the calls that ended within one interval.
type Stats struct {
	Calls   int64 // calls that ended
	OK      int64
	TooMany int64 // 429 answers
	Errors  int64 // other failures: no answer, or a non-OK answer other than 429
	P50     time.Duration
	P95     time.Duration
	P99     time.Duration
	Max     time.Duration
}

func micros(v int64) time.Duration { return time.Duration(v) * time.Microsecond }

// NewLatencyHistogram returns a histogram of latencies with the bounds and precision every
// statistic of this package uses, so that numbers computed elsewhere (a replay) agree.
func NewLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(minLatencyMicros, maxLatencyMicros, sigFigs)
}

// RecordLatency adds d to h, clamped to the histogram's bounds.
func RecordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	_ = h.RecordValue(min(max(d.Microseconds(), minLatencyMicros), maxLatencyMicros))
}

// Quantile returns h's latency at quantile q (0 to 100).
func Quantile(h *hdrhistogram.Histogram, q float64) time.Duration {
	return micros(h.ValueAtQuantile(q))
}
