// Package probes turns a run's event stream into windowed statistics: latency percentiles,
// rates of calls, 429s and errors. Observers (progress lines, the TUI) read them; the engine
// never waits for them.
package probes

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/throttle-dev/throttle/engine"
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

// Interval collects call ends until [Interval.Take] hands them over and starts afresh. It is
// safe for concurrent use: one goroutine feeds events while another takes.
type Interval struct {
	mu    sync.Mutex
	hist  *hdrhistogram.Histogram
	stats Stats
}

// NewInterval returns an empty Interval.
func NewInterval() *Interval {
	return &Interval{hist: hdrhistogram.New(minLatencyMicros, maxLatencyMicros, sigFigs)}
}

// Observe adds one event; events other than call ends are ignored.
func (iv *Interval) Observe(ev engine.Event) {
	if ev.Kind != engine.CallEnd {
		return
	}
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.stats.Calls++
	switch {
	case ev.Status == 429:
		iv.stats.TooMany++
	case ev.Err || ev.Verdict != engine.OK:
		iv.stats.Errors++
	default:
		iv.stats.OK++
	}
	us := ev.Latency.Microseconds()
	_ = iv.hist.RecordValue(min(max(us, minLatencyMicros), maxLatencyMicros))
}

// Take returns the statistics since the previous Take and resets them.
func (iv *Interval) Take() Stats {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	s := iv.stats
	if s.Calls > 0 {
		s.P50 = micros(iv.hist.ValueAtQuantile(50))
		s.P95 = micros(iv.hist.ValueAtQuantile(95))
		s.P99 = micros(iv.hist.ValueAtQuantile(99))
		s.Max = micros(iv.hist.Max())
	}
	iv.hist.Reset()
	iv.stats = Stats{}
	return s
}

func micros(v int64) time.Duration { return time.Duration(v) * time.Microsecond }

// Feed observes every event of sub until stop is closed. Run it on its own goroutine.
func Feed(sub *engine.Subscription, stop <-chan struct{}, observers ...func(engine.Event)) {
	for {
		select {
		case ev := <-sub.C:
			for _, o := range observers {
				o(ev)
			}
		case <-stop:
			return
		}
	}
}
