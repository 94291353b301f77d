package probes_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// The limit shapes of the congestion response's tests, each a simulated API with a heavy tail
// (lognormal, sigma 0.9: p99 about 8× the median) and, where it answers a Retry-After, one of
// whole seconds, as real APIs round it. These run in virtual time: they show that the response
// is correct (every item one row, few 429s, the run near its limit), not how fast it is over
// a real network, which `make bench` measures on the binary.
var shapes = []struct {
	name  string
	cfg   adapters.SimConfig
	limit float64 // calls per second the target allows
	over  engine.Settings
}{
	{"token bucket, Retry-After 1s", adapters.SimConfig{Rate: 200, Burst: 10, RetryAfter: time.Second},
		200, engine.Settings{Parallelism: 32, Rate: 250, Burst: 1}},
	{"fixed window with quota headers", adapters.SimConfig{Quota: 400, Window: 2 * time.Second},
		200, engine.Settings{Parallelism: 32, Rate: 250, Burst: 1}},
	{"concurrency limit answering 429", adapters.SimConfig{Concurrency: 16, Overload: adapters.Overload429},
		16 / meanLatency.Seconds(), engine.Settings{Parallelism: 20, Burst: 1}},
	{"concurrency limit where latency climbs", adapters.SimConfig{Concurrency: 16, Overload: adapters.OverloadLatency},
		16 / meanLatency.Seconds(), engine.Settings{Parallelism: 20, Burst: 1}},
}

// medianLatency and meanLatency are the shapes' latency: lognormal with sigma 0.9 has a mean
// of exp(0.405) ≈ 1.5 times its median.
const (
	medianLatency = 50 * time.Millisecond
	meanLatency   = 75 * time.Millisecond
)

// shapeRun is one run of n items against a fresh simulated API.
type shapeRun struct {
	elapsed           time.Duration
	ok, failed, calls int64
	tooMany           int64
	changes           []engine.Change
}

func (r shapeRun) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: %d ok, %d failed, %d calls, %d × 429\n", r.elapsed, r.ok, r.failed, r.calls, r.tooMany)
	for _, c := range r.changes {
		fmt.Fprintln(&b, "  ", c)
	}
	return b.String()
}

// runShape runs n items in virtual time with the congestion response on, under set, with the
// auto-tuner when auto is set; midRun, when set, runs at the given instant of the run.
func runShape(t *testing.T, cfg adapters.SimConfig, set engine.Settings, auto bool, n int, at time.Duration, midRun func(*adapters.Sim)) shapeRun {
	t.Helper()
	var r shapeRun
	synctest.Test(t, func(t *testing.T) {
		cfg.Latency, cfg.Sigma, cfg.Seed = medianLatency, 0.9, 11
		sim := adapters.NewSim(cfg)
		e, err := engine.New(engine.Config{Settings: set, Retries: 8, Adapt: true, Adapter: adapters.NewSimAdapter(sim),
			Source: engine.NewLineReader(strings.NewReader(strings.Repeat("x\n", n)), false), Total: int64(n), Results: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if auto {
			m := probes.NewMonitor(probes.AdvisorConfig{}, true)
			sub := e.Subscribe(1<<16, engine.CallEnd)
			stop := make(chan struct{})
			defer close(stop)
			go probes.Feed(sub, stop, m.Observe)
			go m.Tuner(e).Run(ctx)
		}
		if midRun != nil {
			go func() {
				time.Sleep(at)
				midRun(sim)
			}()
		}
		start := time.Now()
		s, err := e.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r = shapeRun{elapsed: time.Since(start), ok: s.OK, failed: s.Failed, calls: s.Calls, tooMany: sim.Stats().TooMany, changes: e.Changes()}
	})
	return r
}

// check asserts what every shape must give: every item one ok row, 429s under 2% of calls,
// and a finish within slack × the ideal time.
func (r shapeRun) check(t *testing.T, n int, ideal time.Duration, slack float64) {
	t.Helper()
	if r.ok != int64(n) || r.failed != 0 {
		t.Errorf("%d ok and %d failed rows of %d items, want every item one ok row", r.ok, r.failed, n)
	}
	if share := float64(r.tooMany) / float64(r.calls); share >= 0.02 {
		t.Errorf("429s are %.1f%% of calls, want under 2%%", 100*share)
	}
	if limit := time.Duration(slack * float64(ideal)); r.elapsed > limit {
		t.Errorf("finished in %v, want within %v (%.2f × the ideal %v)", r.elapsed, limit, slack, ideal)
	}
	if t.Failed() {
		t.Log(r)
	}
}

// TestResponseShapes: settings 25% above the limit, without --auto, in each shape.
func TestResponseShapes(t *testing.T) {
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			n := int(30 * sh.limit) // an ideal of 30 s
			r := runShape(t, sh.cfg, sh.over, false, n, 0, nil)
			r.check(t, n, 30*time.Second, 1.2)
		})
	}
}

