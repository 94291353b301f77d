package probes

import (
	"fmt"
	"github.com/throttle-dev/throttle/internal/human"
	"strconv"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// Binding names the limit that holds a run's throughput now.
type Binding string

// The bindings of [BindingOf].
const (
	BindParallelism Binding = "parallelism"
	BindPacing      Binding = "pacing"
	BindRate        Binding = "rate"
	BindServer      Binding = "server"
	BindNone        Binding = "none"
)

// BindingOf tells which limit binds, with the numbers behind it, from Little's law: a window
// with throughput X and mean latency R keeps L = X·R calls in flight. L near the parallelism
// limit means parallelism binds; X near the rate cap, the rate; X near W/pace with a pace
// longer than the latency, pacing; 429s mean the server binds; otherwise the workers idle.
func BindingOf(w Window, set engine.Settings) (Binding, string) {
	x := w.PerSecond(w.Calls)
	r := w.Mean.Seconds()
	l := x * r
	p := float64(set.Parallelism)
	pace := set.Pace.Seconds()
	switch {
	case w.Calls == 0:
		return BindNone, "no calls ended in the last window"
	case w.TooMany > 0:
		return BindServer, fmt.Sprintf("%d × 429 in %s", w.TooMany, human.Span(w.Length))
	case set.Rate > 0 && x >= 0.9*set.Rate:
		return BindRate, fmt.Sprintf("%s calls/s against a cap of %s", perSec(x), engine.FormatRate(set.Rate))
	case pace > r && x >= 0.9*p/pace:
		return BindPacing, fmt.Sprintf("%s calls/s against %d workers / %v pace", perSec(x), set.Parallelism, set.Pace)
	case l >= 0.85*p:
		return BindParallelism, fmt.Sprintf("%s calls/s × %s = %.1f in flight of %d", perSec(x), human.Latency(w.Mean), l, set.Parallelism)
	}
	return BindNone, fmt.Sprintf("%s calls/s × %s needs %.1f in flight of %d: workers idle", perSec(x), human.Latency(w.Mean), l, set.Parallelism)
}

// perSec renders a rate readably at any size: 1234, 12.5, 0.4.
func perSec(x float64) string {
	if x >= 100 {
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strconv.FormatFloat(roundTo3(x), 'f', -1, 64)
}

// AdvisorConfig sets the advisor's judgement.
type AdvisorConfig struct {
	// CleanFor is how long a run must be clean before the advisor suggests going faster
	// (default 60s).
	CleanFor time.Duration
	// MaxErrorShare is the share of failed calls (429s aside) a clean window may have
	// (default 0.01).
	MaxErrorShare float64
	// LatencyBand is how much p95 may grow, relative to its mean, before it counts as rising
	// (default 0.15).
	LatencyBand float64
}

func (c AdvisorConfig) withDefaults() AdvisorConfig {
	if c.CleanFor <= 0 {
		c.CleanFor = 60 * time.Second
	}
	if c.MaxErrorShare <= 0 {
		c.MaxErrorShare = 0.01
	}
	if c.LatencyBand <= 0 {
		c.LatencyBand = 0.15
	}
	return c
}

// Action is what an [Advice] asks for.
type Action string

// The actions of advice.
const (
	Hold  Action = "hold"
	Raise Action = "raise"
	Lower Action = "lower"
)

// Advice is one suggestion: the settings to apply, the knob it turns, and why, with numbers.
type Advice struct {
	Action   Action
	Knob     string          // "parallelism", "rate" or "pace"; empty for Hold
	Settings engine.Settings // the suggested settings (the current ones for Hold)
	Binding  Binding
	Reason   string
}

// String renders the advice as its one line: the reason and the change.
func (a Advice) String() string { return a.Reason }

// Advise judges the recent windows (oldest first) against the run's settings: back off at
// 429s (multiplicative decrease of the knob that lets them through) or at a latency knee;
// hold while errors run above the threshold or the run has been clean for less than
// CleanFor; after a clean period, raise whichever limit binds by a step, never above the
// parallelism ceiling. It is a pure function of its arguments.
func Advise(ws []Window, set engine.Settings, cfg AdvisorConfig) Advice {
	cfg = cfg.withDefaults()
	hold := func(reason string) Advice {
		return Advice{Action: Hold, Settings: set, Binding: BindNone, Reason: reason}
	}
	if len(ws) == 0 || ws[len(ws)-1].Calls == 0 {
		return hold("waiting for calls to judge by")
	}
	last := ws[len(ws)-1]
	bind, why := BindingOf(last, set)

	if last.TooMany > 0 {
		a := Advice{Action: Lower, Settings: set, Binding: BindServer}
		reason := fmt.Sprintf("%d × 429 in the last %s (%.1f%% of calls)", last.TooMany, human.Span(last.Length), 100*last.TooManyShare())
		if set.Rate > 0 {
			// From what flows, not from the cap: a cap far above the traffic lets 429s through.
			base := set.Rate
			if flow := last.PerSecond(last.Calls); flow < 0.9*set.Rate {
				base = flow
			}
			a.Knob, a.Settings.Rate = "rate", max(roundTo3(base*0.8), 0.001)
			a.Reason = fmt.Sprintf("%s: lower rate %s → %s", reason, engine.FormatRate(set.Rate), engine.FormatRate(a.Settings.Rate))
		} else {
			a.Knob, a.Settings.Parallelism = "parallelism", max(1, int(float64(set.Parallelism)*0.7))
			a.Reason = fmt.Sprintf("%s: lower parallelism %d → %d", reason, set.Parallelism, a.Settings.Parallelism)
		}
		if a.Settings == set {
			return hold(reason + ": already at the lowest setting")
		}
		return a
	}

	span := lastSpan(ws, cfg.CleanFor)
	p95s := make([]float64, 0, len(span))
	for _, w := range span {
		if w.Calls > 0 {
			p95s = append(p95s, float64(w.P95))
		}
	}
	trend, change := TrendOf(p95s, cfg.LatencyBand)
	if trend == Rising && bind == BindParallelism && len(p95s) >= 3 {
		a := Advice{Action: Lower, Knob: "parallelism", Settings: set, Binding: BindServer}
		a.Settings.Parallelism = max(1, int(float64(set.Parallelism)*0.8))
		first := time.Duration(p95s[len(p95s)-1] - change)
		a.Reason = fmt.Sprintf("p95 rising %s → %s over %s with parallelism binding (latency knee): lower parallelism %d → %d",
			human.Latency(first), human.Latency(last.P95), human.Span(time.Duration(len(p95s))*last.Length), set.Parallelism, a.Settings.Parallelism)
		if a.Settings != set {
			return a
		}
	}
	if trend == Rising {
		return hold(fmt.Sprintf("p95 rising %s → %s: not clean; hold", human.Latency(time.Duration(p95s[len(p95s)-1]-change)), human.Latency(last.P95)))
	}
	if last.ErrorShare() > cfg.MaxErrorShare {
		return hold(fmt.Sprintf("errors %.1f%% of calls in the last %s (%s): hold until they clear",
			100*last.ErrorShare(), human.Span(last.Length), errorMix(last)))
	}

	clean := cleanFor(ws, cfg.MaxErrorShare)
	if clean < cfg.CleanFor {
		return hold(fmt.Sprintf("clean for %s of %s, p95 %s at %s", human.Span(clean), human.Span(cfg.CleanFor), trend, human.Latency(last.P95)))
	}
	lead := fmt.Sprintf("clean for %s, p95 %s at %s, 0 × 429", human.Span(clean), trend, human.Latency(last.P95))
	a := Advice{Action: Raise, Settings: set, Binding: bind}
	switch bind {
	case BindRate:
		a.Knob, a.Settings.Rate = "rate", roundTo3(set.Rate*1.25)
		a.Reason = fmt.Sprintf("%s: raise rate %s → %s", lead, engine.FormatRate(set.Rate), engine.FormatRate(a.Settings.Rate))
	case BindPacing:
		a.Knob, a.Settings.Pace = "pace", (set.Pace * 3 / 4).Round(time.Microsecond)
		a.Reason = fmt.Sprintf("%s: shorten pace %v → %v", lead, set.Pace, a.Settings.Pace)
	case BindParallelism:
		next := set.Parallelism + max(1, set.Parallelism/3)
		if set.MaxParallelism > 0 {
			next = min(next, set.MaxParallelism)
		}
		if next == set.Parallelism {
			return hold(fmt.Sprintf("%s, but parallelism is at its ceiling %d", lead, set.MaxParallelism))
		}
		a.Knob, a.Settings.Parallelism = "parallelism", next
		a.Reason = fmt.Sprintf("%s: raise parallelism %d → %d", lead, set.Parallelism, next)
	default:
		return hold(fmt.Sprintf("%s; %s, so raising a limit would not help", lead, why))
	}
	return a
}

// lastSpan returns the windows of the last d, oldest first.
func lastSpan(ws []Window, d time.Duration) []Window {
	if len(ws) == 0 {
		return nil
	}
	n := max(1, int(d/ws[0].Length))
	if len(ws) > n {
		return ws[len(ws)-n:]
	}
	return ws
}

// cleanFor is how long the newest windows have been clean: calls, no 429s, errors under the
// threshold.
func cleanFor(ws []Window, maxErr float64) time.Duration {
	var d time.Duration
	for i := len(ws) - 1; i >= 0; i-- {
		w := ws[i]
		if w.Calls == 0 || w.TooMany > 0 || w.ErrorShare() > maxErr {
			break
		}
		d += w.Length
	}
	return d
}

func errorMix(w Window) string {
	var s string
	add := func(n int64, what string) {
		if n > 0 {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%d %s", n, what)
		}
	}
	add(w.Server5xx, "5xx")
	add(w.Timeouts, "timeouts")
	add(w.Connection, "connection")
	add(w.Client4xx, "4xx")
	add(w.Other, "other")
	return s
}

func roundTo3(v float64) float64 {
	if v <= 0 {
		return 0
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 3, 64), 64)
	return r
}
