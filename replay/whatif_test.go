package replay

import (
	"cmp"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/recordtest"
	"github.com/throttle-dev/throttle/record"
)

// raise is one change of parallelism during a recorded run.
type raise = struct {
	at  time.Duration
	set engine.Settings
}

// runSim runs n items against a simulated API in virtual time, recorded; raise, when not nil,
// changes the parallelism once.
func runSim(t *testing.T, n int, cfg adapters.SimConfig, set engine.Settings, r *raise) (*record.Recording, engine.Summary) {
	return runSimAuto(t, n, cfg, set, r, false)
}

// runSimAuto is runSim with the auto-tuner turning the knobs when auto is set.
func runSimAuto(t *testing.T, n int, cfg adapters.SimConfig, set engine.Settings, r *raise, auto bool) (*record.Recording, engine.Summary) {
	t.Helper()
	run := recordtest.Run{Items: n, Sim: cfg, Settings: set, Retries: 6, Auto: auto}
	if r != nil {
		run.Changes = []recordtest.Change{{At: r.at, Parallelism: r.set.Parallelism}}
	}
	return recordtest.Read(t, run)
}

func ptr[T any](v T) *T { return &v }

func TestWhatIfPredictsAHigherSetting(t *testing.T) {
	cases := []struct {
		name     string
		sim      adapters.SimConfig
		recorded int
		raise    *raise
		asked    int
		n        int // items; 4000 when 0
	}{
		{"rate limit, Retry-After 1s", adapters.SimConfig{Rate: 200, Burst: 1, RetryAfter: time.Second, Latency: 40 * time.Millisecond, Sigma: 0.25, Seed: 3}, 12, nil, 32, 0},
		{"rate limit, Retry-After to the next token", adapters.SimConfig{Rate: 300, Burst: 5, Latency: 40 * time.Millisecond, Sigma: 0.25, Seed: 5}, 16, nil, 48, 2000},
		{"latency only, below the limit", adapters.SimConfig{Concurrency: 64, Latency: 50 * time.Millisecond, Sigma: 0.25, Seed: 4}, 4, nil, 8, 0},
		{"queueing past capacity, seen after a raise", adapters.SimConfig{Concurrency: 16, Latency: 50 * time.Millisecond, Sigma: 0.25, Seed: 6}, 8,
			&raise{10 * time.Second, engine.Settings{Parallelism: 24}}, 32, 0},
		{"429 past capacity, seen after a raise", adapters.SimConfig{Concurrency: 20, Overload: adapters.Overload429, Latency: 50 * time.Millisecond, Sigma: 0.25, Seed: 7}, 8,
			&raise{10 * time.Second, engine.Settings{Parallelism: 24}}, 32, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := cmp.Or(tc.n, 4000)
			rec, recSum := runSim(t, n, tc.sim, engine.Settings{Parallelism: tc.recorded, Burst: 1}, tc.raise)
			_, actual := runSim(t, n, tc.sim, engine.Settings{Parallelism: tc.asked, Burst: 1}, nil)
			began := time.Now()
			p, err := Predict(context.Background(), rec, askParallelism(tc.asked))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("prediction took %v\n%s", time.Since(began), p.Report())
			t.Logf("recorded %v (%d calls, %d 429s); actual at %d: %v (%d calls, %d 429s)", recSum.Elapsed, recSum.Calls, recSum.TooMany,
				tc.asked, actual.Elapsed, actual.Calls, actual.TooMany)
			if p.Predicted.OK+p.Predicted.Failed != int64(n) {
				t.Fatalf("the prediction ran %d items, want %d", p.Predicted.OK+p.Predicted.Failed, n)
			}
			if off := math.Abs(p.Predicted.Elapsed.Seconds()/actual.Elapsed.Seconds() - 1); off > 0.2 {
				t.Fatalf("predicted finish %v, actual %v: %.0f%% off (goal within 20%%)", p.Predicted.Elapsed, actual.Elapsed, 100*off)
			}
		})
	}
}

