package probes

import (
	"fmt"
	"strconv"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
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
// It judges by the settings alone; [BindingWith] also knows the congestion response's values.
func BindingOf(w Window, set engine.Settings) (Binding, string) {
	return BindingWith(w, set, engine.Effective{})
}

// BindingWith is [BindingOf] for a run whose congestion response holds an effective rate or
// parallelism under the settings (then ceilings): while one of them binds, the target is what
// limits the run ([BindServer]), not the knob, and the reason says so with both values.
func BindingWith(w Window, set engine.Settings, eff engine.Effective) (Binding, string) {
	x := w.PerSecond(w.Calls)
	r := w.Mean.Seconds()
	l := x * r
	rate, rateEff := EffectiveRate(set, eff)
	par, parEff := EffectiveParallelism(set, eff)
	p := float64(par)
	pace := set.Pace.Seconds()
	switch {
	case w.Calls == 0:
		return BindNone, "no calls ended in the last window"
	case w.TooMany > 0:
		return BindServer, fmt.Sprintf("%d × 429 in %s", w.TooMany, human.Span(w.Length))
	case rateEff && x >= 0.9*rate:
		return BindServer, fmt.Sprintf("%s calls/s against the %s", perSec(x), RateText(set, eff))
	case !rateEff && set.Rate > 0 && x >= 0.9*set.Rate:
		return BindRate, fmt.Sprintf("%s calls/s against a cap of %s", perSec(x), engine.FormatRate(set.Rate))
	case pace > r && x >= 0.9*p/pace:
		return BindPacing, fmt.Sprintf("%s calls/s against %d workers / %v pace", perSec(x), par, set.Pace)
	case parEff && l >= 0.85*p:
		return BindServer, fmt.Sprintf("%s calls/s × %s = %.1f in flight under the %s", perSec(x), human.Latency(w.Mean), l, ParallelismText(set, eff))
	case l >= 0.85*p:
		return BindParallelism, fmt.Sprintf("%s calls/s × %s = %.1f in flight of %d", perSec(x), human.Latency(w.Mean), l, set.Parallelism)
	}
	return BindNone, fmt.Sprintf("%s calls/s × %s needs %.1f in flight of %d: workers idle", perSec(x), human.Latency(w.Mean), l, par)
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
	Knob     engine.Knob     // parallelism, rate or pace; none (0) for Hold
	Settings engine.Settings // the suggested settings (the current ones for Hold)
	Binding  Binding
	Reason   string
	// Accepted is the rate the target accepted lately, in ok calls per second, measured away
	// from the Retry-After holds that starve a window ([AcceptedRate]); 0 when unknown. A cap
	// set from it (the screen's - key on a run without one) lets through what flows.
	Accepted float64
}

// String renders the advice as its one line: the reason and the change.
func (a Advice) String() string { return a.Reason }

// isolatedShare is the share of a window's calls answered 429 under which 429s are isolated:
// with the congestion response on, they are how it finds the limit, not a reason to cut.
const isolatedShare = 0.01

// Advise judges the recent windows (oldest first) against the run's settings and the state of
// its congestion response (eff; the zero value for a run without one).
//
// At 429s: with the response on, isolated 429s (under 1% of the calls) are news — the limit
// is found and the engine holds just under it — and persistent ones suggest lowering the
// ceiling to just under the limit found, so that the run stops paying for the probes above
// it. Without the response, an isolated 429 is no reason to cut either; 429s that persist
// suggest a rate just under what the target accepted (never measured in a window a hold
// starved), or less parallelism where the target refuses calls in flight.
//
// Without 429s: back off at a latency knee; hold while errors run above the threshold, while
// an effective value binds (the target limits the run, not a knob), or while the run has been
// clean for less than CleanFor; after a clean period, raise whichever limit binds by a step,
// never above the parallelism ceiling nor past a limit the target showed. It is a pure
// function of its arguments.
func Advise(ws []Window, set engine.Settings, eff engine.Effective, cfg AdvisorConfig) Advice {
	cfg = cfg.withDefaults()
	accepted := AcceptedRate(ws)
	hold := func(reason string) Advice {
		return Advice{Action: Hold, Settings: set, Binding: BindNone, Reason: reason, Accepted: accepted}
	}
	if len(ws) == 0 || ws[len(ws)-1].Calls == 0 {
		return hold("waiting for calls to judge by")
	}
	last := ws[len(ws)-1]
	bind, why := BindingWith(last, set, eff)

	if last.TooMany > 0 {
		a := adviseTooMany(ws, set, eff, accepted)
		a.Accepted = accepted
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
		a := Advice{Action: Lower, Knob: engine.KnobParallelism, Settings: set, Binding: BindServer, Accepted: accepted}
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
	if bind == BindServer { // an effective value binds: the target limits the run
		a := hold(effectiveBinding(last, set, eff) + ": the target limits it, not the ceiling")
		a.Binding = BindServer
		return a
	}

	clean := cleanFor(ws, cfg.MaxErrorShare)
	if clean < cfg.CleanFor {
		return hold(fmt.Sprintf("clean for %s of %s, p95 %s at %s", human.Span(clean), human.Span(cfg.CleanFor), trend, human.Latency(last.P95)))
	}
	lead := fmt.Sprintf("clean for %s, p95 %s at %s, 0 × 429", human.Span(clean), trend, human.Latency(last.P95))
	a := Advice{Action: Raise, Settings: set, Binding: bind, Accepted: accepted}
	switch bind {
	case BindRate:
		if eff.Limit > 0 && set.Rate >= 0.95*eff.Limit {
			return hold(fmt.Sprintf("%s; the rate ceiling %s is at the limit found near %s: raising it would not help",
				lead, engine.FormatRate(set.Rate), engine.FormatComputedRate(eff.Limit)))
		}
		a.Knob, a.Settings.Rate = engine.KnobRate, roundTo3(set.Rate*1.25)
		a.Reason = fmt.Sprintf("%s: raise rate %s → %s", lead, engine.FormatRate(set.Rate), engine.FormatRate(a.Settings.Rate))
	case BindPacing:
		a.Knob, a.Settings.Pace = engine.KnobPace, (set.Pace * 3 / 4).Round(time.Microsecond)
		a.Reason = fmt.Sprintf("%s: shorten pace %v → %v", lead, set.Pace, a.Settings.Pace)
	case BindParallelism:
		if eff.Concurrency > 0 && set.Parallelism >= eff.Concurrency-1 {
			return hold(fmt.Sprintf("%s; parallelism %d is at the limit found near %d in flight: raising it would not help",
				lead, set.Parallelism, eff.Concurrency))
		}
		raised := set
		raised.Parallelism += max(1, set.Parallelism/3)
		next := raised.Fit().Parallelism
		if next == set.Parallelism {
			return hold(fmt.Sprintf("%s, but parallelism is at its max (--max-parallelism %d)", lead, set.MaxParallelism))
		}
		a.Knob, a.Settings.Parallelism = engine.KnobParallelism, next
		a.Reason = fmt.Sprintf("%s: raise parallelism %d → %d", lead, set.Parallelism, next)
	default:
		return hold(fmt.Sprintf("%s; %s, so raising a limit would not help", lead, why))
	}
	return a
}

// adviseTooMany judges a last window with 429s (see [Advise]).
func adviseTooMany(ws []Window, set engine.Settings, eff engine.Effective, accepted float64) Advice {
	last := ws[len(ws)-1]
	share := last.TooManyShare()
	hold := func(reason string) Advice {
		return Advice{Action: Hold, Settings: set, Binding: BindServer, Reason: reason}
	}
	// Most 429s said when to come back: the target counts calls over time, and the rate is
	// the knob; without a Retry-After it usually counts calls in flight.
	timed := last.TooManyTimed*2 > last.TooMany

	if Adapting(eff) {
		byRate := timed || (last.TooManyTimed*2 == last.TooMany && eff.Concurrency == 0)
		count := fmt.Sprintf("%d × 429 in %s", last.TooMany, human.Span(last.Length))
		if share < isolatedShare {
			if near := limitNear(eff, byRate, accepted); near != "" {
				return hold(count + ": limit found near " + near + "; throttle is holding just under it")
			}
			return hold(count + ": throttle's effective values are finding the limit; hold")
		}
		head := fmt.Sprintf("%.1f%% 429s", 100*share)
		if byRate {
			limit := eff.Limit
			if limit <= 0 {
				limit = accepted
			}
			if limit <= 0 {
				return hold(head + ": throttle is finding the target's limit; hold")
			}
			to := roundTo3(limit * 0.975)
			if set.Rate <= 0 || to < 0.99*set.Rate {
				a := Advice{Action: Lower, Knob: engine.KnobRate, Settings: set, Binding: BindServer}
				a.Settings.Rate = to
				a.Reason = fmt.Sprintf("%s: rate ceiling %s → %s, the target accepts ~%s", head, CeilingRate(set.Rate), engine.FormatComputedRate(to), engine.FormatComputedRate(limit))
				return a
			}
			return hold(fmt.Sprintf("%s: the target accepts ~%s and the ceiling %s is at it; throttle holds the rest", head, engine.FormatComputedRate(limit), engine.FormatRate(set.Rate)))
		}
		if c := eff.Concurrency; c > 0 {
			if to := max(1, c-1); to < set.Parallelism {
				a := Advice{Action: Lower, Knob: engine.KnobParallelism, Settings: set, Binding: BindServer}
				a.Settings.Parallelism = to
				a.Reason = fmt.Sprintf("%s: parallelism ceiling %d → %d, the target refuses at %d in flight", head, set.Parallelism, to, c)
				return a
			}
			return hold(fmt.Sprintf("%s: the target refuses at %d in flight and the ceiling %d is under it; throttle holds the rest", head, c, set.Parallelism))
		}
		return hold(head + ": throttle is finding the target's limit; hold")
	}

	// No congestion response: the settings hold as given, and each 429 with a Retry-After
	// stops the whole pool.
	reason := fmt.Sprintf("%d × 429 in the last %s (%.1f%% of calls)", last.TooMany, human.Span(last.Length), 100*share)
	recurring := len(ws) > 1 && ws[len(ws)-2].TooMany > 0
	if share < isolatedShare && !recurring {
		return hold(reason + ": isolated, not a reason to cut; hold")
	}
	a := Advice{Action: Lower, Settings: set, Binding: BindServer}
	if timed || set.Rate > 0 {
		if accepted <= 0 {
			return hold(reason + ": too little time away from Retry-After holds yet to measure what the target accepts; hold")
		}
		// Just under what the target accepted, measured away from the holds: a cut from a
		// window the holds starved would cap the run far below the target's limit.
		base := accepted
		if set.Rate > 0 {
			base = min(base, set.Rate)
		}
		a.Knob, a.Settings.Rate = engine.KnobRate, max(roundTo3(base*0.95), 0.001)
		a.Reason = fmt.Sprintf("%s: lower rate %s → %s, the target accepted %s", reason, engine.FormatRate(set.Rate), engine.FormatRate(a.Settings.Rate), engine.FormatComputedRate(accepted))
	} else {
		a.Knob, a.Settings.Parallelism = engine.KnobParallelism, max(1, int(float64(set.Parallelism)*0.7))
		a.Reason = fmt.Sprintf("%s: lower parallelism %d → %d", reason, set.Parallelism, a.Settings.Parallelism)
	}
	if a.Settings == set || (a.Knob == engine.KnobRate && set.Rate > 0 && a.Settings.Rate >= set.Rate) {
		return hold(reason + ": already at the lowest setting")
	}
	return a
}

// limitNear writes the limit the response found: the rate the target accepted when it last
// pushed back (or the effective rate, or the accepted rate), or the calls in flight at which
// it refused one; "" when none is known.
func limitNear(eff engine.Effective, byRate bool, accepted float64) string {
	if !byRate && eff.Concurrency > 0 {
		return fmt.Sprintf("%d in flight", eff.Concurrency)
	}
	for _, r := range []float64{eff.Limit, eff.Rate, accepted} {
		if r > 0 {
			return engine.FormatComputedRate(r)
		}
	}
	if eff.Concurrency > 0 {
		return fmt.Sprintf("%d in flight", eff.Concurrency)
	}
	return ""
}

// effectiveBinding writes the effective value that binds in w: the rate's, else the
// parallelism's.
func effectiveBinding(w Window, set engine.Settings, eff engine.Effective) string {
	if r, binds := EffectiveRate(set, eff); binds && w.PerSecond(w.Calls) >= 0.9*r {
		return RateText(set, eff)
	}
	return ParallelismText(set, eff)
}

// AcceptedRate is the rate the target accepted lately, in ok calls per second, measured away
// from the Retry-After holds, which starve a window of calls and would make the target look
// slower than it is: the ok calls that ended outside the holds per second outside them
// ([Window.Accepted]), over the newest windows until they add up to acceptedMin — the newest
// window alone unless holds took most of it, as they do when a pool is held again and again
// under a whole-second Retry-After — and at most acceptedSpan back. 0 when they do not.
func AcceptedRate(ws []Window) float64 {
	var ok int64
	var free time.Duration
	for i := len(ws) - 1; i >= 0 && free < acceptedMin; i-- {
		w := ws[i]
		if ws[len(ws)-1].Start.Sub(w.Start) >= acceptedSpan {
			break
		}
		if w.Calls == 0 || w.Held >= w.Length {
			continue
		}
		ok += w.okFree()
		free += w.Length - w.Held
	}
	if free < acceptedMin {
		return 0
	}
	return float64(ok) / free.Seconds()
}

// The span of AcceptedRate: at least acceptedMin outside holds, from the last acceptedSpan.
const (
	acceptedMin  = 2 * time.Second
	acceptedSpan = 30 * time.Second
)

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
