package probes_test

import (
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

const (
	ms  = time.Millisecond
	sec = time.Second
)

// steady returns n windows of 5 s from t0 of a run at 160 calls/s (800 a window), all ok,
// 100 ms mean latency and p95 180 ms: at parallelism 16 that is 16 in flight, so parallelism
// binds. mod, if not nil, changes window i.
func steady(n int, mod func(i int, w *probes.Window)) []probes.Window {
	ws := make([]probes.Window, n)
	for i := range ws {
		ws[i] = probes.Window{Start: at(time.Duration(i) * 5 * sec), Length: 5 * sec,
			Calls: 800, OK: 800, InFlight: 16,
			P50: 90 * ms, P95: 180 * ms, P99: 250 * ms, Max: 400 * ms, Mean: 100 * ms, MeanOK: 100 * ms}
		if mod != nil {
			mod(i, &ws[i])
		}
	}
	return ws
}

// rateOf sets window w to calls/s over its 5 s with the given mean latency, all ok.
func rateOf(w *probes.Window, perSecond float64, mean time.Duration) {
	w.Calls = int64(perSecond * 5)
	w.OK, w.Mean, w.MeanOK = w.Calls, mean, mean
}

// last applies f to the last window only.
func last(n int, f func(w *probes.Window)) func(int, *probes.Window) {
	return func(i int, w *probes.Window) {
		if i == n-1 {
			f(w)
		}
	}
}

// onlyAt applies f to window k only.
func onlyAt(k int, f func(w *probes.Window)) func(int, *probes.Window) {
	return func(i int, w *probes.Window) {
		if i == k {
			f(w)
		}
	}
}

// all applies f to every window.
func all(f func(w *probes.Window)) func(int, *probes.Window) {
	return func(_ int, w *probes.Window) { f(w) }
}

// climbing sets p95 to from + i·step in window i.
func climbing(from, step time.Duration, then func(w *probes.Window)) func(int, *probes.Window) {
	return func(i int, w *probes.Window) {
		w.P95 = from + time.Duration(i)*step
		if then != nil {
			then(w)
		}
	}
}

func par(p int) engine.Settings { return engine.Settings{Parallelism: p, Burst: 1} }

func hasAll(s string, parts []string) (missing string, ok bool) {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return p, false
		}
	}
	return "", true
}

// TestBindingOf: one row per binding, from Little's law L = X·R and the settings; the reason
// carries the numbers.
func TestBindingOf(t *testing.T) {
	w5 := func(f func(w *probes.Window)) probes.Window {
		w := probes.Window{Start: wt0, Length: 5 * sec}
		f(&w)
		return w
	}
	for _, tc := range []struct {
		name     string
		w        probes.Window
		set      engine.Settings
		want     probes.Binding
		contains []string
	}{
		{"parallelism: 160/s × 100ms = 16 of 16",
			w5(func(w *probes.Window) { rateOf(w, 160, 100*ms) }), par(16),
			probes.BindParallelism, []string{"160 calls/s", "100ms", "16.0 in flight of 16"}},
		{"parallelism at 14 of 16 (over 85%)",
			w5(func(w *probes.Window) { rateOf(w, 140, 100*ms) }), par(16),
			probes.BindParallelism, []string{"140 calls/s", "14.0 in flight of 16"}},
		{"13 of 16 (under 85%): idle",
			w5(func(w *probes.Window) { rateOf(w, 130, 100*ms) }), par(16),
			probes.BindNone, []string{"130 calls/s", "13.0 in flight of 16", "idle"}},
		{"rate: 98/s against a cap of 100/s",
			w5(func(w *probes.Window) { rateOf(w, 98, 50*ms) }), engine.Settings{Parallelism: 64, Rate: 100, Burst: 1},
			probes.BindRate, []string{"98 calls/s", "cap of 100/s"}},
		{"rate cap far above: idle",
			w5(func(w *probes.Window) { rateOf(w, 80, 50*ms) }), engine.Settings{Parallelism: 64, Rate: 100, Burst: 1},
			probes.BindNone, []string{"80 calls/s", "4.0 in flight of 64", "idle"}},
		{"rate cap far above, parallelism binds",
			w5(func(w *probes.Window) { rateOf(w, 80, 100*ms) }), engine.Settings{Parallelism: 8, Rate: 100, Burst: 1},
			probes.BindParallelism, []string{"80 calls/s", "8.0 in flight of 8"}},
		{"pacing: 4 workers / 500ms = 8/s, latency 100ms",
			w5(func(w *probes.Window) { rateOf(w, 8, 100*ms) }), engine.Settings{Parallelism: 4, Pace: 500 * ms, Burst: 1},
			probes.BindPacing, []string{"8 calls/s", "4 workers", "500ms pace"}},
		{"pace shorter than the latency: parallelism binds",
			w5(func(w *probes.Window) { rateOf(w, 40, 100*ms) }), engine.Settings{Parallelism: 4, Pace: 50 * ms, Burst: 1},
			probes.BindParallelism, []string{"40 calls/s", "4.0 in flight of 4"}},
		{"server: 429s",
			w5(func(w *probes.Window) { rateOf(w, 160, 100*ms); w.TooMany, w.OK = 5, 795 }), par(16),
			probes.BindServer, []string{"5 × 429", "5s"}},
		{"server: 429s beat a binding rate cap",
			w5(func(w *probes.Window) { rateOf(w, 98, 50*ms); w.TooMany, w.OK = 10, 480 }), engine.Settings{Parallelism: 64, Rate: 100, Burst: 1},
			probes.BindServer, []string{"10 × 429"}},
		{"none: workers idle at 20/s × 100ms = 2 of 16",
			w5(func(w *probes.Window) { rateOf(w, 20, 100*ms) }), par(16),
			probes.BindNone, []string{"20 calls/s", "100ms", "2.0 in flight of 16", "workers idle"}},
		{"none: no calls",
			w5(func(w *probes.Window) {}), par(16),
			probes.BindNone, []string{"no calls"}},
	} {
		got, why := probes.BindingOf(tc.w, tc.set)
		if got != tc.want {
			t.Errorf("%s: BindingOf(%d calls in 5s, mean %v; %+v) = %s (%q), want %s", tc.name, tc.w.Calls, tc.w.Mean, tc.set, got, why, tc.want)
		}
		if miss, ok := hasAll(why, tc.contains); !ok {
			t.Errorf("%s: BindingOf reason = %q, want it to mention %q", tc.name, why, miss)
		}
	}
}

