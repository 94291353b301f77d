package probes_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// TestRampRecommendsHalfTheCapacity: against hidden limits of several shapes, the ramp stops
// at the first sign of the limit and recommends a rate and a parallelism within 25% of half
// the hidden capacity.
func TestRampRecommendsHalfTheCapacity(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       adapters.SimConfig
		halfRate  float64 // half the hidden capacity in calls/s
		halfPar   float64 // half the calls in flight that capacity takes (Little's law)
		wantWords string
	}{
		{"rate limit", adapters.SimConfig{Rate: 200, Burst: 10, Latency: 50 * time.Millisecond, Sigma: 0.25, Seed: 1}, 100, 5, "429s"},
		{"concurrency, latency climbs", adapters.SimConfig{Concurrency: 10, Latency: 50 * time.Millisecond, Sigma: 0.25, Seed: 2}, 100, 5, "knee"},
		{"concurrency, 429s", adapters.SimConfig{Concurrency: 16, Overload: adapters.Overload429, Latency: 40 * time.Millisecond, Sigma: 0.25, Seed: 3}, 200, 8, "429s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := adapters.NewSim(tc.cfg)
				e, err := engine.New(engine.Config{Settings: engine.Settings{Parallelism: 1, Burst: 1}, Retries: 0,
					Adapter: adapters.NewSimAdapter(sim), Source: engine.NewLineReader(strings.NewReader(strings.Repeat("x\n", 100_000)), false),
					Results: io.Discard})
				if err != nil {
					t.Fatal(err)
				}
				ws := probes.NewWindows(500*time.Millisecond, 200)
				sub := e.Subscribe(1<<14, engine.CallEnd)
				stop := make(chan struct{})
				go probes.Feed(sub, stop, ws.Observe)
				done := make(chan struct{})
				go func() { _, _ = e.Run(context.Background()); close(done) }()
				res := probes.Ramp(context.Background(), e, ws, probes.RampConfig{Step: 3 * time.Second, MaxCalls: 20_000})
				e.Stop("test")
				<-done
				close(stop)
				if !strings.Contains(res.Stop, tc.wantWords) {
					t.Errorf("Ramp() stopped because %q, want a reason with %q", res.Stop, tc.wantWords)
				}
				if res.Rate < 0.75*tc.halfRate || res.Rate > 1.25*tc.halfRate {
					t.Errorf("Ramp() recommends rate %.0f/s, want within 25%% of %.0f/s", res.Rate, tc.halfRate)
				}
				if p := float64(res.Parallelism); p < 0.75*tc.halfPar || p > 1.25*tc.halfPar {
					t.Errorf("Ramp() recommends parallelism %d, want within 25%% of %.0f", res.Parallelism, tc.halfPar)
				}
				if t.Failed() {
					for _, s := range res.Steps {
						t.Logf("%+v", s)
					}
				}
			})
		})
	}
}
