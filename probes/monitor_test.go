package probes

import (
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// TestMonitorLatency: the latency "now" is the window under way until one is complete, then
// the last complete window.
func TestMonitorLatency(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0) // a multiple of 5 s: windows start here
	m := NewMonitor(AdvisorConfig{}, false)
	if got := m.Latency(t0); got.Calls != 0 {
		t.Errorf("Latency() with no calls = %+v, want zero", got)
	}
	for i := 1; i <= 10; i++ {
		m.Observe(endAt(t0.Add(time.Duration(i)*100*time.Millisecond), time.Duration(i)*10*time.Millisecond, 200, engine.OK, ""))
	}
	if got := m.Latency(t0.Add(2 * time.Second)); got.Calls != 10 || !near(got.P50, 50*time.Millisecond) {
		t.Errorf("Latency() in the first window = %+v, want the 10 calls under way, p50 50ms", got)
	}
	m.Observe(endAt(t0.Add(6*time.Second), time.Second, 200, engine.OK, ""))
	got := m.Latency(t0.Add(7 * time.Second))
	if got.Calls != 10 || !near(got.P50, 50*time.Millisecond) || !near(got.Max, 100*time.Millisecond) {
		t.Errorf("Latency() after the first window = %+v, want its 10 calls, p50 50ms, max 100ms (not the 1 s call under way)", got)
	}
}