// adviseCase is one row of the Advise tables.
type adviseCase struct {
	name     string
	ws       []probes.Window
	set      engine.Settings
	cfg      probes.AdvisorConfig
	eff      engine.Effective // the congestion response's state; zero: none
	action   probes.Action
	knob     engine.Knob
	want     engine.Settings // the suggested settings
	binding  probes.Binding  // checked when not empty
	contains []string        // parts of the reason
	reason   string          // the whole reason, when not empty
}

// runAdvise checks one case, and the invariants of every advice: a hold suggests the current
// settings; a raise or a lower turns one knob the stated way.
func runAdvise(t *testing.T, tc adviseCase) {
	t.Helper()
	a := probes.Advise(tc.ws, tc.set, tc.eff, tc.cfg)
	if a.Action != tc.action || a.Knob != tc.knob || a.Settings != tc.want {
		t.Errorf("%s: Advise = %s %q %+v (%q),\nwant %s %q %+v", tc.name, a.Action, a.Knob, a.Settings, a.Reason, tc.action, tc.knob, tc.want)
	}
	if tc.binding != "" && a.Binding != tc.binding {
		t.Errorf("%s: Advise.Binding = %s, want %s", tc.name, a.Binding, tc.binding)
	}
	if miss, ok := hasAll(a.Reason, tc.contains); !ok {
		t.Errorf("%s: Advise reason = %q, want it to mention %q", tc.name, a.Reason, miss)
	}
	if tc.reason != "" && a.Reason != tc.reason {
		t.Errorf("%s: Advise reason = %q, want %q", tc.name, a.Reason, tc.reason)
	}
	if a.String() != a.Reason {
		t.Errorf("%s: Advice.String() = %q, want the reason %q", tc.name, a.String(), a.Reason)
	}
	checkAdviceInvariants(t, tc.name, a, tc.set)
}

func checkAdviceInvariants(t *testing.T, name string, a probes.Advice, set engine.Settings) {
	t.Helper()
	if a.Reason == "" {
		t.Errorf("%s: Advise gave no reason", name)
	}
	if a.Action == probes.Hold {
		if a.Settings != set || a.Knob != 0 {
			t.Errorf("%s: Advise = hold with knob %q, settings %+v, want no knob and the current %+v", name, a.Knob, a.Settings, set)
		}
		return
	}
	up := a.Action == probes.Raise
	other := a.Settings
	switch a.Knob {
	case engine.KnobParallelism:
		if moved := a.Settings.Parallelism > set.Parallelism; moved != up || a.Settings.Parallelism == set.Parallelism {
			t.Errorf("%s: Advise = %s parallelism %d → %d", name, a.Action, set.Parallelism, a.Settings.Parallelism)
		}
		if set.MaxParallelism > 0 && a.Settings.Parallelism > set.MaxParallelism {
			t.Errorf("%s: Advise = parallelism %d, above the ceiling %d", name, a.Settings.Parallelism, set.MaxParallelism)
		}
		if a.Settings.Parallelism < 1 {
			t.Errorf("%s: Advise = parallelism %d, want at least 1", name, a.Settings.Parallelism)
		}
		other.Parallelism = set.Parallelism
	case engine.KnobRate:
		// No rate (0) is unlimited: any rate is lower.
		if moved := set.Rate > 0 && a.Settings.Rate > set.Rate; moved != up || a.Settings.Rate == set.Rate || a.Settings.Rate <= 0 {
			t.Errorf("%s: Advise = %s rate %v → %v", name, a.Action, set.Rate, a.Settings.Rate)
		}
		other.Rate = set.Rate
	case engine.KnobPace:
		// A shorter pace is faster.
		if moved := a.Settings.Pace < set.Pace; moved != up || a.Settings.Pace == set.Pace {
			t.Errorf("%s: Advise = %s pace %v → %v", name, a.Action, set.Pace, a.Settings.Pace)
		}
		other.Pace = set.Pace
	default:
		t.Errorf("%s: Advise = %s with knob %q", name, a.Action, a.Knob)
	}
	if other != set {
		t.Errorf("%s: Advise turned more than its knob %q: %+v → %+v", name, a.Knob, set, a.Settings)
	}
}

