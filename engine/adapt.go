package engine

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// The congestion response. The operator's rate and parallelism are ceilings; under them the
// engine keeps an effective rate and an effective parallelism that fall when the target
// pushes back and climb back toward the ceilings while it does not, in the family of TCP
// CUBIC and the AWS SDKs' adaptive retry mode:
//
//   - A 429 or 503 with Retry-After (a target that counts calls over time) cuts the effective
//     rate from the rate the target was accepting: ok answers per second over the last few
//     seconds in which no hold starved the pool. With such a measure the cut is small (the
//     limit is known); without one (the signal came too soon after the start or the last cut)
//     it is a blind, larger cut from the rate that was flowing.
//   - A 429 without Retry-After (a target that counts calls in flight) cuts the effective
//     parallelism below the calls that were in flight when the refused call started.
//   - Only a call started after the last cut counts as a new signal: the answers to calls
//     already under way when the engine cut describe the old rate, so a burst of 429s from
//     one moment counts once (TCP's recovery rule).
//   - After a cut the value climbs along a cubic: fast at first, flat near the level where
//     the target pushed back (the plateau holds the run just under the limit), then faster
//     again past it, so that a limit the target raised is found. It grows only while it binds:
//     a rate the workers cannot reach does not climb (RFC 7661's application-limited rule).
//
// A quota the target reports (X-RateLimit-*, RateLimit) is accounted exactly instead: each
// answer says what was left when its call arrived, so the calls started after it are taken
// off, and no call starts once the quota is spent until its reset, whose instant is narrowed
// from the whole-second Reset of many answers.

// HoldMode says how a shared Retry-After hold of the whole pool ends.
type HoldMode uint8

const (
	// HoldStrict ends a hold at the time the server asked for.
	HoldStrict HoldMode = iota
	// HoldProbe lets one call at a time test the water during a hold; the first success
	// lifts it. For targets whose whole-second Retry-After overstates the wait (a token
	// bucket refills continuously).
	HoldProbe
)

// String returns "strict" or "probe".
func (m HoldMode) String() string {
	if m == HoldProbe {
		return "probe"
	}
	return "strict"
}

// ParseHoldMode parses "strict" or "probe".
func ParseHoldMode(s string) (HoldMode, error) {
	switch s {
	case "strict", "":
		return HoldStrict, nil
	case "probe":
		return HoldProbe, nil
	}
	return HoldStrict, fmt.Errorf("engine: hold %q: want strict or probe", s)
}

// Effective is what the congestion response holds the run to now, under the ceilings.
type Effective struct {
	// Rate is the effective rate in calls per second; 0 when the ceiling (or nothing) applies.
	Rate float64
	// Parallelism is the effective parallelism; 0 when the ceiling applies.
	Parallelism int
	// Limit is the rate the target accepted when it last pushed back (calls/s); 0 if never.
	Limit float64
	// Concurrency is how many calls were in flight when the target last refused one for
	// concurrency (a 429 without Retry-After); 0 if never.
	Concurrency int
	// Signals counts the target's pushbacks that the engine answered (one per moment).
	Signals int
	// QuotaLeft is the engine's estimate of the reported quota left now; -1 when unknown.
	QuotaLeft int64
}

// Tuning of the response. The figures behind them are in the README's benchmark.
const (
	adaptSlot        = 100 * time.Millisecond  // resolution of the accepted-rate measure
	adaptSlots       = 64                      // slots kept: 6.4 s
	acceptWindow     = 1500 * time.Millisecond // the "last few seconds" of the accepted rate: those at the limit
	acceptMin        = 800 * time.Millisecond
	longerWindow     = 4 * time.Second         // a steady flow is measured over this much when it can be…
	longerMin        = 2500 * time.Millisecond // …and covers this
	steadyWindow     = 500 * time.Millisecond  // the newest flow, to tell a steady one from a raise
	semiBeta         = 0.9                     // cut to this share of a flow that had just risen
	measuredBeta     = 0.95                    // cut to this share of the measured accepted rate
	blindBeta        = 0.75                    // cut to this share of the flow when nothing was measured
	plateauShare     = 0.97                    // the plateau sits at this share of the accepted rate…
	preciseShare     = 0.985                   // …of one measured over the longer window…
	convergeShare    = 0.98                    // …or of this one when the target pushed back under the last plateau
	rateK            = 15 * time.Second        // from a measured cut to its plateau (--hold strict)…
	probeK           = 6 * time.Second         // …and with --hold probe
	blindGrowth      = 0.2                     // per second, after a blind cut
	blindRepeat      = 6 * time.Second         // a blind cut within this of the last cut halves
	semiK            = 2 * time.Second         // from a cut on a rough estimate to its plateau
	rateKConfirmed   = 18 * time.Second        // from a refusal that confirmed the limit to the next look past it (a raised limit is still found within 30 s)
	parBeta          = 0.95
	parK             = 5 * time.Second
	probeUpCubic     = 1.4e-4          // past the plateau: +3% after 6 s…
	roughUpCubic     = 3.75e-3         // …or after 2 s past a plateau that was only estimated
	probeUpShare     = 1.03            // past this share of the plateau without a signal…
	probeUpAfter     = time.Second     // …for this long, the limit has moved: grow exponentially
	probeUpDoubling  = 2 * time.Second // the exponential phase doubles this often
	adaptTick        = 100 * time.Millisecond
	holdProbeSpacing = 100 * time.Millisecond
)

