package probes

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
)

// RateWindow is the longest window a run's current rates (calls/s, 429s, errors) are measured
// over: long enough that a burst does not read as a rate, short enough to show a change soon.
const RateWindow = 5 * time.Second

// Figures are a run's current rates as every outlet shows them — the screen (an attached one
// too), the progress lines — each with the window it was measured over, from one computation
// ([Measure]) so that no two outlets disagree. While the run goes on, the window is the last
// complete seconds, at most [RateWindow] of them and none from before the run's last change
// of its rate cap or its state: a rate is only ever set beside the cap it was measured under.
// Once the run has ended, the window is the whole run and the counts are the run's own.
type Figures struct {
	// From and To bound the window; From equals To while no complete second has been
	// measured since the last change (or since the start).
	From, To time.Time
	// Calls, TooMany and Errors count the calls that ended in the window: all of them, the
	// 429 answers, and the other failures.
	Calls, TooMany, Errors int64
	// Whole says the window is the whole run: it has ended.
	Whole bool
	// SinceChange says the window is shorter than RateWindow because of a change of the rate
	// cap or of the state.
	SinceChange bool
	// TooMany and Errors are counted from HealthFrom, over HealthCalls calls: a window that a
	// cut of the effective rate does not start over. The cut follows the 429s that caused it;
	// a window that started at it would never hold them and say "429s 0.0%" while they go on.
	HealthFrom  time.Time
	HealthCalls int64
}

// Measure computes the figures of a run from its snapshot and its per-second points (a
// [Series]' Points, which must cover the last RateWindow).
func Measure(s engine.Snapshot, pts []Point) Figures {
	if !s.Ended.IsZero() {
		return Figures{From: s.Started, To: s.Ended, Calls: s.Calls, TooMany: s.TooMany, Errors: s.Errors, Whole: true}
	}
	to := s.At.Truncate(time.Second) // the end of the last complete second
	from := to.Add(-RateWindow)
	var f Figures
	if start := ceilSecond(s.Started); !s.Started.IsZero() && start.After(from) {
		from = start
	}
	healthFrom := from
	// The calls counted are those that ended in the window; those that ended soon after a
	// change started before it, under the old settings. A window starts once the slowest of
	// them (the p99 of the seconds since) would have ended.
	after := func(c engine.Change) time.Time { return ceilSecond(c.At.Add(slowest(pts, c.At))) }
	for i := len(s.Changes) - 1; i >= 0; i-- {
		if c := s.Changes[i]; resets(c) {
			if at := after(c); at.After(from) {
				from, f.SinceChange = at, true
			}
			break
		}
	}
	for i := len(s.Changes) - 1; i >= 0; i-- {
		if c := s.Changes[i]; resetsHealth(c) {
			if at := after(c); at.After(healthFrom) {
				healthFrom = at
			}
			break
		}
	}
	f.HealthFrom = healthFrom
	if healthFrom.After(to) {
		f.HealthFrom = to
	}
	for _, p := range pts {
		if p.At.Before(f.HealthFrom) || !p.At.Before(to) {
			continue
		}
		f.HealthCalls += p.Calls
		f.TooMany += p.TooMany
		f.Errors += p.Errors
	}
	if !to.After(from) {
		f.From, f.To = to, to
		return f
	}
	f.From, f.To = from, to
	for _, p := range pts {
		if !p.At.Before(from) && p.At.Before(to) {
			f.Calls += p.Calls
		}
	}
	return f
}

// resetsHealth reports whether a change starts the window of the 429s and errors over: one of
// the operator's rate cap or burst, or of state. The effective rate's cuts do not: they are
// the 429s' consequence.
func resetsHealth(c engine.Change) bool {
	for _, p := range c.Parts() {
		switch p.Knob {
		case "rate", "burst", "state":
			return true
		}
	}
	return false
}

// resets reports whether a change makes the rates before it incomparable with those after:
// a change of the rate cap or its burst, a cut of the effective rate, a change of state
// (pause, resume, drain). Parallelism and pace change how fast the run goes, not the cap its
// rate is set against; the effective rate climbing back (adapt logs each 10%) only raises the
// cap, which the rate measured under a lower one cannot pass.
func resets(c engine.Change) bool {
	if resetsHealth(c) {
		return true
	}
	for _, p := range c.Parts() {
		if p.Knob == "effective rate" {
			from, fok := leadingRate(p.From)
			to, tok := leadingRate(p.To)
			if !fok || !tok || to < from {
				return true
			}
		}
	}
	return false
}

