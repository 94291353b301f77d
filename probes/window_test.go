package probes

import (
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

func end(latency time.Duration, status int, verdict engine.Verdict, err bool) engine.Event {
	return engine.Event{Kind: engine.CallEnd, Latency: latency, Status: status, Verdict: verdict, Err: err}
}

func TestIntervalPercentilesOfKnownLatencies(t *testing.T) {
	iv := NewInterval()
	// 1 ms .. 100 ms, one each: p50 = 50 ms, p95 = 95 ms, p99 = 99 ms, max = 100 ms.
	for i := 1; i <= 100; i++ {
		iv.Observe(end(time.Duration(i)*time.Millisecond, 200, engine.OK, false))
	}
	iv.Observe(engine.Event{Kind: engine.CallStart}) // ignored
	s := iv.Take()
	checks := []struct {
		name      string
		got, want time.Duration
	}{
		{"p50", s.P50, 50 * time.Millisecond},
		{"p95", s.P95, 95 * time.Millisecond},
		{"p99", s.P99, 99 * time.Millisecond},
		{"max", s.Max, 100 * time.Millisecond},
	}
	for _, c := range checks {
		// HdrHistogram at 3 significant digits is exact to 0.1%.
		if diff := c.got - c.want; diff < -c.want/1000 || diff > c.want/1000 {
			t.Errorf("Take().%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if s.Calls != 100 || s.OK != 100 {
		t.Errorf("Take() calls, ok = %d, %d, want 100, 100", s.Calls, s.OK)
	}
	if again := iv.Take(); again != (Stats{}) {
		t.Errorf("second Take() = %+v, want zero after reset", again)
	}
}

func TestIntervalClassifiesOutcomes(t *testing.T) {
	iv := NewInterval()
	iv.Observe(end(time.Millisecond, 200, engine.OK, false))
	iv.Observe(end(time.Millisecond, 429, engine.Retry, false))
	iv.Observe(end(time.Millisecond, 503, engine.Retry, false))
	iv.Observe(end(time.Millisecond, 404, engine.Fail, false))
	iv.Observe(end(time.Second, 0, engine.Retry, true))
	s := iv.Take()
	if s.Calls != 5 || s.OK != 1 || s.TooMany != 1 || s.Errors != 3 {
		t.Errorf("Take() = %+v, want calls 5, ok 1, 429s 1, errors 3", s)
	}
}