type adaptSlotCount struct {
	n      int64 // slot number (time / adaptSlot); a slot is valid only for its own number
	starts int32
}

type span struct{ from, to time.Time }

// cubic is one climb after a cut: from w0 at the cut to top at k, and past it.
type cubic struct {
	at     time.Time     // the cut; moved forward while the value does not bind
	w0     float64       // the value set at the cut
	top    float64       // where the target pushed back: the plateau
	k      time.Duration // time from the cut to the plateau
	passed time.Time     // when the value first passed probeUpShare × top; zero before
	blind  bool          // a blind cut's climb: steady growth, no plateau
	rough  bool          // the plateau is an estimate, not a measure: look past it sooner
}

// value returns the climb's value at now.
func (c *cubic) value(now time.Time) float64 {
	t := now.Sub(c.at).Seconds()
	if c.blind {
		// After a blind cut nothing says where the limit is: grow steadily from the cut until
		// the next signal, which will come with a measure.
		return c.w0 * math.Pow(1+blindGrowth, t)
	}
	k := c.k.Seconds()
	var v float64
	if t <= k {
		v = c.top + (c.top-c.w0)/(k*k*k)*math.Pow(t-k, 3) // concave: back to the plateau
	} else {
		// Convex past it, at a pace of its own (not the cut's depth), so that a limit the
		// target raised is found within half a minute of the cut.
		up := probeUpCubic
		if c.rough {
			up = roughUpCubic
		}
		v = c.top * (1 + up*math.Pow(t-k, 3))
	}
	if !c.passed.IsZero() {
		if d := now.Sub(c.passed) - probeUpAfter; d > 0 {
			v = max(v, c.top*probeUpShare*math.Exp2(d.Seconds()/probeUpDoubling.Seconds()))
		}
	} else if v >= c.top*probeUpShare {
		c.passed = now
	}
	return v
}

type adaptState struct {
	on      bool
	slots   [adaptSlots]adaptSlotCount
	holds   [8]span // recent holds, newest at holdsN-1 (mod 8)
	holdsN  int
	latency time.Duration // smoothed latency of ok calls, for the pipeline's fill time

	rate       float64 // effective rate; 0 = none
	rateCurve  cubic
	rateCut    time.Time // when the rate was last cut; calls started before do not count
	rateLogged float64
	limit      float64

	par       int // effective parallelism; 0 = none
	parCurve  cubic
	parCut    time.Time
	parLogged int
	conc      int

	signals int

	probing   bool      // a hold-probe call is in flight
	probeNext time.Time // the next hold probe may start then

	quota quotaTrack
}

// quotaTrack estimates a reported quota's state now.
type quotaTrack struct {
	valid    bool
	limit    int64
	left     int64     // estimate of what is left now
	lo, hi   time.Time // the reset instant lies in (lo, hi]
	startSeq int64     // calls started so far (the engine's count)
}

// slotOf returns the slot of instant t.
func (a *adaptState) slotOf(t time.Time) *adaptSlotCount {
	n := t.UnixNano() / int64(adaptSlot)
	s := &a.slots[n%adaptSlots]
	if s.n != n {
		*s = adaptSlotCount{n: n}
	}
	return s
}

// held reports whether the slot starting at t overlapped a hold, or the pipeline's refill
// after one (a latency after it ended).
func (a *adaptState) held(t time.Time) bool {
	end := t.Add(adaptSlot)
	for _, h := range a.holds {
		if h.from.IsZero() {
			continue
		}
		if end.After(h.from) && t.Before(h.to.Add(a.latency)) {
			return true
		}
	}
	return false
}