// TestAdviseBacksOff: without the congestion response, 429s that persist (1% of the calls or
// more, or in consecutive windows) suggest a rate just under what the target accepted when a
// rate is set or the 429s say when to come back, else parallelism × 0.7; an isolated 429 is
// no reason to cut; at a latency knee with parallelism binding, parallelism × 0.8.
func TestAdviseBacksOff(t *testing.T) {
	tooMany := func(n int64) func(w *probes.Window) {
		return func(w *probes.Window) { w.TooMany, w.TooManyTimed, w.OK = n, n/2, w.Calls-n }
	}
	rate100 := engine.Settings{Parallelism: 64, Rate: 100, Burst: 10}
	for _, tc := range []adviseCase{
		{
			name: "429s, no rate cap: parallelism × 0.7",
			ws:   steady(3, last(3, tooMany(40))), set: par(16),
			action: probes.Lower, knob: engine.KnobParallelism, want: par(11), binding: probes.BindServer,
			reason: "40 × 429 in the last 5s (5.0% of calls): lower parallelism 16 → 11",
		},
		{
			name: "one 429 in hundreds of calls is no reason to cut",
			ws:   steady(20, last(20, tooMany(1))), set: par(10),
			action: probes.Hold, want: par(10), binding: probes.BindServer,
			reason: "1 × 429 in the last 5s (0.1% of calls): isolated, not a reason to cut; hold",
		},
		{
			name: "429s under 1% that recur window after window",
			ws:   steady(20, func(i int, w *probes.Window) { onlyAt(18, tooMany(3))(i, w); onlyAt(19, tooMany(3))(i, w) }), set: par(10),
			action: probes.Lower, knob: engine.KnobParallelism, want: par(7),
			contains: []string{"3 × 429", "0.4% of calls", "10 → 7"},
		},
		{
			name: "429s at parallelism 2: 1",
			ws:   steady(1, last(1, tooMany(20))), set: par(2),
			action: probes.Lower, knob: engine.KnobParallelism, want: par(1),
			contains: []string{"20 × 429", "2 → 1"},
		},
		{
			name: "429s at parallelism 1: nothing lower to suggest",
			ws:   steady(1, last(1, tooMany(20))), set: par(1),
			action: probes.Hold, want: par(1),
			contains: []string{"20 × 429", "lowest"},
		},
		{
			name: "429s with a rate cap: just under the rate the target accepted",
			ws:   steady(3, all(func(w *probes.Window) { rateOf(w, 98, 50*ms); tooMany(49)(w) })), set: rate100,
			action: probes.Lower, knob: engine.KnobRate, want: engine.Settings{Parallelism: 64, Rate: 83.8, Burst: 10}, binding: probes.BindServer,
			reason: "49 × 429 in the last 5s (10.0% of calls): lower rate 100/s → 83.8/s, the target accepted 88.2/s",
		},
		{
			name:   "429s with a rate cap under one a second",
			ws:     steady(1, all(func(w *probes.Window) { w.Calls, w.OK, w.TooMany, w.Mean = 4, 2, 2, 100*ms })),
			set:    engine.Settings{Parallelism: 4, Rate: 0.5, Burst: 1},
			action: probes.Lower, knob: engine.KnobRate, want: engine.Settings{Parallelism: 4, Rate: 0.38, Burst: 1},
			contains: []string{"2 × 429", "50.0% of calls", "30/m → 22.8/m", "accepted 24/m"},
		},
		{
			name: "429s come before a knee",
			ws: steady(12, func(i int, w *probes.Window) {
				climbing(100*ms, 20*ms, nil)(i, w)
				last(12, tooMany(8))(i, w)
			}), set: par(16),
			action: probes.Lower, knob: engine.KnobParallelism, want: par(11),
			contains: []string{"8 × 429", "16 → 11"},
		},
		{
			name: "latency knee: p95 climbs 100ms → 320ms over a minute with parallelism binding",
			ws:   steady(12, climbing(100*ms, 20*ms, nil)), set: par(16),
			action: probes.Lower, knob: engine.KnobParallelism, want: par(12), binding: probes.BindServer,
			reason: "p95 rising 100ms → 320ms over 1m with parallelism binding (latency knee): lower parallelism 16 → 12",
		},
		{
			name: "latency knee over the last minute only (older windows ignored)",
			ws: steady(20, func(i int, w *probes.Window) {
				if i >= 8 {
					w.P95 = 100*ms + time.Duration(i-8)*20*ms
				} else {
					w.P95 = 900 * ms
				}
			}), set: par(16),
			action: probes.Lower, knob: engine.KnobParallelism, want: par(12),
			contains: []string{"100ms → 320ms", "16 → 12"},
		},
		{
			name: "latency knee beats errors",
			ws: steady(12, climbing(100*ms, 20*ms, func(w *probes.Window) {
				w.Server5xx, w.OK = 80, 720
			})), set: par(16),
			action: probes.Lower, knob: engine.KnobParallelism, want: par(12),
			contains: []string{"latency knee"},
		},
	} {
		runAdvise(t, tc)
	}
}

