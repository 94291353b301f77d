package probes

import (
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// pointsPerSecond returns one point a second for the n seconds before end, calls(i) calls in
// the i-th, every tenth a 429.
func pointsPerSecond(end time.Time, n int, calls func(at time.Time) int64) []Point {
	var pts []Point
	for i := n; i > 0; i-- {
		at := end.Add(-time.Duration(i) * time.Second)
		c := calls(at)
		pts = append(pts, Point{At: at, Calls: c, TooMany: c / 10})
	}
	return pts
}

// TestMeasureAfterACapChange is the screen's "20 calls/s of 14/s cap" right after - set a
// 14/s cap: the rate was the mean of five seconds, four of them under the old cap. The window
// now starts at the change, and says so.
func TestMeasureAfterACapChange(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	change := start.Add(60*time.Second + 300*time.Millisecond)
	rate := func(at time.Time) int64 {
		if at.Before(change) {
			return 22
		}
		return 14
	}
	snap := func(now time.Time) engine.Snapshot {
		return engine.Snapshot{At: now, Started: start, State: engine.Running, Settings: engine.Settings{Rate: 14, Burst: 1},
			Changes: []engine.Change{{At: start, Knob: "start"}, {At: change, Origin: "tui", Knob: "rate", From: "24/s", To: "14/s"},
				{At: change.Add(time.Second), Origin: "auto", Knob: "note", To: "a remark changes nothing"},
				{At: change.Add(time.Second), Origin: "auto", Knob: "parallelism", From: "4", To: "5"},
				{At: change.Add(time.Second), Origin: "adapt", Knob: "effective rate", From: "14/s", To: "15.4/s"}}}
	}
	for _, tc := range []struct {
		now    time.Time
		window string
		calls  float64
		since  bool
	}{
		{change.Add(200 * time.Millisecond), "measuring", 0, true}, // no complete second since the change
		{change.Add(1800 * time.Millisecond), "last 1s", 14, true}, // [61s, 62s)
		{change.Add(3900 * time.Millisecond), "last 3s", 14, true}, // [61s, 64s)
		{change.Add(20 * time.Second), "last 5s", 14, false},       // the change is out of the window
		{change.Add(-1 * time.Second), "last 5s", 22, false},       // before it
		{start.Add(2500 * time.Millisecond), "last 2s", 22, false}, // a run younger than the window
	} {
		s := snap(tc.now)
		if tc.now.Before(change) {
			s.Changes = s.Changes[:1]
		}
		f := Measure(s, pointsPerSecond(tc.now.Truncate(time.Second), 30, rate))
		if f.Window() != tc.window || f.CallsPerSecond() != tc.calls || f.SinceChange != tc.since {
			t.Errorf("at %v: %.1f calls/s over %q (since change %v), want %.1f over %q (%v)",
				tc.now.Sub(start), f.CallsPerSecond(), f.Window(), f.SinceChange, tc.calls, tc.window, tc.since)
		}
		if f.Measured() && f.TooManyShare() != 0 && f.TooMany*10 > f.Calls {
			t.Errorf("at %v: %d × 429 of %d calls, want a tenth", tc.now.Sub(start), f.TooMany, f.Calls)
		}
	}
}

// TestMeasureWaitsOutTheCallsStartedBeforeAChange: calls that end just after a change started
// before it, under the old cap; the window starts once the slowest (p99) would have ended.
func TestMeasureWaitsOutTheCallsStartedBeforeAChange(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	change := start.Add(60*time.Second + 300*time.Millisecond)
	now := start.Add(65 * time.Second)
	for _, tc := range []struct {
		p99  time.Duration
		from time.Duration // into the run
	}{{0, 61 * time.Second}, {400 * time.Millisecond, 61 * time.Second}, {800 * time.Millisecond, 62 * time.Second}, {3 * time.Second, 64 * time.Second}} {
		pts := pointsPerSecond(now, 30, func(time.Time) int64 { return 10 })
		for i := range pts {
			pts[i].P99 = tc.p99
		}
		s := engine.Snapshot{At: now, Started: start, State: engine.Running, Changes: []engine.Change{{At: change, Knob: "rate"}}}
		if f := Measure(s, pts); f.From.Sub(start) != tc.from || !f.SinceChange {
			t.Errorf("p99 %v: the window starts %v into the run, want %v", tc.p99, f.From.Sub(start), tc.from)
		}
	}
}

// TestMeasureWholeRun: once the run has ended its figures are the run's own counts over its
// whole time (the final screen said "429s 0.0%" of an empty last window after 21 × 429).
func TestMeasureWholeRun(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	s := engine.Snapshot{At: start.Add(time.Minute), Started: start, Ended: start.Add(40 * time.Second), State: engine.Done,
		Calls: 600, TooMany: 21, Errors: 3}
	f := Measure(s, nil)
	if f.Window() != "whole run" || f.Calls != 600 || f.TooMany != 21 || f.Errors != 3 || f.CallsPerSecond() != 15 {
		t.Errorf("whole run: %+v %q %.1f calls/s; want 600 calls, 21 × 429, 3 errors, 15 calls/s over the whole run", f, f.Window(), f.CallsPerSecond())
	}
	if got := 100 * f.TooManyShare(); got < 3.49 || got > 3.51 {
		t.Errorf("429 share %.2f%%, want 3.5%%", got)
	}
}

// TestMeasureResetsOnCapChangesOnly: the window starts over at a change of the rate cap or
// the state, not at one of parallelism or pace, nor when the effective rate climbs back.
func TestMeasureResetsOnCapChangesOnly(t *testing.T) {
	for _, tc := range []struct {
		c    engine.Change
		want bool
	}{
		{engine.Change{Knob: "rate", From: "24/s", To: "14/s"}, true},
		{engine.Change{Knob: "rate, burst", From: "24/s, 1", To: "30/s, 5"}, true},
		{engine.Change{Knob: "state", From: "running", To: "paused"}, true},
		{engine.Change{Knob: "effective rate", From: "250/s", To: "196/s (target accepted 206/s)"}, true},
		{engine.Change{Knob: "effective rate", From: "90/s", To: "99.5/s"}, false},
		{engine.Change{Knob: "effective rate", From: "90/s", To: "ceiling 250/s"}, false},
		{engine.Change{Knob: "parallelism", From: "4", To: "8"}, false},
		{engine.Change{Knob: "effective parallelism", From: "8", To: "6 (429 at 7 in flight)"}, false},
		{engine.Change{Knob: "pace", From: "0s", To: "100ms"}, false},
		{engine.Change{Knob: "note", To: "hello"}, false},
	} {
		if got := resets(tc.c); got != tc.want {
			t.Errorf("%s: resets the window %v, want %v", tc.c.What(), got, tc.want)
		}
	}
}

// TestCounterRateOverTheTimeMeasured: a job's calls/s across hosts was the growth between two
// looks over the moment between them; looked at from the screen (4 times a second) and the
// progress lines, that moment was a few milliseconds. It is the growth over the last
// RateWindow now, and nothing before a second was measured.
func TestCounterRateOverTheTimeMeasured(t *testing.T) {
	var c CounterRate
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	if r, over := c.Look(t0, 0); r != 0 || over != 0 {
		t.Errorf("one look: %v over %v, want nothing measured", r, over)
	}
	if r, over := c.Look(t0.Add(2*time.Millisecond), 15); r != 0 || over != 0 {
		t.Errorf("a look 2 ms later: %v over %v, want nothing measured (it was 7,500/s)", r, over)
	}
	// 10 calls a second for 8 seconds, looked at every 250 ms and at odd moments in between.
	var r float64
	var over time.Duration
	for ms := 250; ms <= 8000; ms += 250 {
		at := t0.Add(time.Duration(ms) * time.Millisecond)
		r, over = c.Look(at, int64(ms/100))
		c.Look(at.Add(3*time.Millisecond), int64(ms/100)) // the progress line, right after
	}
	if over < RateWindow || over > RateWindow+time.Second || r < 9.9 || r > 10.1 {
		t.Errorf("after 8 s at 10/s: %.2f/s over %v, want 10/s over about %v", r, over, RateWindow)
	}
}

// TestMeasureKeepsThe429sOverAnEffectiveCut: a cut of the effective rate follows the 429s
// that caused it. The rate's window starts after the cut, but the 429s' does not: a window
// that started at each cut would never hold a 429 and say "429s 0.0%" while they go on. An
// operator's change of the cap starts both over.
func TestMeasureKeepsThe429sOverAnEffectiveCut(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	now := start.Add(60 * time.Second)
	cut := now.Add(-2500 * time.Millisecond)
	pts := pointsPerSecond(now, 10, func(time.Time) int64 { return 50 }) // 5 × 429 a second
	s := engine.Snapshot{At: now, Started: start, State: engine.Running, Settings: engine.Settings{Rate: 60, Burst: 1},
		Changes: []engine.Change{{At: cut, Origin: "adapt", Knob: "effective rate", From: "60/s", To: "48/s (target accepted 50/s)"}}}
	f := Measure(s, pts)
	if f.Window() != "last 2s" || f.HealthWindow() != "last 5s" {
		t.Fatalf("windows %q (rate) and %q (429s): want the rate's since the cut, the 429s' the last 5s", f.Window(), f.HealthWindow())
	}
	if f.TooMany != 25 || f.HealthCalls != 250 || f.TooManyShare() != 0.1 || f.TooManyPerSecond() != 5 {
		t.Fatalf("429s %d of %d (%.2f, %.1f/s): want 25 of 250 over 5 s", f.TooMany, f.HealthCalls, f.TooManyShare(), f.TooManyPerSecond())
	}

	s.Changes = append(s.Changes, engine.Change{At: cut, Origin: "tui", Knob: "rate", From: "60/s", To: "50/s"})
	if f := Measure(s, pts); f.HealthWindow() != f.Window() {
		t.Fatalf("after an operator's cap change: windows %q and %q, want both since it", f.Window(), f.HealthWindow())
	}
}