// flow returns the call starts per second over the unheld slots of the last span after
// since, and how long those slots cover. Before a token bucket refuses a call, every call
// started before it was taken: the flow up to a refusal is what the target accepted.
func (a *adaptState) flow(now, since time.Time, last time.Duration) (perSecond float64, covered time.Duration) {
	cur := now.UnixNano() / int64(adaptSlot)
	var starts int64
	for i := int64(1); i <= int64(last/adaptSlot); i++ {
		n := cur - i
		t := time.Unix(0, n*int64(adaptSlot))
		if t.Before(since) {
			break
		}
		if a.held(t) {
			continue
		}
		if s := &a.slots[n%adaptSlots]; s.n == n {
			starts += int64(s.starts)
		}
		covered += adaptSlot
	}
	if covered == 0 {
		return 0, 0
	}
	return float64(starts) / covered.Seconds(), covered
}

// RateUnder returns the rate cap in force under the settings s (calls/s; 0 for none): the
// effective rate while it is under the ceiling, said by binds, else the ceiling.
func (ef Effective) RateUnder(s Settings) (perSecond float64, binds bool) {
	if ef.Rate > 0 && (s.Rate <= 0 || ef.Rate < s.Rate) {
		return ef.Rate, true
	}
	return s.Rate, false
}

// ParallelismUnder returns the parallelism in force under the settings s: the effective
// parallelism while it is under the ceiling, said by binds, else the ceiling.
func (ef Effective) ParallelismUnder(s Settings) (n int, binds bool) {
	if ef.Parallelism > 0 && ef.Parallelism < s.Parallelism {
		return ef.Parallelism, true
	}
	return s.Parallelism, false
}

// rateCapLocked is the rate the limiter holds. It requires that e.mu is held.
func (e *Engine) rateCapLocked() float64 {
	r, _ := Effective{Rate: e.adapt.rate}.RateUnder(e.settings)
	return r
}

// parCapLocked is the parallelism admission allows. It requires that e.mu is held.
func (e *Engine) parCapLocked() int {
	p, _ := Effective{Parallelism: e.adapt.par}.ParallelismUnder(e.settings)
	return p
}

// applyRateLocked sets the limiter to rateCapLocked. It requires that e.mu is held.
func (e *Engine) applyRateLocked(now time.Time) {
	e.limiter.SetLimitAt(now, limitOf(e.rateCapLocked()))
}

// noteStartLocked counts a call start for the measures and the quota. It requires that e.mu
// is held.
func (e *Engine) noteStartLocked(w *worker, now time.Time) {
	q := &e.adapt.quota
	q.startSeq++
	w.startSeq = q.startSeq
	if !e.adapt.on {
		return
	}
	e.adapt.slotOf(now).starts++
	if q.valid && now.Before(q.hi) {
		q.left--
		if q.left <= 0 {
			e.holdLocked(q.hi, now, 0)
		}
	}
}

// endCall ends w's call: it answers what the call's outcomes say of the target (reactLocked)
// and frees the call's slot, under one hold of the lock, so that no worker starts a call in
// between and the hot path pays for one lock, not two. err is the call's error when it got no
// answer.
func (e *Engine) endCall(w *worker, outs []Outcome, err error, start, now time.Time) {
	e.mu.Lock()
	if err != nil {
		e.reactLocked(w, Outcome{Verdict: Fail}, start, now) // no answer: nothing said of the target's limits
	}
	for _, out := range outs {
		e.reactLocked(w, out, start, now)
	}
	e.inflight--
	e.releaseSlotLocked(w)
	e.mu.Unlock()
	w.set(WorkerIdle)
}