// leadingRate reads the rate a change's side starts with: "196/s (target accepted 206/s)",
// "ceiling 250/s", "90.5/s".
func leadingRate(s string) (float64, bool) {
	f := strings.Fields(strings.TrimPrefix(s, "ceiling "))
	if len(f) == 0 {
		return 0, false
	}
	r, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "/s"), 64)
	return r, err == nil
}

// slowest is the highest p99 latency of the seconds from the one that holds since onwards.
func slowest(pts []Point, since time.Time) time.Duration {
	var d time.Duration
	from := since.Truncate(time.Second)
	for _, p := range pts {
		if !p.At.Before(from) {
			d = max(d, p.P99)
		}
	}
	return d
}

// ceilSecond is t rounded up to a whole second: the first second that starts after t.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); r.Before(t) {
		return r.Add(time.Second)
	}
	return t
}

// Over is the time the figures were measured over; 0 while nothing was measured.
func (f Figures) Over() time.Duration { return f.To.Sub(f.From) }

// Measured reports whether the figures cover any time.
func (f Figures) Measured() bool { return f.Over() > 0 }

// CallsPerSecond is the calls that ended in the window per second of it.
func (f Figures) CallsPerSecond() float64 { return f.perSecond(f.Calls) }

// TooManyPerSecond is the 429 answers per second of their window ([Figures.HealthWindow]).
func (f Figures) TooManyPerSecond() float64 { return f.healthPerSecond(f.TooMany) }

// ErrorsPerSecond is the other failures per second of their window.
func (f Figures) ErrorsPerSecond() float64 { return f.healthPerSecond(f.Errors) }

// TooManyShare is the share of the calls of their window answered 429, from 0 to 1.
func (f Figures) TooManyShare() float64 {
	if f.Whole {
		return share(f.TooMany, f.Calls)
	}
	return share(f.TooMany, f.HealthCalls)
}

func (f Figures) healthPerSecond(n int64) float64 {
	if f.Whole {
		return f.perSecond(n)
	}
	if over := f.To.Sub(f.HealthFrom); over > 0 {
		return float64(n) / over.Seconds()
	}
	return 0
}

// HealthWindow names the window of the 429s and errors as [Figures.Window] does; it is
// longer than the rates' after a cut of the effective rate.
func (f Figures) HealthWindow() string {
	over := f.To.Sub(f.HealthFrom)
	switch {
	case f.Whole:
		return "whole run"
	case over <= 0:
		return "measuring"
	}
	return "last " + human.Span(over)
}

func (f Figures) perSecond(n int64) float64 {
	if !f.Measured() {
		return 0
	}
	return float64(n) / f.Over().Seconds()
}

// Window names the window as every figure is labelled: "last 5s", "last 2s" (since a change),
// "whole run", or "measuring" while no complete second has passed since the change.
func (f Figures) Window() string {
	switch {
	case f.Whole:
		return "whole run"
	case !f.Measured():
		return "measuring"
	}
	return "last " + human.Span(f.Over())
}

// CounterRate turns looks at a cumulative count kept elsewhere (the calls of a job across
// hosts) into a rate over the last RateWindow: the growth since the look that opens the
// window, over the time actually between the two looks, however often and from however many
// places it is looked at. It is safe for concurrent use.
type CounterRate struct {
	mu    sync.Mutex
	looks []countLook // oldest first
}

type countLook struct {
	at time.Time
	n  int64
}

// Look adds a look at the count n at at and returns the rate per second over the time
// measured; 0 and 0 while less than a second has been measured.
func (c *CounterRate) Look(at time.Time, n int64) (perSecond float64, over time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.looks = append(c.looks, countLook{at, n})
	// The base is the newest look at least RateWindow old, else the oldest one.
	base := 0
	for i, l := range c.looks {
		if at.Sub(l.at) >= RateWindow {
			base = i
		}
	}
	c.looks = c.looks[base:]
	first := c.looks[0]
	over = at.Sub(first.at)
	if over < time.Second {
		return 0, 0
	}
	return float64(n-first.n) / over.Seconds(), over
}