// TestAdviseHolds: errors above the threshold, a clean period shorter than CleanFor, idle
// workers, the parallelism ceiling, or nothing to judge by.
func TestAdviseHolds(t *testing.T) {
	errs := func(w *probes.Window) {
		w.Server5xx, w.Timeouts, w.Connection, w.Client4xx, w.Other = 10, 4, 2, 0, 0
		w.OK = w.Calls - 16
	}
	for _, tc := range []adviseCase{
		{
			name: "errors above 1%: hold with the error mix",
			ws:   steady(20, last(20, errs)), set: par(16),
			action: probes.Hold, want: par(16),
			reason: "errors 2.0% of calls in the last 5s (10 5xx, 4 timeouts, 2 connection): hold until they clear",
		},
		{
			name: "every class in the mix",
			ws: steady(20, last(20, func(w *probes.Window) {
				w.Server5xx, w.Timeouts, w.Connection, w.Client4xx, w.Other = 1, 2, 3, 4, 5
				w.OK = w.Calls - 15
			})), set: par(16),
			action: probes.Hold, want: par(16),
			contains: []string{"1.9% of calls", "1 5xx, 2 timeouts, 3 connection, 4 4xx, 5 other"},
		},
		{
			name: "errors above a configured 5%",
			ws: steady(20, last(20, func(w *probes.Window) {
				w.Timeouts, w.OK = 48, w.Calls-48
			})), set: par(16), cfg: probes.AdvisorConfig{MaxErrorShare: 0.05},
			action: probes.Hold, want: par(16),
			contains: []string{"6.0% of calls", "48 timeouts"},
		},
		{
			name: "clean for 30s of 60s after 429s",
			ws:   steady(9, onlyAt(2, func(w *probes.Window) { w.TooMany, w.OK = 5, 795 })), set: par(16),
			action: probes.Hold, want: par(16),
			reason: "clean for 30s of 1m, p95 flat at 180ms",
		},
		{
			name: "clean for 55s of 60s",
			ws:   steady(11, nil), set: par(16),
			action: probes.Hold, want: par(16),
			contains: []string{"clean for 55s of 1m", "p95 flat at 180ms"},
		},
		{
			name: "clean for 5s, an error window before",
			ws:   steady(13, onlyAt(11, func(w *probes.Window) { w.Server5xx, w.OK = 100, 700 })), set: par(16),
			action: probes.Hold, want: par(16),
			contains: []string{"clean for 5s of 1m"},
		},
		{
			name: "a window without calls breaks the clean streak",
			ws: steady(20, func(i int, w *probes.Window) {
				if i == 12 {
					*w = probes.Window{Start: w.Start, Length: w.Length}
				}
			}), set: par(16),
			action: probes.Hold, want: par(16),
			contains: []string{"clean for 35s of 1m"},
		},
		{
			name: "clean for 20s of a configured 30s",
			ws:   steady(4, nil), set: par(16), cfg: probes.AdvisorConfig{CleanFor: 30 * sec},
			action: probes.Hold, want: par(16),
			contains: []string{"clean for 20s of 30s"},
		},
		{
			name: "workers idle: raising a limit would not help",
			ws:   steady(20, all(func(w *probes.Window) { rateOf(w, 20, 100*ms) })), set: par(16),
			action: probes.Hold, want: par(16), binding: probes.BindNone,
			contains: []string{"clean for 1m40s", "p95 flat at 180ms", "0 × 429", "20 calls/s", "2.0 in flight of 16", "would not help"},
		},
		{
			name: "at the ceiling",
			ws:   steady(20, nil), set: engine.Settings{Parallelism: 16, MaxParallelism: 16, Burst: 1},
			action: probes.Hold, want: engine.Settings{Parallelism: 16, MaxParallelism: 16, Burst: 1},
			contains: []string{"clean for 1m40s", "at its max (--max-parallelism 16)"},
		},
		{
			name: "no windows",
			ws:   nil, set: par(16),
			action: probes.Hold, want: par(16),
			contains: []string{"waiting"},
		},
		{
			name: "the last window had no calls",
			ws:   steady(20, last(20, func(w *probes.Window) { *w = probes.Window{Start: w.Start, Length: w.Length} })), set: par(16),
			action: probes.Hold, want: par(16),
			contains: []string{"waiting"},
		},
	} {
		runAdvise(t, tc)
	}
}

