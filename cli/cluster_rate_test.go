package cli

import (
	"math"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/cluster"
	"github.com/throttle-dev/throttle/probes"
)

// TestJobRateFromBeats: three hosts at 100, 60 and 40 calls/s beat once a second, each at its
// own phase; the job's rate is their sum, 200/s, at every look (the sum of the counts at a
// look read up to a host's second of calls too many or too few), and when a host leaves the
// rate falls to the others' sum, never below zero.
func TestJobRateFromBeats(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	perSec := []float64{100, 60, 40}
	phase := []time.Duration{0, 330 * time.Millisecond, 770 * time.Millisecond}
	names := []string{"a/1", "b/2", "c/3"}
	// beats returns each host's latest beat at now: its count at its last whole beat.
	beats := func(now time.Time, hosts int) []cluster.HostStatus {
		var hs []cluster.HostStatus
		for i := range hosts {
			since := now.Sub(t0.Add(phase[i]))
			if since < 0 {
				continue
			}
			at := t0.Add(phase[i]).Add(since.Truncate(time.Second))
			hs = append(hs, cluster.HostStatus{Host: names[i], Alive: true, At: at,
				Calls: int64(perSec[i] * at.Sub(t0.Add(phase[i])).Seconds())})
		}
		return hs
	}
	r := &jobRate{hosts: map[string]*probes.CounterRate{}}
	for now := t0; now.Before(t0.Add(30 * time.Second)); now = now.Add(250 * time.Millisecond) {
		ps, over := r.look(beats(now, 3))
		if now.Sub(t0) >= 3*time.Second && (math.Abs(ps-200) > 0.5 || over < time.Second) {
			t.Fatalf("%v in: %.1f calls/s over %v, want 200", now.Sub(t0), ps, over)
		}
	}
	// Host c leaves (it died, or ended): a, b go on.
	for now := t0.Add(30 * time.Second); now.Before(t0.Add(35 * time.Second)); now = now.Add(250 * time.Millisecond) {
		ps, _ := r.look(beats(now, 2))
		if math.Abs(ps-160) > 0.5 {
			t.Fatalf("%v in, host c gone: %.1f calls/s, want 160", now.Sub(t0), ps)
		}
	}
}
