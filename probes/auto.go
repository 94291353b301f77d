package probes

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
)

// Knobs is what the auto-tuner reads and turns: an [*engine.Engine].
type Knobs interface {
	Snapshot() engine.Snapshot
	Set(u engine.Update, origin string) error
	Note(origin, text string)
}

// AutoWindow is the window the auto-tuner decides on: short, so that slow start doubles
// parallelism about once a second.
const AutoWindow = 250 * time.Millisecond

// operatorPause is how long an operator's own change keeps the auto-tuner's hands off.
const operatorPause = 60 * time.Second

// Tuning of the auto-tuner.
const (
	// kneeGain: a raise of parallelism that brought less than this share of its proportional
	// gain in throughput, with the median latency up by kneeLatency, passed the knee. (The
	// median of a window of a heavy tail wanders by a quarter from one window to the next: a
	// knee must stand above that.)
	kneeGain    = 0.25
	kneeLatency = 1.5
	// kneeRetry is how long the tuner stays under a knee before it looks above it again.
	kneeRetry = 60 * time.Second
	// littleHeadroom is the parallelism kept over rate × latency, for the latency's tail.
	littleHeadroom = 1.5
)

// Tuner is the --auto controller. It turns the ceilings; the engine's congestion response
// (always on under --auto) answers the target's pushback under them, so the two are one
// controller and never fight: the tuner never lowers a rate at a 429, it stops growing.
//
//   - Slow start, as TCP's: while parallelism binds and the run is clean, it doubles after
//     every window, until the first sign of a limit (the engine's first cut, a knee, or
//     parallelism that no longer binds).
//   - Then the gentle climb: parallelism by a tenth (at least one) after two clean windows in
//     which it binds.
//   - Little's law: while a rate binds (the engine's effective rate or the ceiling), the
//     parallelism is kept at rate × latency × 1.5 at least, raised in one step, so that a
//     rate is never starved of workers by the latency's tail.
//   - A knee, judged on throughput and the median (not one window's p95, which a heavy tail
//     makes noisy): a raise that brought under a quarter of its proportional gain in calls
//     per second while the median latency rose by half goes back, and the tuner stays
//     under that parallelism for a minute.
//   - A rate ceiling that binds while the run is clean is raised (doubling in slow start,
//     then by a tenth): the engine's effective rate is what holds the run under the limit.
//
// An operator's change (from the TUI or ctl) pauses it for a minute; the pause is logged.
type Tuner struct {
	knobs    Knobs
	windows  *Windows
	slow     bool      // slow start: no sign of a limit yet
	signals  int       // the engine's pushbacks seen
	clean    int       // clean windows in which a limit bound, since the last change
	changed  time.Time // the tuner's last change; windows before it judge older settings
	raise    raise     // the last raise of parallelism, to judge the knee by
	knee     int       // parallelism where the knee was; 0 if none
	kneeTill time.Time // the tuner stays at or under knee until then
	seen     time.Time // the newest change of the log already looked at
	pausedTo time.Time // operator's hands on the knobs until then
}

// raise is a raise of parallelism and the window before it.
type raise struct {
	from, to int
	okRate   float64
	p50      time.Duration
}

// NewTuner returns a Tuner fed by ws (windows of [AutoWindow]).
func NewTuner(k Knobs, ws *Windows) *Tuner { return &Tuner{knobs: k, windows: ws, slow: true} }

// Run steps the tuner twice every AutoWindow (so that it judges each window soon after it
// closes) until ctx is done or the run ends.
func (t *Tuner) Run(ctx context.Context) {
	tick := time.NewTicker(AutoWindow / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if s := t.knobs.Snapshot(); s.State >= engine.Draining || !s.Ended.IsZero() {
				return
			}
			t.Step(now)
		}
	}
}

// Step judges the last window and applies at most one change; it returns the change's
// description, or "" when it changed nothing.
func (t *Tuner) Step(now time.Time) string {
	s := t.knobs.Snapshot()
	if t.operatorChanged(s, now) || now.Before(t.pausedTo) || s.State != engine.Running {
		return ""
	}
	ws := t.windows.Recent(now)
	if len(ws) == 0 {
		return ""
	}
	w := ws[len(ws)-1]
	if w.Start.Before(t.changed) {
		return "" // the window began before the last change: it judges the old settings
	}
	next, why := t.decide(w, s, now)
	if next == s.Settings {
		return ""
	}
	t.changed = now
	return t.apply(s.Settings, next, why)
}

// operatorChanged pauses the tuner when somebody other than the tuner or the engine turned a
// knob since the last step.
func (t *Tuner) operatorChanged(s engine.Snapshot, now time.Time) bool {
	changed := false
	for _, c := range s.Changes {
		if !c.At.After(t.seen) {
			continue
		}
		t.seen = c.At
		// A shared job's changes come back from Redis as HOST/ORIGIN: the tuner's own, the
		// job's start and a resync after an outage are nobody's hand on a knob.
		who := c.Origin[strings.LastIndexByte(c.Origin, '/')+1:]
		switch {
		case who == "auto", who == "cli", who == "engine", who == "adapt", who == "cluster", who == "redis":
		case c.Knob == "state", c.Knob == "note", c.Knob == "start", c.Knob == "sync":
		default:
			changed = true
		}
	}
	if changed {
		t.pausedTo = now.Add(operatorPause)
		t.clean = 0
		t.knobs.Note("auto", fmt.Sprintf("paused for %s after an operator's change", human.Span(operatorPause)))
	}
	return changed
}

