package probes

import (
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

func endAt(at time.Time, latency time.Duration, status int, verdict engine.Verdict, msg string) engine.Event {
	return engine.Event{Kind: engine.CallEnd, At: at, Latency: latency, Status: status, Verdict: verdict, Message: msg}
}

func TestSeriesPointsPerSecond(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	s := NewSeries()
	// Second 0: latencies 1..100 ms, all ok. Second 2: two 429s and one 503.
	for i := 1; i <= 100; i++ {
		s.Observe(endAt(t0.Add(time.Duration(i)*time.Millisecond), time.Duration(i)*time.Millisecond, 200, engine.OK, ""))
	}
	s.Observe(endAt(t0.Add(2*time.Second), 5*time.Millisecond, 429, engine.Retry, "429 Too Many Requests"))
	s.Observe(endAt(t0.Add(2*time.Second+time.Millisecond), 5*time.Millisecond, 429, engine.Retry, "429 Too Many Requests"))
	s.Observe(endAt(t0.Add(2*time.Second+2*time.Millisecond), 7*time.Millisecond, 503, engine.Retry, "503 Service Unavailable"))

	pts := s.Points(t0.Add(3*time.Second+500*time.Millisecond), 4*time.Second)
	if len(pts) != 4 {
		t.Fatalf("Points() returned %d points, want 4", len(pts))
	}
	// The window ends with the last complete second (t0+2s) and starts 3 s earlier.
	if !pts[0].At.Equal(t0.Add(-time.Second)) || !pts[3].At.Equal(t0.Add(2*time.Second)) {
		t.Errorf("Points() spans %v..%v, want %v..%v", pts[0].At, pts[3].At, t0.Add(-time.Second), t0.Add(2*time.Second))
	}
	p := pts[1]
	if p.Calls != 100 || p.OK != 100 || !near(p.P50, 50*time.Millisecond) || !near(p.P95, 95*time.Millisecond) || !near(p.P99, 99*time.Millisecond) {
		t.Errorf("point of second 0 = %+v, want 100 ok calls, p50 50ms, p95 95ms, p99 99ms", p)
	}
	if pts[2].Calls != 0 {
		t.Errorf("point of second 1 = %+v, want an empty second", pts[2])
	}
	if p := pts[3]; p.Calls != 3 || p.TooMany != 2 || p.Errors != 1 {
		t.Errorf("point of second 2 = %+v, want 3 calls: 2 × 429, 1 error", p)
	}
	groups := s.Errors(5)
	if len(groups) != 1 || groups[0].Message != "503 Service Unavailable" || groups[0].Count != 1 {
		t.Errorf("Errors() = %+v, want one group of the 503 (429s are counted apart)", groups)
	}
}

func TestSeriesForgetsOldSeconds(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	s := NewSeries()
	s.Observe(endAt(t0, time.Millisecond, 200, engine.OK, ""))
	later := t0.Add(SeriesSpan + 10*time.Second)
	s.Observe(endAt(later.Add(-2*time.Second), time.Millisecond, 200, engine.OK, ""))
	var total int64
	for _, p := range s.Points(later, SeriesSpan) {
		total += p.Calls
	}
	if total != 1 {
		t.Errorf("calls over the span = %d, want 1: the call older than the span is gone", total)
	}
}

func TestSeriesErrorGroups(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	s := NewSeries()
	for i := 1; i <= 10; i++ {
		s.Observe(endAt(t0.Add(time.Duration(i)*100*time.Millisecond), time.Duration(i)*10*time.Millisecond, 200, engine.OK, ""))
	}
	for i := range maxErrorGroups + 5 {
		s.Observe(endAt(t0.Add(6*time.Second+time.Duration(i)), time.Millisecond, 500, engine.Retry, "error "+string(rune('A'+i%60))+string(rune('a'+i/60))))
	}
	groups := s.Errors(1000)
	if len(groups) > maxErrorGroups+1 {
		t.Errorf("Errors() has %d groups, want at most %d (the rest as \"other errors\")", len(groups), maxErrorGroups+1)
	}
	var other int64
	for _, g := range groups {
		if g.Message == "other errors" {
			other = g.Count
		}
	}
	if other != 5 {
		t.Errorf("\"other errors\" count = %d, want 5", other)
	}
}

// near reports whether got is want within HdrHistogram's 3-significant-digit precision.
func near(got, want time.Duration) bool {
	d := got - want
	return d >= -want/1000 && d <= want/1000
}