// reactLocked answers what one call's outcome says of the target: the shared holds, the
// quota, the accepted-rate measure and the congestion signals. It requires that e.mu is held.
func (e *Engine) reactLocked(w *worker, out Outcome, start, now time.Time) {
	a := &e.adapt
	wasProbe := w.probe
	if w.probe {
		w.probe, a.probing = false, false
		a.probeNext = now.Add(holdProbeSpacing)
		if out.Verdict == OK && now.Before(e.holdUntil) {
			e.holdUntil = now // the target took a call: the hold is over
			e.endHoldLocked(now)
			e.broadcastLocked()
		} else {
			e.broadcastLocked() // the next test call may start after the spacing
		}
	}
	if a.on && out.Verdict == OK {
		lat := now.Sub(start)
		if a.latency == 0 {
			a.latency = lat
		} else {
			a.latency += (lat - a.latency) / 16
		}
	}
	spent := false
	if q := out.Quota; q != nil {
		e.quota = QuotaState{Quota: *q, At: now, ResetAt: now.Add(q.Reset)}
		if a.on && q.Reset > 0 && q.Remaining >= 0 && !out.LocalRetryAfter {
			spent = e.trackQuotaLocked(*q, w.startSeq, start, now)
		} else if q.Remaining <= 0 && q.Reset > 0 && !out.LocalRetryAfter {
			e.holdLocked(now.Add(q.Reset), now, HoldSpread(q.Reset)) // nobody calls until it is renewed
			spent = true
		}
	}
	if out.LocalRetryAfter {
		return
	}
	timed := out.RetryAfter > 0 && (out.Status == 429 || out.Status == 503)
	if timed && out.Status == 429 && !spent { // a 503's Retry-After is for its item only
		d := min(out.RetryAfter, e.cfg.MaxBackoff)
		spread := HoldSpread(d)
		if a.on {
			spread = 0 // the effective rate spreads the pool's return
		}
		e.holdLocked(now.Add(d), now, spread)
	}
	if !a.on || out.Status != 429 && !timed || spent || wasProbe {
		return
	}
	if timed {
		e.cutRateLocked(w.inflight, start, now)
	} else {
		// The count at the call's start can be far under the target's: calls started at
		// once (the pool's first moment, the end of a hold) reach it in another order than
		// they started. A refusal comes back at once, so the calls out now (this one aside)
		// are what the target counted.
		e.cutParLocked(max(w.inflight, e.inflight-1), start, now)
	}
}

// cutRateLocked answers a signal of a target that counts calls over time. It requires that
// e.mu is held.
func (e *Engine) cutRateLocked(inflight int, start, now time.Time) {
	a := &e.adapt
	if start.Before(a.rateCut) {
		return // the call left before the last cut: the same moment
	}
	since := e.started
	if !a.rateCut.IsZero() {
		since = later(since, a.rateCut)
	}
	long, covLong := a.flow(now, since, acceptWindow)
	short, covShort := a.flow(now, since, steadyWindow)
	old := e.rateCapLocked()
	var to, top float64
	var why string
	k := rateK
	measured := false // the cut came with a measure (or an estimate) of the limit: the climb has a plateau
	rough := false    // …an estimate
	switch {
	case old > 0 && short >= 0.85*old && covLong >= acceptMin && covShort >= steadyWindow/2 && math.Abs(short-long) <= 0.15*long:
		// A steady flow that the rate paced, up to the refusal: it measures the limit. (A
		// flow that parallelism shaped comes in bursts, which a small bucket refuses below
		// its rate: it measures less.)
		// Starts over a window count the limit's tokens plus what the bucket held at the
		// window's start (its burst at most): a longer steady window measures closer.
		plateau, converge := plateauShare, convergeShare
		if longer, cov := a.flow(now, since, longerWindow); cov >= longerMin && math.Abs(longer-long) <= 0.03*long {
			long = longer
			plateau = preciseShare // the measure is closer: so is the plateau
		}
		w := min(long, old)
		// A refusal past the plateau that measures what the last one did: the limit has not
		// moved. The pool comes back from the hold at the plateau (a deeper cut would only
		// give away calls), and the next look past it waits longer: each look costs a hold.
		confirmed := !a.rateCurve.blind && !a.rateCurve.rough && !a.rateCut.IsZero() &&
			w > a.rateCurve.top*1.005 && math.Abs(w-a.limit) <= 0.03*a.limit
		// CUBIC's fast convergence: pushed back at or under the last plateau, the limit is
		// lower than it was thought; the new plateau goes a little further down.
		if e.cfg.Hold == HoldProbe {
			// A probe ends a hold in a fraction of a second: looking past the limit is
			// cheap, so the plateau sits at it and the climb comes back sooner.
			plateau, converge, k = 1, 0.99, probeK
		}
		switch {
		case a.rateCurve.blind:
			// Measured at the end of a blind climb, which began at the end of a hold: the
			// window holds the calls of the burst the bucket saved up during the hold, above
			// its rate; the plateau keeps a margin for them.
			top = w * plateau * convergeShare
		case w <= a.rateCurve.top*1.005:
			top = w * converge
		default:
			top = w * plateau
		}
		to = w * measuredBeta
		if confirmed && e.cfg.Hold == HoldStrict {
			to, k = top, rateKConfirmed
		}
		measured = true
		a.limit = long
		why = "target accepted " + FormatComputedRate(long)
	case covShort >= steadyWindow/2 && short > 0:
		// A flow that parallelism shaped, or that had just changed: what the calls in flight
		// carry (Little's law) was too much, or the newest flow was.
		w := short
		if covLong >= acceptMin && long > 0 && long < short {
			// A rising flow passed the limit a while before the refusal (a bucket's burst
			// hid it): the limit lies between the longer measure and the newest one.
			w = (long + short) / 2
		}
		if a.latency > 0 {
			w = max(w, 0.8*float64(inflight)/a.latency.Seconds())
		}
		if old > 0 {
			w = min(w, old)
		}
		top, to = w*plateauShare, w*semiBeta
		if !a.rateCurve.blind && !a.rateCut.IsZero() && w <= a.rateCurve.top*1.005 {
			top = w * convergeShare * plateauShare // refused under the last plateau: lower
		}
		// The estimate is rough: the climb comes back to it soon, so that the next refusal
		// comes from a steady flow near it and measures the limit.
		k, measured, rough = semiK, true, true
		a.limit = short
		why = "target refused " + FormatComputedRate(short)
	default:
		base := old
		if f, cov := a.flow(now, e.started, acceptWindow); cov > 0 && (base <= 0 || f < base) {
			base = f
		}
		beta := blindBeta
		if !a.rateCut.IsZero() && now.Sub(a.rateCut) < blindRepeat {
			// Refused again before anything could be measured: the last cut did not reach
			// under the limit, which may have fallen far (a target that halved its quota).
			beta = 0.5
		}
		top, to = base, base*beta
		why = "blind"
	}
	blind := !measured
	if to <= 0 {
		return
	}
	if old > 0 {
		to = min(to, old)
	}
	a.signals++
	a.rateCut = now
	a.rateCurve = cubic{at: now, w0: to, top: max(top, to), k: k, blind: blind, rough: rough}
	from := e.rateCapLocked()
	a.rate = to
	a.rateLogged = to
	e.applyRateLocked(now)
	e.logLocked("adapt", "effective rate", FormatComputedRate(from), FormatComputedRate(to)+" ("+why+")")
}