// decide is the controller's rule for one window; it is pure but for the tuner's memory.
func (t *Tuner) decide(w Window, s engine.Snapshot, now time.Time) (engine.Settings, string) {
	set := s.Settings
	next := set
	if w.Calls == 0 || w.OK == 0 {
		t.clean = 0
		return next, ""
	}
	eff := s.Effective
	okRate, _ := w.Accepted()
	if okRate == 0 {
		okRate = w.PerSecond(w.OK)
	}
	if eff.Signals > t.signals {
		// The target pushed back and the engine cut: the limit is near. Slow start ends;
		// the engine's effective values hold the run under it.
		t.signals, t.slow, t.clean, t.raise = eff.Signals, false, 0, raise{}
	}
	if t.knee > 0 && !now.Before(t.kneeTill) {
		t.knee = 0 // look above the knee again
	}
	capRate, _ := eff.RateUnder(set)
	flow := w.PerSecond(w.Calls)
	rateBound := capRate > 0 && flow >= 0.85*capRate
	// A raise is judged in the window after it, unless a rate or a hold held the throughput.
	if r := t.raise; r.to == set.Parallelism && r.okRate > 0 {
		t.raise = raise{}
		// The knee: the raise bought little throughput and cost latency.
		want := float64(r.to)/float64(r.from) - 1
		got := okRate/r.okRate - 1
		if !rateBound && w.Held == 0 && got < kneeGain*want && w.P50 > time.Duration(float64(r.p50)*kneeLatency) && w.TooMany == 0 {
			t.slow, t.clean = false, 0
			t.knee, t.kneeTill = r.from, now.Add(kneeRetry)
			next.Parallelism = r.from
			return next, fmt.Sprintf("knee: parallelism %d → %d gave %.0f → %.0f ok/s, median latency %s → %s",
				r.from, r.to, r.okRate, okRate, human.Latency(r.p50), human.Latency(w.P50))
		}
	}
	if w.TooMany > 0 || w.ErrorShare() > 0.05 {
		t.clean = 0
		return next, ""
	}

	// Little's law: a rate that binds needs rate × latency calls in flight, and more for the
	// tail of the latency.
	if rateBound && w.MeanOK > 0 {
		need := int(math.Ceil(capRate*w.MeanOK.Seconds()*littleHeadroom)) + 1
		if need > set.Parallelism && (t.knee == 0 || need <= t.knee) {
			next.Parallelism = need
			return next, fmt.Sprintf("rate %s binds with %s latency: parallelism for it (Little's law)",
				engine.FormatRate(roundTo3(capRate)), human.Latency(w.MeanOK))
		}
	}

	limitP := set.Parallelism
	if eff.Parallelism > 0 {
		limitP = eff.Parallelism // the target limits calls in flight: the engine holds them
	}
	// While a rate holds the flow, the calls in flight are its, not parallelism's: a raise
	// would buy nothing (Little's law above keeps enough workers for the rate).
	parBinds := eff.Parallelism == 0 && !(eff.Rate > 0 && rateBound) && w.InFlight >= 0.8*float64(limitP)
	rateBinds := eff.Rate == 0 && set.Rate > 0 && flow >= 0.9*set.Rate
	paceBinds := set.Pace > 0 && w.MeanOK < set.Pace && flow >= 0.9*float64(set.Parallelism)/set.Pace.Seconds()
	if !parBinds && !rateBinds && !paceBinds {
		t.clean = 0
		if t.slow && w.InFlight < 0.5*float64(limitP) && eff.Rate > 0 {
			t.slow = false
		}
		return next, ""
	}
	t.clean++
	if !t.slow && t.clean < 2 {
		return next, ""
	}
	t.clean = 0
	why := "clean, parallelism binds"
	switch {
	case rateBinds:
		step := 0.1
		if t.slow {
			step = 1
		}
		next.Rate = roundTo3(set.Rate * (1 + step))
		why = "clean, the rate ceiling binds"
	case paceBinds:
		next.Pace = (set.Pace * 4 / 5).Round(time.Millisecond)
		why = "clean, pacing binds"
	default:
		if t.slow {
			next.Parallelism = set.Parallelism * 2
			why = "slow start: clean, parallelism binds"
		} else {
			next.Parallelism = set.Parallelism + max(1, set.Parallelism/10)
		}
		if t.knee > 0 {
			next.Parallelism = min(next.Parallelism, max(set.Parallelism, t.knee))
		}
		next = next.Fit()
		if next.Parallelism > set.Parallelism {
			t.raise = raise{from: set.Parallelism, to: next.Parallelism, okRate: okRate, p50: w.P50}
		}
	}
	return next, fmt.Sprintf("%s (%.0f ok/s, median %s)", why, okRate, human.Latency(w.P50))
}

// apply makes the change through the knobs, as one change with the origin "auto", and
// describes it.
func (t *Tuner) apply(cur, next engine.Settings, why string) string {
	u := engine.Diff(cur, next.Fit())
	if u.Empty() || t.knobs.Set(u, "auto") != nil {
		return ""
	}
	return why + ": " + u.Describe(cur)
}