// TestAdviseRaises: after CleanFor of clean windows, the binding knob goes up a step:
// parallelism by a third (at least one, never past the ceiling), the rate by a quarter, the
// pace shortened by a quarter.
func TestAdviseRaises(t *testing.T) {
	rateBinds := all(func(w *probes.Window) { rateOf(w, 98, 50*ms) })
	paceBinds := all(func(w *probes.Window) { rateOf(w, 8, 100*ms) })
	for _, tc := range []adviseCase{
		{
			name: "the issue's example: clean for 2m10s, p95 flat at 180ms",
			ws:   steady(26, nil), set: par(16),
			action: probes.Raise, knob: engine.KnobParallelism, want: par(21), binding: probes.BindParallelism,
			reason: "clean for 2m10s, p95 flat at 180ms, 0 × 429: raise parallelism 16 → 21",
		},
		{
			name: "clean for exactly 60s",
			ws:   steady(12, nil), set: par(16),
			action: probes.Raise, knob: engine.KnobParallelism, want: par(21),
			contains: []string{"clean for 1m,", "16 → 21"},
		},
		{
			name: "429s over a minute ago do not count",
			ws:   steady(14, onlyAt(1, func(w *probes.Window) { w.TooMany, w.OK = 50, 750 })), set: par(16),
			action: probes.Raise, knob: engine.KnobParallelism, want: par(21),
			contains: []string{"clean for 1m", "16 → 21"},
		},
		{
			name: "errors at the threshold are clean",
			ws:   steady(12, all(func(w *probes.Window) { w.Server5xx, w.OK = 8, w.Calls-8 })), set: par(16),
			action: probes.Raise, knob: engine.KnobParallelism, want: par(21),
		},
		{
			name: "a p95 falling is clean",
			ws:   steady(12, climbing(400*ms, -20*ms, nil)), set: par(16),
			action: probes.Raise, knob: engine.KnobParallelism, want: par(21),
			contains: []string{"p95 falling at 180ms"},
		},
		{
			name: "a single slow window is noise",
			ws:   steady(12, last(12, func(w *probes.Window) { w.P95 = 900 * ms })), set: par(16),
			action: probes.Raise, knob: engine.KnobParallelism, want: par(21),
			contains: []string{"p95 flat at 900ms"},
		},
		{
			name: "parallelism 1 → 2",
			ws:   steady(12, all(func(w *probes.Window) { rateOf(w, 10, 100*ms) })), set: par(1),
			action: probes.Raise, knob: engine.KnobParallelism, want: par(2),
			contains: []string{"1 → 2"},
		},
		{
			name: "parallelism 2 → 3 (at least one)",
			ws:   steady(12, all(func(w *probes.Window) { rateOf(w, 20, 100*ms) })), set: par(2),
			action: probes.Raise, knob: engine.KnobParallelism, want: par(3),
		},
		{
			name: "parallelism 3 → 4",
			ws:   steady(12, all(func(w *probes.Window) { rateOf(w, 30, 100*ms) })), set: par(3),
			action: probes.Raise, knob: engine.KnobParallelism, want: par(4),
		},
		{
			name: "parallelism 100 → 133",
			ws:   steady(12, all(func(w *probes.Window) { rateOf(w, 1000, 100*ms) })), set: par(100),
			action: probes.Raise, knob: engine.KnobParallelism, want: par(133),
		},
		{
			name: "capped by the ceiling",
			ws:   steady(12, nil), set: engine.Settings{Parallelism: 16, MaxParallelism: 20, Burst: 1},
			action: probes.Raise, knob: engine.KnobParallelism, want: engine.Settings{Parallelism: 20, MaxParallelism: 20, Burst: 1},
			contains: []string{"16 → 20"},
		},
		{
			name: "rate binds: × 1.25",
			ws:   steady(12, rateBinds), set: engine.Settings{Parallelism: 64, Rate: 100, Burst: 10},
			action: probes.Raise, knob: engine.KnobRate, want: engine.Settings{Parallelism: 64, Rate: 125, Burst: 10}, binding: probes.BindRate,
			reason: "clean for 1m, p95 flat at 180ms, 0 × 429: raise rate 100/s → 125/s",
		},
		{
			name: "rate binds, never past a parallelism ceiling it does not touch",
			ws:   steady(12, rateBinds), set: engine.Settings{Parallelism: 64, MaxParallelism: 64, Rate: 100, Burst: 10},
			action: probes.Raise, knob: engine.KnobRate, want: engine.Settings{Parallelism: 64, MaxParallelism: 64, Rate: 125, Burst: 10},
		},
		{
			name: "pacing binds: pace × 0.75",
			ws:   steady(12, paceBinds), set: engine.Settings{Parallelism: 4, Pace: 500 * ms, Burst: 1},
			action: probes.Raise, knob: engine.KnobPace, want: engine.Settings{Parallelism: 4, Pace: 375 * ms, Burst: 1}, binding: probes.BindPacing,
			reason: "clean for 1m, p95 flat at 180ms, 0 × 429: shorten pace 500ms → 375ms",
		},
		{
			name: "clean for a configured 30s",
			ws:   steady(6, nil), set: par(16), cfg: probes.AdvisorConfig{CleanFor: 30 * sec},
			action: probes.Raise, knob: engine.KnobParallelism, want: par(21),
			contains: []string{"clean for 30s"},
		},
	} {
		runAdvise(t, tc)
	}
}