// cutParLocked answers a 429 without Retry-After: a target that counts calls in flight.
// It requires that e.mu is held.
func (e *Engine) cutParLocked(inflight int, start, now time.Time) {
	a := &e.adapt
	if start.Before(a.parCut) {
		return
	}
	top := max(1, inflight-1)
	to := max(1, top-max(1, int(math.Round(float64(top)*(1-parBeta)))))
	from := e.parCapLocked()
	if to >= from {
		a.parCut = now // already at or under it: nothing to lower
		return
	}
	a.signals++
	a.conc = inflight
	a.parCut = now
	a.parCurve = cubic{at: now, w0: float64(to), top: float64(top), k: parK}
	a.par, a.parLogged = to, to
	e.logLocked("adapt", "effective parallelism", strconv.Itoa(from), fmt.Sprintf("%d (429 at %d in flight)", to, inflight))
	e.broadcastLocked()
}

// trackQuotaLocked folds one answer's quota into the estimate; it reports whether the quota
// is spent (and then holds every worker until its reset). It requires that e.mu is held.
func (e *Engine) trackQuotaLocked(q Quota, seq int64, start, now time.Time) bool {
	t := &e.adapt.quota
	// The answer tells what was left when its call arrived; every call started after it
	// has taken one more since.
	left := q.Remaining - (t.startSeq - seq)
	// A Reset of whole seconds rounded up puts the reset in (start+R-1s, start+R].
	lo, hi := start.Add(q.Reset-time.Second), start.Add(q.Reset)
	switch {
	case !t.valid || !now.Before(t.hi) || !lo.Before(t.hi) && hi.After(t.hi):
		// a new window (or the first)
		t.valid, t.lo, t.hi, t.left = true, lo, hi, left
	case !hi.After(t.lo):
		return false // an answer from before the last reset
	default:
		t.lo, t.hi = later(t.lo, lo), earlier(t.hi, hi)
		t.left = min(t.left, left)
	}
	t.limit = q.Limit
	if t.left <= 0 {
		e.holdLocked(t.hi, now, 0)
		return true
	}
	return false
}

