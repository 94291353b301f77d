package probes

import (
	"context"
	"fmt"
	"github.com/throttle-dev/throttle/internal/human"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// Knobs is what the auto-tuner reads and turns: an [*engine.Engine].
type Knobs interface {
	Snapshot() engine.Snapshot
	SetParallelism(n int, origin string) error
	SetPace(d time.Duration, origin string) error
	SetRate(perSecond float64, burst int, origin string) error
	Note(origin, text string)
}

// AutoWindow is the window the auto-tuner decides on: short, so that it converges in tens of
// seconds.
const AutoWindow = 2 * time.Second

// operatorPause is how long an operator's own change keeps the auto-tuner's hands off.
const operatorPause = 60 * time.Second

// Tuner is the --auto controller, in the spirit of TCP's AIMD and Netflix's gradient
// concurrency limit:
//
//   - At 429s with Retry-After (a server that counts requests over time) it caps the rate just
//     under what the server accepted in that window, or lowers an existing cap by a tenth. At
//     429s without one (a server that counts connections) it steps parallelism down and does
//     not raise it past that point again until five minutes have been clean.
//   - At a latency knee (mean latency 30% over the lowest seen while parallelism binds) it
//     sets parallelism by the gradient: P × baseline/latency, plus one.
//   - After clean windows it raises whichever limit binds: until the first sign of a limit
//     parallelism grows by a quarter after every clean window (like TCP's slow start), after it by a
//     tenth (at least one) after two; the rate by 3%, doubling the step at each raise up to
//     25% until the next 429s; pacing shortened by a fifth. It keeps
//     parallelism at least rate × latency × 1.5, so that a rate cap is never starved of
//     workers.
//
// An operator's change (from the TUI or ctl) pauses it for a minute; the pause is logged.
type Tuner struct {
	knobs    Knobs
	windows  *Windows
	baseline time.Duration
	clean    int
	ceiling  int       // parallelism where a server that counts connections said 429; 0 if none
	probe    int       // clean windows since the ceiling was last raised
	cooldown int       // windows to sit out after a decrease: calls started before it still land
	cautious bool      // set at the first sign of a limit: from then on, raises are small
	cleanOK  float64   // ok answers per second of the last window without 429s
	raises   int       // rate raises since the last 429s: each step doubles, from 3% to 25%
	seen     time.Time // the newest change of the log already looked at
	pausedTo time.Time // operator's hands on the knobs until then
}

// NewTuner returns a Tuner fed by ws (windows of [AutoWindow]).
func NewTuner(k Knobs, ws *Windows) *Tuner { return &Tuner{knobs: k, windows: ws} }

// Run steps the tuner every AutoWindow until ctx is done or the run ends.
func (t *Tuner) Run(ctx context.Context) {
	tick := time.NewTicker(AutoWindow)
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
	next, why := t.decide(ws[len(ws)-1], s.Settings)
	if next == s.Settings {
		return ""
	}
	return t.apply(s.Settings, next, why)
}

// operatorChanged pauses the tuner when somebody other than the tuner turned a knob since the
// last step.
func (t *Tuner) operatorChanged(s engine.Snapshot, now time.Time) bool {
	changed := false
	for _, c := range s.Changes {
		if !c.At.After(t.seen) {
			continue
		}
		t.seen = c.At
		if c.Origin != "auto" && c.Origin != "cli" && c.Origin != "engine" && c.Knob != "state" && c.Knob != "note" {
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

// decide is the controller's rule for one window; it is pure but for the tuner's memory
// (latency baseline, clean streak).
func (t *Tuner) decide(w Window, set engine.Settings) (engine.Settings, string) {
	next := set
	if w.Calls == 0 {
		return next, ""
	}
	if w.OK == 0 {
		t.clean = 0
		return next, ""
	}
	if t.baseline == 0 || w.MeanOK < t.baseline {
		t.baseline = w.MeanOK
	} else {
		t.baseline += t.baseline / 100 // forget slowly: a server can get slower for good
	}
	if t.cooldown > 0 {
		t.cooldown--
		return next, ""
	}
	okRate := w.PerSecond(w.OK)
	if w.TooMany > 0 {
		t.clean, t.cautious, t.raises = 0, true, 0
		why := fmt.Sprintf("%d × 429 in %s at %.0f ok/s", w.TooMany, human.Span(w.Length), okRate)
		if w.TooManyTimed*2 < w.TooMany {
			// No Retry-After: the server counts calls in flight. Step parallelism down and
			// remember where the 429s began.
			next.Parallelism = max(1, set.Parallelism-1)
			t.ceiling, t.probe, t.cooldown = next.Parallelism, 0, 1
			return next, why + " without Retry-After"
		}
		t.cooldown = 1
		// In a window with 429s the server's Retry-After holds every worker, so its ok rate
		// can be far below what the server takes; the last window without 429s is a better
		// lower bound of it.
		target := roundTo3(max(1, 0.97*max(okRate, t.cleanOK)))
		if set.Rate == 0 || set.Rate > target*1.02 {
			next.Rate = target
		} else {
			next.Rate = roundTo3(max(1, set.Rate*0.9))
		}
		return next, why
	}
	t.cleanOK = okRate
	bind, _ := BindingOf(w, set)
	if bind == BindParallelism && w.MeanOK > t.baseline*13/10 && set.Parallelism > 1 {
		t.clean, t.cautious = 0, true
		p := int(float64(set.Parallelism)*float64(t.baseline)/float64(w.MeanOK)) + 1
		next.Parallelism = max(1, min(p, set.Parallelism-1))
		t.cooldown = 1
		return next, fmt.Sprintf("latency %s is %.0f%% over its baseline %s (knee)", human.Latency(w.MeanOK),
			100*(float64(w.MeanOK)/float64(t.baseline)-1), human.Latency(t.baseline))
	}
	if w.ErrorShare() > 0.05 {
		t.clean = 0
		return next, ""
	}
	t.clean++
	if t.ceiling > 0 {
		// Above a connection ceiling a server answers 429 fast and often, so look above it
		// again only after five clean minutes.
		if t.probe++; t.probe >= 150 {
			t.ceiling, t.probe = t.ceiling+1, 0
		}
	}
	// Like TCP's slow start: until the first sign of a limit, grow by a quarter after every clean
	// window; after it, by a tenth after two.
	if t.clean < 2 && t.cautious {
		return next, ""
	}
	t.clean = 0
	switch bind {
	case BindRate:
		// Far below the server's limit (a cap set from a window the server's holds starved)
		// a fixed 3% step would take minutes; doubling the step until the next 429s does not.
		step := min(0.03*float64(int(1)<<min(t.raises, 4)), 0.25)
		t.raises++
		next.Rate = roundTo3(set.Rate * (1 + step))
		need := int(set.Rate*w.Mean.Seconds()*1.5) + 1
		if need > set.Parallelism {
			next.Parallelism = need
		}
	case BindPacing:
		next.Pace = (set.Pace * 4 / 5).Round(time.Millisecond)
	case BindParallelism:
		if t.cautious {
			next.Parallelism = set.Parallelism + max(1, set.Parallelism/10)
		} else {
			next.Parallelism = set.Parallelism + max(1, set.Parallelism/4)
		}
	default:
		return next, ""
	}
	if t.ceiling > 0 && next.Parallelism > t.ceiling {
		next.Parallelism = max(set.Parallelism, t.ceiling)
	}
	return next, fmt.Sprintf("clean for %s, %s binds", human.Span(2*w.Length), bind)
}

// apply makes the change through the knobs, with the origin "auto", and describes it.
func (t *Tuner) apply(cur, next engine.Settings, why string) string {
	if next.MaxParallelism > 0 {
		next.Parallelism = min(next.Parallelism, next.MaxParallelism)
	}
	var did []string
	if next.Parallelism != cur.Parallelism && t.knobs.SetParallelism(next.Parallelism, "auto") == nil {
		did = append(did, fmt.Sprintf("parallelism %d → %d", cur.Parallelism, next.Parallelism))
	}
	if next.Rate != cur.Rate && t.knobs.SetRate(next.Rate, cur.Burst, "auto") == nil {
		did = append(did, fmt.Sprintf("rate %s → %s", engine.FormatRate(cur.Rate), engine.FormatRate(next.Rate)))
	}
	if next.Pace != cur.Pace && t.knobs.SetPace(next.Pace, "auto") == nil {
		did = append(did, fmt.Sprintf("pace %v → %v", cur.Pace, next.Pace))
	}
	if len(did) == 0 {
		return ""
	}
	out := why + ": "
	for i, d := range did {
		if i > 0 {
			out += ", "
		}
		out += d
	}
	return out
}