func TestWhatIfRateAndAuto(t *testing.T) {
	const n = 4000
	sim := adapters.SimConfig{Rate: 300, Burst: 5, Latency: 40 * time.Millisecond, Sigma: 0.25, Seed: 8}
	rec, _ := runSim(t, n, sim, engine.Settings{Parallelism: 16, Burst: 1}, nil)
	cases := []struct {
		name string
		ask  WhatIf
		set  engine.Settings
		auto bool
		tol  float64
	}{
		// Under the limit: no 429s, the cap sets the pace.
		{"rate cap under the limit", WhatIf{Knobs: engine.Turn(engine.KnobRate, engine.Settings{Rate: 250})}, engine.Settings{Parallelism: 16, Rate: 250, Burst: 1}, false, 0.2},
		// The tuner's own decisions, in virtual time, against the fitted limit.
		{"auto from a low start", WhatIf{Knobs: askParallelism(4).Knobs, Auto: ptr(true)}, engine.Settings{Parallelism: 4, Burst: 1}, true, 0.25},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, actual := runSimAuto(t, n, sim, tc.set, nil, tc.auto)
			p, err := Predict(context.Background(), rec, tc.ask)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s\nactual: %v, %d calls, %d 429s", p.Report(), actual.Elapsed, actual.Calls, actual.TooMany)
			if p.Auto != tc.auto || p.Settings.Rate != tc.set.Rate || p.Settings.Parallelism != tc.set.Parallelism {
				t.Fatalf("asked %+v, predicted with %+v auto %v", tc.ask, p.Settings, p.Auto)
			}
			if p.Predicted.OK+p.Predicted.Failed != n {
				t.Fatalf("the prediction ran %d items, want %d", p.Predicted.OK+p.Predicted.Failed, n)
			}
			if off := math.Abs(p.Predicted.Elapsed.Seconds()/actual.Elapsed.Seconds() - 1); off > tc.tol {
				t.Fatalf("predicted finish %v, actual %v: %.0f%% off", p.Predicted.Elapsed, actual.Elapsed, 100*off)
			}
		})
	}
}

func TestParseWhatIf(t *testing.T) {
	w, err := ParseWhatIf("parallelism=64, rate=300/s,pace=100ms,burst=5,auto=on")
	if err != nil {
		t.Fatal(err)
	}
	if s := w.Knobs.Apply(engine.Settings{}); s != (engine.Settings{Parallelism: 64, Rate: 300, Pace: 100 * time.Millisecond, Burst: 5}) || !*w.Auto {
		t.Fatalf("parsed %+v", w)
	}
	if w, err := ParseWhatIf("rate=3000/m"); err != nil || w.Knobs.Apply(engine.Settings{}).Rate != 50 || w.Knobs.String() != "rate 50/s" {
		t.Fatalf("rate=3000/m: %v %v", w.Knobs, err)
	}
	for _, bad := range []string{"", "parallelism", "parallelism=0", "parallelism=x", "rate=fast", "pace=-1s", "burst=0", "auto=maybe", "bogus=1"} {
		if _, err := ParseWhatIf(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestWhatIfSaysWhenItExtrapolates(t *testing.T) {
	rec, _ := runSim(t, 2000, adapters.SimConfig{Latency: 20 * time.Millisecond, Sigma: 0.25, Seed: 9}, engine.Settings{Parallelism: 4, Burst: 1}, nil)
	near, err := Predict(context.Background(), rec, askParallelism(5))
	if err != nil {
		t.Fatal(err)
	}
	if len(near.Notes) != 0 {
		t.Fatalf("5 in flight is near the recording's 4, yet: %q", near.Notes)
	}
	far, err := Predict(context.Background(), rec, askParallelism(64))
	if err != nil {
		t.Fatal(err)
	}
	report := far.Report()
	if !strings.Contains(report, "never had more than 4 calls in flight; the predicted run reached 64") || !strings.Contains(report, "saw no 429s") {
		t.Fatalf("64 in flight is far past the data, yet the report says:\n%s", report)
	}
}

// askParallelism is the what-if of parallelism n alone.
func askParallelism(n int) WhatIf {
	return WhatIf{Knobs: engine.Turn(engine.KnobParallelism, engine.Settings{Parallelism: n})}
}
