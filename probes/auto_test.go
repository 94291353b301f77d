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

// autoRun runs --auto from parallelism 2 against a simulated API for the given span of
// virtual time and returns, per second, the ok answers and 429s the server gave.
func autoRun(t *testing.T, cfg adapters.SimConfig, span time.Duration, midRun func(sim *adapters.Sim)) (ok, tooMany []int64, e *engine.Engine) {
	t.Helper()
	sim := adapters.NewSim(cfg)
	items := strings.Repeat("x\n", 200_000)
	e, err := engine.New(engine.Config{Settings: engine.Settings{Parallelism: 2, Burst: 1}, Retries: 5, Adapt: true,
		Adapter: adapters.NewSimAdapter(sim), Source: engine.NewLineReader(strings.NewReader(items), false), Results: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ws := probes.NewWindows(probes.AutoWindow, 30)
	sub := e.Subscribe(1 << 16)
	stop := make(chan struct{})
	go probes.Feed(sub, stop, ws.Observe)
	ctx, cancel := context.WithCancel(context.Background())
	tuner := probes.NewTuner(e, ws)
	go tuner.Run(ctx)
	done := make(chan struct{})
	go func() { _, _ = e.Run(ctx); close(done) }()
	var lastOK, last429 int64
	for sec := 0; sec < int(span/time.Second); sec++ {
		time.Sleep(time.Second)
		st := sim.Stats()
		ok, tooMany = append(ok, st.OK-lastOK), append(tooMany, st.TooMany-last429)
		lastOK, last429 = st.OK, st.TooMany
		if midRun != nil && sec == int(span/time.Second)/2 {
			midRun(sim)
		}
	}
	cancel()
	<-done
	close(stop)
	return ok, tooMany, e
}

func sum(v []int64) (n int64) {
	for _, x := range v {
		n += x
	}
	return n
}

// checkConverged asserts the --auto goals on per-second server counts: from second from on,
// ok answers average at least 90% of capacity and 429s stay under 2% of the answers.
func checkConverged(t *testing.T, ok, tooMany []int64, from, to int, capacity float64) {
	t.Helper()
	okN, tmN := sum(ok[from:to]), sum(tooMany[from:to])
	perSec := float64(okN) / float64(to-from)
	if perSec < 0.9*capacity {
		t.Errorf("seconds %d-%d: %.0f ok/s, want at least 90%% of the capacity %.0f/s", from, to, perSec, capacity)
	}
	if share := float64(tmN) / float64(okN+tmN); share >= 0.02 {
		t.Errorf("seconds %d-%d: 429s are %.1f%% of answers, want under 2%%", from, to, 100*share)
	}
}

// TestAutoConverges: --auto from parallelism 2 reaches 90% of a hidden capacity within 60 s
// of virtual time, with 429s under 2% of calls after that, for several shapes of limit.
func TestAutoConverges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      adapters.SimConfig
		capacity float64
	}{
		{"rate limit with 429s", adapters.SimConfig{Rate: 200, Burst: 10, Latency: 50 * time.Millisecond, Sigma: 0.25, Seed: 1}, 200},
		{"concurrency limit where latency climbs", adapters.SimConfig{Concurrency: 10, Latency: 50 * time.Millisecond, Sigma: 0.25, Seed: 2}, 200},
		{"concurrency limit answering 429", adapters.SimConfig{Concurrency: 10, Overload: adapters.Overload429, Latency: 50 * time.Millisecond, Sigma: 0.25, Seed: 3}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ok, tm, e := autoRun(t, tc.cfg, 90*time.Second, nil)
				checkConverged(t, ok, tm, 60, 90, tc.capacity)
				if t.Failed() {
					t.Logf("ok/s %v\n429/s %v", ok, tm)
					for _, c := range e.Changes() {
						t.Log(c)
					}
				}
			})
		})
	}
}

// TestAutoFollowsADrop: the hidden rate limit halves mid-run; within 30 s --auto holds the
// new capacity with few 429s.
func TestAutoFollowsADrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := adapters.SimConfig{Rate: 200, Burst: 10, Latency: 50 * time.Millisecond, Sigma: 0.25, Seed: 4}
		ok, tm, e := autoRun(t, cfg, 120*time.Second, func(sim *adapters.Sim) { sim.SetLimits(100, 10, 0) })
		checkConverged(t, ok, tm, 90, 120, 100) // the drop came at second 60
		if t.Failed() {
			t.Logf("ok/s %v\n429/s %v", ok, tm)
			for _, c := range e.Changes() {
				t.Log(c)
			}
		}
	})
}

// TestAutoScenario is the scenario, in virtual time: 20,000 items against a simulated
// API with a hidden limit of 200 calls/s and a 50 ms median latency (ideal: 100 s). --auto
// from parallelism 2 must finish within 1.2× the ideal; fixed settings too low and too high
// are reported beside it (go test -run TestAutoScenario -v). Virtual time shows the tuner
// decides right, not how fast it is: `make bench` measures that on the binary over loopback.
func TestAutoScenario(t *testing.T) {
	type outcome struct {
		name     string
		finish   time.Duration
		tooMany  int64
		failed   int64
		auto     bool
		settings engine.Settings
	}
	cases := []outcome{
		{name: "--auto from parallelism 2", auto: true, settings: engine.Settings{Parallelism: 2, Burst: 1}},
		{name: "fixed parallelism 2 (too low)", settings: engine.Settings{Parallelism: 2, Burst: 1}},
		{name: "fixed parallelism 64 (too high)", settings: engine.Settings{Parallelism: 64, Burst: 1}},
		{name: "fixed parallelism 10, rate 190/s (hand-tuned)", settings: engine.Settings{Parallelism: 10, Rate: 190, Burst: 1}},
	}
	for i := range cases {
		c := &cases[i]
		synctest.Test(t, func(t *testing.T) {
			sim := adapters.NewSim(adapters.SimConfig{Rate: 200, Burst: 10, Latency: 50 * time.Millisecond, Sigma: 0.25, Seed: 7})
			e, err := engine.New(engine.Config{Settings: c.settings, Retries: 10, Adapter: adapters.NewSimAdapter(sim), Adapt: c.auto,
				Source: engine.NewLineReader(strings.NewReader(strings.Repeat("x\n", 20_000)), false), Results: io.Discard})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if c.auto {
				m := probes.NewMonitor(probes.AdvisorConfig{}, true)
				sub := e.Subscribe(1<<16, engine.CallEnd)
				stop := make(chan struct{})
				defer close(stop)
				go probes.Feed(sub, stop, m.Observe)
				go m.Tuner(e).Run(ctx)
			}
			start := time.Now()
			s, err := e.Run(ctx)
			if err != nil || s.OK+s.Failed != 20_000 || (c.auto && s.Failed > 0) {
				t.Fatalf("%s: Run() = ok %d, failed %d, %v; want 20,000 rows (all ok under --auto)", c.name, s.OK, s.Failed, err)
			}
			c.finish, c.tooMany, c.failed = time.Since(start), sim.Stats().TooMany, s.Failed
		})
	}
	t.Logf("%-48s %10s %8s %8s %8s", "20,000 items, hidden limit 200/s, 50 ms", "finish", "× ideal", "429s", "failed")
	for _, c := range cases {
		t.Logf("%-48s %10s %8.2f %8d %8d", c.name, c.finish.Round(100*time.Millisecond), c.finish.Seconds()/100, c.tooMany, c.failed)
	}
	if auto := cases[0]; auto.finish > 120*time.Second {
		t.Errorf("--auto finished in %v, want within 1.2× the ideal 100 s", auto.finish)
	}
}
