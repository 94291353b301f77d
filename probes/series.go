package probes

import (
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/throttle-dev/throttle/engine"
)

// SeriesSpan is how far back a [Series] remembers: the longest chart window.
const SeriesSpan = 15 * time.Minute

// maxErrorGroups bounds the distinct error messages a Series tracks; later new ones are
// counted under "other errors".
const maxErrorGroups = 64

// Point is one second of a run: the calls that ended in it.
type Point struct {
	At      time.Time // the second's start
	Calls   int64
	OK      int64
	TooMany int64
	Errors  int64
	P50     time.Duration
	P95     time.Duration
	P99     time.Duration
}

// ErrorGroup is one distinct failure message and how often it was seen.
type ErrorGroup struct {
	Message string
	Count   int64
	Last    time.Time
}

type bucket struct {
	sec int64 // unix second; 0 when unused
	Point
}

// Series keeps per-second points of a run for the last [SeriesSpan] and failures grouped by
// message. It is fed from the event stream and
// read by the TUI on its own tick; it is safe for concurrent use.
type Series struct {
	mu     sync.Mutex
	ring   []bucket
	cur    int64 // the second the histogram below collects
	hist   *hdrhistogram.Histogram
	groups map[string]*ErrorGroup
}

// NewSeries returns an empty Series.
func NewSeries() *Series {
	return &Series{
		ring:   make([]bucket, int(SeriesSpan/time.Second)),
		hist:   NewLatencyHistogram(),
		groups: make(map[string]*ErrorGroup),
	}
}

// Observe adds one event; only call ends count.
func (s *Series) Observe(ev engine.Event) {
	if ev.Kind != engine.CallEnd {
		return
	}
	sec := ev.At.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rollLocked(sec)
	b := s.bucketLocked(sec)
	b.Calls++
	switch {
	case ev.Status == 429:
		b.TooMany++
	case ev.Err || ev.Verdict != engine.OK:
		b.Errors++
	default:
		b.OK++
	}
	if sec == s.cur {
		RecordLatency(s.hist, ev.Latency)
	}
	if ev.Message != "" && ev.Status != 429 {
		s.groupLocked(ev.Message, ev.At)
	}
}

// rollLocked closes the second being collected when sec is later. It requires s.mu.
func (s *Series) rollLocked(sec int64) {
	if sec > s.cur {
		if s.cur != 0 && s.hist.TotalCount() > 0 {
			b := s.bucketLocked(s.cur)
			b.P50, b.P95, b.P99 = micros(s.hist.ValueAtQuantile(50)), micros(s.hist.ValueAtQuantile(95)), micros(s.hist.ValueAtQuantile(99))
		}
		s.hist.Reset()
		s.cur = sec
	}
}

// bucketLocked returns sec's bucket, clearing it if it held an older second. It requires s.mu.
func (s *Series) bucketLocked(sec int64) *bucket {
	b := &s.ring[sec%int64(len(s.ring))]
	if b.sec != sec {
		*b = bucket{sec: sec, Point: Point{At: time.Unix(sec, 0)}}
	}
	return b
}

func (s *Series) groupLocked(msg string, at time.Time) {
	g, ok := s.groups[msg]
	if !ok {
		if len(s.groups) >= maxErrorGroups {
			msg = "other errors"
			if g, ok = s.groups[msg]; !ok {
				g = &ErrorGroup{Message: msg}
				s.groups[msg] = g
			}
		} else {
			g = &ErrorGroup{Message: msg}
			s.groups[msg] = g
		}
	}
	g.Count++
	g.Last = at
}

// Points returns one point per second of the span that ends with the last complete second
// before now, oldest first; seconds without calls are zero points.
func (s *Series) Points(now time.Time, span time.Duration) []Point {
	n := int(span / time.Second)
	n = min(max(n, 1), len(s.ring))
	end := now.Unix() - 1
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rollLocked(now.Unix())
	out := make([]Point, n)
	for i := range out {
		sec := end - int64(n-1-i)
		b := s.ring[sec%int64(len(s.ring))]
		if b.sec == sec {
			out[i] = b.Point
		} else {
			out[i] = Point{At: time.Unix(sec, 0)}
		}
	}
	return out
}

// Errors returns the distinct failure messages (429s aside), the most recent first, at most n.
func (s *Series) Errors(n int) []ErrorGroup {
	s.mu.Lock()
	out := make([]ErrorGroup, 0, len(s.groups))
	for _, g := range s.groups {
		out = append(out, *g)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Last.Equal(out[j].Last) {
			return out[i].Last.After(out[j].Last)
		}
		return out[i].Message < out[j].Message
	})
	return out[:min(n, len(out))]
}