// holdLocked makes every worker wait until until (each with its own delay of up to spread
// past it). It requires that e.mu is held.
func (e *Engine) holdLocked(until, now time.Time, spread time.Duration) {
	if !until.After(e.holdUntil) {
		return
	}
	if e.holdUntil.Before(now) {
		e.holdStart = now
	}
	e.holdUntil = until
	e.holdSeq++
	e.holdSpread = spread
	a := &e.adapt
	a.holds[a.holdsN%len(a.holds)] = span{e.holdStart, until}
	a.holdsN++
	e.broadcastLocked()
	e.bus.publish(Event{Kind: HoldStart, At: now, Until: until, Message: fmt.Sprintf("server asked for %v of quiet", until.Sub(now).Round(time.Millisecond))})
}

// endHoldLocked shortens the newest hold's record to now. It requires that e.mu is held.
func (e *Engine) endHoldLocked(now time.Time) {
	a := &e.adapt
	if a.holdsN > 0 {
		a.holds[(a.holdsN-1)%len(a.holds)].to = now
	}
}

// adaptLoop moves the effective values along their climbs until the run's work is over.
func (e *Engine) adaptLoop(done <-chan struct{}) {
	for {
		t := e.clock.NewTimer(adaptTick)
		select {
		case <-done:
			t.Stop()
			return
		case <-t.C():
		}
		e.mu.Lock()
		e.climbLocked(e.clock.Now())
		e.mu.Unlock()
	}
}

// climbLocked moves the effective rate and parallelism along their climbs. It requires that
// e.mu is held.
func (e *Engine) climbLocked(now time.Time) {
	a := &e.adapt
	if e.state != Running || now.Before(e.holdUntil) {
		if a.rate > 0 {
			a.rateCurve.at = a.rateCurve.at.Add(adaptTick) // the clock of the climb stops
		}
		if a.par > 0 {
			a.parCurve.at = a.parCurve.at.Add(adaptTick)
		}
		return
	}
	if a.rate > 0 {
		flow, covered := a.flow(now, now.Add(-time.Second), time.Second)
		if covered > 0 && flow < 0.9*a.rate && now.Sub(a.rateCut) > time.Second {
			a.rateCurve.at = a.rateCurve.at.Add(adaptTick) // the rate does not bind
		} else {
			v := a.rateCurve.value(now)
			ceiling := e.settings.Rate
			switch {
			case ceiling > 0 && v >= ceiling:
				a.rate = 0
				e.applyRateLocked(now)
				e.logLocked("adapt", "effective rate", FormatComputedRate(a.rateLogged), "ceiling "+FormatRate(ceiling))
			case math.Abs(v-a.rate) > 0.002*a.rate:
				a.rate = v
				e.applyRateLocked(now)
				if v >= a.rateLogged*1.1 {
					e.logLocked("adapt", "effective rate", FormatComputedRate(a.rateLogged), FormatComputedRate(v))
					a.rateLogged = v
				}
			}
		}
	}
	if a.par > 0 {
		if e.inflight < a.par {
			a.parCurve.at = a.parCurve.at.Add(adaptTick) // parallelism does not bind
		} else if v := int(math.Floor(a.parCurve.value(now))); v != a.par && v >= 1 {
			if v >= e.settings.Parallelism {
				a.par = 0
				e.logLocked("adapt", "effective parallelism", strconv.Itoa(a.parLogged), "ceiling "+strconv.Itoa(e.settings.Parallelism))
			} else {
				if v > a.par {
					e.broadcastLocked() // a slot opened
				}
				a.par = v
				if v >= a.parLogged+max(1, a.parLogged/10) {
					e.logLocked("adapt", "effective parallelism", strconv.Itoa(a.parLogged), strconv.Itoa(v))
					a.parLogged = v
				}
			}
		}
	}
}

// effectiveLocked returns the response's state for a snapshot. It requires that e.mu is held.
func (e *Engine) effectiveLocked() Effective {
	a := &e.adapt
	ef := Effective{Rate: a.rate, Parallelism: a.par, Limit: a.limit, Concurrency: a.conc, Signals: a.signals, QuotaLeft: -1}
	if a.quota.valid && e.clock.Now().Before(a.quota.hi) {
		ef.QuotaLeft = max(a.quota.left, 0)
	}
	return ef
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