// TestAdviseRisingLatencyIsNotClean: the issue defines clean as "no 429s, error rate under a
// threshold, latency p95 not rising beyond its band". A p95 climbing out of its band must not
// be called clean and raised on, whatever binds; the knee rule alone catches only a
// parallelism-bound climb, and only while parallelism can still go down.
func TestAdviseRisingLatencyIsNotClean(t *testing.T) {
	climb := func(f func(w *probes.Window)) []probes.Window { return steady(12, climbing(100*ms, 20*ms, f)) }
	for _, tc := range []struct {
		name string
		ws   []probes.Window
		set  engine.Settings
	}{
		{"rate binds", climb(func(w *probes.Window) { rateOf(w, 98, 50*ms) }), engine.Settings{Parallelism: 64, Rate: 100, Burst: 10}},
		{"pacing binds", climb(func(w *probes.Window) { rateOf(w, 8, 100*ms) }), engine.Settings{Parallelism: 4, Pace: 500 * ms, Burst: 1}},
		{"parallelism binds at 1", climb(func(w *probes.Window) { rateOf(w, 10, 100*ms) }), par(1)},
	} {
		a := probes.Advise(tc.ws, tc.set, engine.Effective{}, probes.AdvisorConfig{})
		if a.Action == probes.Raise {
			t.Errorf("%s, p95 rising 100ms → 320ms over 1m: Advise = %s (%q), want hold (or lower): the run is not clean", tc.name, a.Action, a.Reason)
		}
	}
}

// TestAdviseRaisePaceShortens: a raise of the pace must shorten it. Rounding ¾ of a pace of
// 1ms or 2ms to the millisecond would give the pace back (Duration.Round rounds halves away
// from zero): "shorten pace 2ms → 2ms", a raise that changes nothing.
func TestAdviseRaisePaceShortens(t *testing.T) {
	for _, pace := range []time.Duration{1 * ms, 2 * ms, 3 * ms, 10 * ms} {
		// 4 workers at the pace, each call 0.5ms: pacing binds.
		perSecond := 4 / pace.Seconds()
		ws := steady(12, all(func(w *probes.Window) { rateOf(w, perSecond, 500*time.Microsecond) }))
		set := engine.Settings{Parallelism: 4, Pace: pace, Burst: 1}
		a := probes.Advise(ws, set, engine.Effective{}, probes.AdvisorConfig{})
		if a.Action != probes.Raise || a.Knob != engine.KnobPace || a.Settings.Pace >= pace || a.Settings.Pace < 0 {
			t.Errorf("pace %v binding, clean for 1m: Advise = %s %q pace %v (%q), want raise pace to less than %v",
				pace, a.Action, a.Knob, a.Settings.Pace, a.Reason, pace)
		}
	}
}

// TestAdviseLowerRateBinds: at 429s under a rate cap far above what the run does, lowering
// the cap by a fifth changes nothing (1000/s → 800/s while 100 calls/s go out): the decrease
// must bite, from the throughput actually observed, or turn the knob that lets the calls
// through.
func TestAdviseLowerRateBinds(t *testing.T) {
	ws := steady(3, all(func(w *probes.Window) {
		rateOf(w, 100, 100*ms)
		w.TooMany, w.OK = 50, w.Calls-50
	}))
	set := engine.Settings{Parallelism: 10, Rate: 1000, Burst: 10}
	a := probes.Advise(ws, set, engine.Effective{}, probes.AdvisorConfig{})
	if a.Action != probes.Lower {
		t.Fatalf("Advise at 10%% 429s = %s (%q), want lower", a.Action, a.Reason)
	}
	x := ws[2].PerSecond(ws[2].Calls)
	if a.Settings.Parallelism >= set.Parallelism && (a.Settings.Rate == 0 || a.Settings.Rate >= x) {
		t.Errorf("Advise at 100 calls/s under a cap of 1000/s with 429s = %q (%+v): neither the rate (%v/s) nor parallelism (%d) will lower the %v calls/s",
			a.Reason, a.Settings, a.Settings.Rate, a.Settings.Parallelism, x)
	}
}

// TestBindingOfReasonAtLowRates: a slow API (a cap of 30/m) must not read "0 calls/s against a
// cap of 30/m": the numbers behind a reason have to be readable at any rate.
func TestBindingOfReasonAtLowRates(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    probes.Window
		set  engine.Settings
		want probes.Binding
	}{
		{"0.5 calls/s under a cap of 30/m", // 50 calls in 100 s
			probes.Window{Length: 100 * sec, Calls: 50, OK: 50, Mean: 2 * sec, MeanOK: 2 * sec, P95: 3 * sec},
			engine.Settings{Parallelism: 4, Rate: 0.5, Burst: 1}, probes.BindRate},
		{"0.4 calls/s × 10s = 4 in flight of 4", // 2 calls in 5 s
			probes.Window{Length: 5 * sec, Calls: 2, OK: 2, Mean: 10 * sec, MeanOK: 10 * sec, P95: 10 * sec},
			par(4), probes.BindParallelism},
	} {
		got, why := probes.BindingOf(tc.w, tc.set)
		if got != tc.want {
			t.Errorf("%s: BindingOf = %s (%q), want %s", tc.name, got, why, tc.want)
		}
		if strings.HasPrefix(why, "0 calls/s") || strings.Contains(why, " 0 calls/s") {
			t.Errorf("%s: BindingOf reason = %q, want the throughput readable (0.5 calls/s, 30/m)", tc.name, why)
		}
	}
}