// TestAutoShapes: --auto from parallelism 2 in each shape.
func TestAutoShapes(t *testing.T) {
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			n := int(30 * sh.limit)
			r := runShape(t, sh.cfg, engine.Settings{Parallelism: 2, MaxParallelism: 64, Burst: 1}, true, n, 0, nil)
			r.check(t, n, 30*time.Second, 1.25)
		})
	}
}

// TestResponseFollowsAChangedLimit: a token bucket halved, then one doubled, mid-run, with
// ceilings that allow either; the effective rate follows.
func TestResponseFollowsAChangedLimit(t *testing.T) {
	ceiling := engine.Settings{Parallelism: 64, Rate: 1000, Burst: 1}
	bucket := adapters.SimConfig{Rate: 200, Burst: 10, RetryAfter: time.Second}
	t.Run("halved", func(t *testing.T) {
		// 10 s at 200/s, then 20 s at 100/s.
		r := runShape(t, bucket, ceiling, false, 4000, 10*time.Second, func(s *adapters.Sim) { s.SetLimits(100, 10, 0) })
		r.check(t, 4000, 30*time.Second, 1.5)
		if !settledUnder(r.changes, 105) {
			t.Errorf("the effective rate never went under the halved limit:\n%v", r)
		}
	})
	t.Run("doubled", func(t *testing.T) {
		// The limit doubles at 10 s: within 30 s of that the effective rate is over 90% of it.
		r := runShape(t, bucket, ceiling, false, 14000, 10*time.Second, func(s *adapters.Sim) { s.SetLimits(400, 10, 0) })
		r.check(t, 14000, 40*time.Second, 1.5)
		if at, ok := reached(r.changes, 360); !ok || at > 40*time.Second {
			t.Errorf("the effective rate reached 360/s at %v (%v), want within 30 s of the doubling at 10 s:\n%v", at, ok, r)
		}
	})
}

// reached returns when (since the run's start) the change log first shows an effective rate
// of at least rate, or the ceiling.
func reached(changes []engine.Change, rate float64) (time.Duration, bool) {
	var start time.Time
	for _, c := range changes {
		if c.Knob == "start" {
			start = c.At
		}
		if c.Origin != "adapt" || c.Knob != "effective rate" {
			continue
		}
		to, _, _ := strings.Cut(strings.TrimPrefix(c.To, "ceiling "), " ")
		if r, err := engine.ParseRate(to); err == nil && r >= rate {
			return c.At.Sub(start), true
		}
	}
	return 0, false
}

// settledUnder reports whether the change log shows an effective rate set under limit.
func settledUnder(changes []engine.Change, limit float64) bool {
	for _, c := range changes {
		if c.Origin != "adapt" || c.Knob != "effective rate" {
			continue
		}
		to, _, _ := strings.Cut(c.To, " ")
		if r, err := engine.ParseRate(to); err == nil && r > 0 && r < limit {
			return true
		}
	}
	return false
}