// TestAdviseWithCongestionResponse: with the engine's congestion response on, advice points
// the right way. An isolated 429 is how the response finds the limit: news, not a cut. 429s
// that persist may suggest lowering the ceiling to just under the limit found, when that is
// under the ceiling. A raise is suggested only where it can help: not while an effective
// value (the target) binds, nor past a limit the target showed.
func TestAdviseWithCongestionResponse(t *testing.T) {
	timed := func(n int64) func(w *probes.Window) {
		return func(w *probes.Window) { w.TooMany, w.TooManyTimed, w.OK = n, n, w.Calls-n }
	}
	untimed := func(n int64) func(w *probes.Window) {
		return func(w *probes.Window) { w.TooMany, w.OK = n, w.Calls-n }
	}
	at190 := func(w *probes.Window) { rateOf(w, 190, 50*ms) }
	rate350 := engine.Settings{Parallelism: 64, Rate: 350, Burst: 10}
	limit200 := engine.Effective{Rate: 190, Limit: 200, Signals: 3, QuotaLeft: -1}
	for _, tc := range []adviseCase{
		{
			name: "an isolated 429 (0.1% of calls) while the response holds the rate: the limit is found",
			ws:   steady(20, all(func(w *probes.Window) { at190(w) })), set: rate350, eff: limit200,
			action: probes.Hold, want: rate350, binding: probes.BindServer,
		},
		{
			name: "one 429 in 950 calls",
			ws:   steady(20, func(i int, w *probes.Window) { at190(w); onlyAt(19, timed(1))(i, w) }), set: rate350, eff: limit200,
			action: probes.Hold, want: rate350, binding: probes.BindServer,
			reason: "1 × 429 in 5s: limit found near 200/s; throttle is holding just under it",
		},
		{
			name: "an isolated 429 after a blind cut: near the effective rate",
			ws:   steady(20, func(i int, w *probes.Window) { at190(w); onlyAt(19, timed(2))(i, w) }), set: rate350,
			eff:    engine.Effective{Rate: 188, Signals: 1, QuotaLeft: -1},
			action: probes.Hold, want: rate350,
			reason: "2 × 429 in 5s: limit found near 188/s; throttle is holding just under it",
		},
		{
			name: "an isolated 429 of a concurrency limit",
			ws:   steady(20, func(i int, w *probes.Window) { onlyAt(19, untimed(1))(i, w) }), set: par(16),
			eff:    engine.Effective{Parallelism: 11, Concurrency: 12, Signals: 2, QuotaLeft: -1},
			action: probes.Hold, want: par(16),
			reason: "1 × 429 in 5s: limit found near 12 in flight; throttle is holding just under it",
		},
		{
			name: "persistent 429s (3%): lower the ceiling just under the limit found",
			ws:   steady(20, func(i int, w *probes.Window) { at190(w); onlyAt(19, timed(29))(i, w) }), set: rate350, eff: limit200,
			action: probes.Lower, knob: engine.KnobRate, want: engine.Settings{Parallelism: 64, Rate: 195, Burst: 10}, binding: probes.BindServer,
			reason: "3.1% 429s: rate ceiling 350/s → 195/s, the target accepts ~200/s",
		},
		{
			name: "persistent 429s under no rate ceiling",
			ws:   steady(20, func(i int, w *probes.Window) { at190(w); onlyAt(19, timed(29))(i, w) }), set: par(64), eff: limit200,
			action: probes.Lower, knob: engine.KnobRate, want: engine.Settings{Parallelism: 64, Rate: 195, Burst: 1},
			reason: "3.1% 429s: rate ceiling none → 195/s, the target accepts ~200/s",
		},
		{
			name: "persistent 429s, the ceiling already at the limit: nothing to lower",
			ws:   steady(20, func(i int, w *probes.Window) { at190(w); onlyAt(19, timed(29))(i, w) }),
			set:  engine.Settings{Parallelism: 64, Rate: 195, Burst: 10}, eff: limit200,
			action: probes.Hold, want: engine.Settings{Parallelism: 64, Rate: 195, Burst: 10},
			contains: []string{"3.1% 429s", "accepts ~200/s", "ceiling 195/s is at it"},
		},
		{
			name: "persistent 429s of a concurrency limit: the parallelism ceiling under it",
			ws:   steady(20, func(i int, w *probes.Window) { onlyAt(19, untimed(40))(i, w) }), set: par(16),
			eff:    engine.Effective{Parallelism: 11, Concurrency: 12, Signals: 4, QuotaLeft: -1},
			action: probes.Lower, knob: engine.KnobParallelism, want: par(11),
			reason: "5.0% 429s: parallelism ceiling 16 → 11, the target refuses at 12 in flight",
		},
		{
			name: "the effective rate binds, clean for minutes: raising the ceiling would not help",
			ws:   steady(30, all(at190)), set: engine.Settings{Parallelism: 64, Rate: 250, Burst: 10},
			eff:    engine.Effective{Rate: 188, Limit: 198, Signals: 2, QuotaLeft: -1},
			action: probes.Hold, want: engine.Settings{Parallelism: 64, Rate: 250, Burst: 10}, binding: probes.BindServer,
			reason: "rate 188/s effective · ceiling 250/s: the target limits it, not the ceiling",
		},
		{
			name: "the effective parallelism binds: raising the ceiling would not help",
			ws:   steady(30, all(func(w *probes.Window) { rateOf(w, 60, 100*ms) })), set: par(16),
			eff:    engine.Effective{Parallelism: 6, Concurrency: 7, Signals: 1, QuotaLeft: -1},
			action: probes.Hold, want: par(16), binding: probes.BindServer,
			reason: "parallelism 6 effective · ceiling 16: the target limits it, not the ceiling",
		},
		{
			name: "the ceiling binds just under the limit found: no raise past it",
			ws:   steady(30, all(func(w *probes.Window) { rateOf(w, 194, 50*ms) })), set: engine.Settings{Parallelism: 64, Rate: 195, Burst: 10},
			eff:    engine.Effective{Limit: 200, Signals: 3, QuotaLeft: -1},
			action: probes.Hold, want: engine.Settings{Parallelism: 64, Rate: 195, Burst: 10},
			contains: []string{"clean for 2m30s", "rate ceiling 195/s is at the limit found near 200/s", "would not help"},
		},
		{
			name: "the ceiling binds well under the limit found: raise it",
			ws:   steady(30, all(func(w *probes.Window) { rateOf(w, 98, 50*ms) })), set: engine.Settings{Parallelism: 64, Rate: 100, Burst: 10},
			eff:    engine.Effective{Limit: 300, Signals: 3, QuotaLeft: -1},
			action: probes.Raise, knob: engine.KnobRate, want: engine.Settings{Parallelism: 64, Rate: 125, Burst: 10}, binding: probes.BindRate,
		},
	} {
		runAdvise(t, tc)
	}
}

// TestAdviseNeverFromAStarvedWindow: without the response, a rate suggested at 429s comes from
// what the target accepted away from the Retry-After holds — the demo set a 14/s cap
// from windows the holds had held down while the run did 20–30/s against a 100/s API.
func TestAdviseNeverFromAStarvedWindow(t *testing.T) {
	ws := steady(6, func(i int, w *probes.Window) {
		rateOf(w, 100, 50*ms) // a clean window: 100 ok/s
		if i >= 4 {           // then windows 1s Retry-Afters held for 4 of their 5 seconds
			w.Calls, w.OK, w.OKFree, w.TooMany, w.TooManyTimed, w.Held = 120, 110, 100, 10, 10, 4*sec
		}
	})
	a := probes.Advise(ws, par(8), engine.Effective{}, probes.AdvisorConfig{})
	if a.Action != probes.Lower || a.Knob != engine.KnobRate || a.Settings.Rate != 95 {
		t.Errorf("Advise = %s %q rate %v (%q), want lower rate to 95/s: just under the 100/s the target took while the pool could call",
			a.Action, a.Knob, a.Settings.Rate, a.Reason)
	}
	if a.Accepted != 100 {
		t.Errorf("Advice.Accepted = %v, want 100 (ok calls per second outside the holds), not %v (per second of the windows)",
			a.Accepted, ws[5].PerSecond(ws[5].OK))
	}
	// A window held for a fifth of its time counts over the time it was free: 56 ok in 4s.
	ws = steady(2, last(2, func(w *probes.Window) { w.Calls, w.OK, w.OKFree, w.Held = 60, 56, 56, sec }))
	if got := probes.AcceptedRate(ws); got != 14 {
		t.Errorf("AcceptedRate(56 ok over the 4 free seconds of a window) = %v, want 14", got)
	}
	// A pool held again and again (the demo's whole-second Retry-After): no window is free
	// for half its time, so the free time of the last 30 s counts, 0.6 s of each window with
	// 60 ok calls ending in it: 100/s, where calls over whole windows would say 20/s.
	sawtooth := func(w *probes.Window) {
		w.Calls, w.OK, w.OKFree, w.TooMany, w.TooManyTimed, w.Held = 100, 96, 60, 4, 4, 4400*ms
	}
	ws = steady(12, all(sawtooth))
	if got := probes.AcceptedRate(ws); got < 99.99 || got > 100.01 {
		t.Errorf("AcceptedRate(windows held for 4.4s of 5s, 60 ok outside) = %v, want 100", got)
	}
	a = probes.Advise(ws, par(8), engine.Effective{}, probes.AdvisorConfig{})
	if a.Action != probes.Lower || a.Knob != engine.KnobRate || a.Settings.Rate != 95 {
		t.Errorf("sawtooth: Advise = %s %q rate %v (%q), want lower rate to 95/s", a.Action, a.Knob, a.Settings.Rate, a.Reason)
	}
	if got := probes.AcceptedRate(steady(1, last(1, func(w *probes.Window) { w.Held = 4500 * ms }))); got != 0 {
		t.Errorf("AcceptedRate(only a window held for 4.5s of 5s) = %v, want 0: under a second measured away from holds", got)
	}
}
