package engine

import "time"

// Controls is a running job's control surface as its observers see it: a snapshot to read,
// knobs to turn, each change with its origin. [*Engine] implements it; so does a job seen
// through its control socket, and a cluster's job. Screens and the socket take it, not the
// Engine. Set is the one way a knob changes: one [Update], checked, applied and logged as one
// change.
type Controls interface {
	Snapshot() Snapshot
	Set(u Update, origin string) error
	Pause(origin string)
	Resume(origin string)
	Drain(origin string)
	Stop(origin string)
}

var _ Controls = (*Engine)(nil)

// maxChanges is how many change-log entries the engine keeps; older ones are dropped.
const maxChanges = 200

// Set applies u as one change, with its origin: the knobs it turns take their new values
// together, or, when the settings they give are out of range ([Settings.Validate], the
// ceiling a [*CeilingError]) or turn a knob fixed for the run, nothing changes. The change is
// one entry of the change log ("rate 50/s → 100/s, burst 1 → 5"), naming the knobs whose
// value changed; a change that changes no value logs nothing.
//
// Raising parallelism starts new calls immediately; lowering it starts no call while the new
// limit or more are in flight, and cancels nothing. A new pace applies to waits already under
// way; a raised rate takes effect at once, also for the call already waiting for a token.
func (e *Engine) Set(u Update, origin string) error {
	return e.apply(u, func(parts []Change) bool {
		if len(parts) == 0 {
			return false
		}
		c := Combine(parts...)
		e.logLocked(origin, c.Knob, c.From, c.To)
		return true
	})
}

// Follow applies u, this engine's part of a change made elsewhere (a shared job's settings,
// turned on any of its hosts), as [Engine.Set] does, and logs c, the change as it was made,
// in its place: the log then says what the operator turned and where ("rate unlimited →
// 50/s (web-2/4121/ctl)"), also for a knob this engine does not apply (the job's rate, which
// a gate keeps) or a value it takes only a part of (its share of the job's parallelism).
func (e *Engine) Follow(u Update, c Change) error {
	return e.apply(u, func([]Change) bool {
		if c.Knob == "" {
			return false
		}
		e.logLocked(c.Origin, c.Knob, c.From, c.To)
		return true
	})
}

// apply is Set's work; log, called with e.mu held, logs the knobs whose value changed and
// says whether it logged (a log entry tells the snapshot's waiters; else apply does).
func (e *Engine) apply(u Update, log func(parts []Change) bool) error {
	e.mu.Lock()
	old := e.settings
	next, err := u.next(old, e.maxWhy)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	e.settings = next
	if u.Turns(KnobParallelism) && e.adapt.par >= next.Parallelism {
		e.adapt.par = 0 // the new ceiling is under the effective parallelism: it applies
	}
	if u.Turns(KnobRate) || u.Turns(KnobBurst) {
		now := e.clock.Now()
		if next.Rate > 0 && e.adapt.rate >= next.Rate {
			e.adapt.rate = 0 // the new ceiling is under the effective rate: it applies
		}
		e.applyRateLocked(now)
		e.limiter.SetBurstAt(now, next.Burst)
	}
	var parts []Change
	for _, k := range u.Knobs() {
		if !knobSpecs[k].same(old, next) {
			parts = append(parts, Change{Knob: k.String(), From: k.Format(old), To: k.Format(next)})
		}
	}
	if !log(parts) {
		e.broadcastLocked()
	}
	started := !e.started.IsZero()
	if started && u.Turns(KnobParallelism) {
		e.spawnLocked()
	}
	e.mu.Unlock()
	if started && next.Parallelism > old.Parallelism { // before Run, Run checks
		e.checkOpenFiles(next.Parallelism)
	}
	if started && next.Parallelism != old.Parallelism {
		e.resize()
	}
	return nil
}

// SetParallelism is Set turning parallelism alone.
func (e *Engine) SetParallelism(n int, origin string) error {
	return e.Set(Turn(KnobParallelism, Settings{Parallelism: n}), origin)
}

// SetPace is Set turning pace alone.
func (e *Engine) SetPace(d time.Duration, origin string) error {
	return e.Set(Turn(KnobPace, Settings{Pace: d}), origin)
}

// SetRate is Set turning rate and burst together, as one change.
func (e *Engine) SetRate(perSecond float64, burst int, origin string) error {
	u := Turn(KnobRate, Settings{Rate: perSecond}).Merge(Turn(KnobBurst, Settings{Burst: burst}))
	return e.Set(u, origin)
}

// Turn returns the Update that sets knob k to its value in to, and no other knob.
func Turn(k Knob, to Settings) Update { return Update{knobs: 1 << k, to: to} }

// resize tells a [Resizer] adapter the parallelism. It reads the value under resizeMu, so
// that of two changes racing, the adapter is told the later one last.
func (e *Engine) resize() {
	r, ok := e.adapter.(Resizer)
	if !ok {
		return
	}
	e.resizeMu.Lock()
	defer e.resizeMu.Unlock()
	e.mu.Lock()
	n := e.settings.Parallelism
	e.mu.Unlock()
	r.Resize(n)
}

// Pause stops new calls from starting; calls in flight finish.
func (e *Engine) Pause(origin string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == Running {
		e.setStateLocked(Paused, origin)
	}
}

// Resume lets a paused run start calls again.
func (e *Engine) Resume(origin string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == Paused {
		e.setStateLocked(Running, origin)
	}
}

// Drain ends dispatch: no new item is taken and no new call starts; calls in flight finish and
// their rows are written; items waiting for a retry get a failed row with their last answer.
func (e *Engine) Drain(origin string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state < Draining {
		e.setStateLocked(Draining, origin)
	}
}

// Stop is Drain that also cancels the calls in flight; their items get a failed row.
func (e *Engine) Stop(origin string) {
	e.mu.Lock()
	if e.state < Stopping {
		e.setStateLocked(Stopping, origin)
	}
	e.mu.Unlock()
	e.cancelCall()
}

// setStateLocked requires that e.mu is held.
func (e *Engine) setStateLocked(s State, origin string) {
	old := e.state
	e.state = s
	// The time paused is kept apart, so that the ETA stands still while nothing may start.
	if now := e.clock.Now(); s == Paused && old != Paused {
		e.pausedAt = now
	} else if old == Paused && s != Paused {
		e.pausedFor += now.Sub(e.pausedAt)
	}
	if s >= Draining && old < Draining {
		close(e.drained)
	}
	e.logLocked(origin, "state", old.String(), s.String())
}

// logLocked appends to the change log, wakes every waiter and tells observers. It requires
// that e.mu is held.
func (e *Engine) logLocked(origin, knob, from, to string) {
	c := Change{At: e.clock.Now(), Origin: origin, Knob: knob, From: from, To: to}
	e.changes = append(e.changes, c)
	if len(e.changes) > maxChanges {
		e.changes = append(e.changes[:0], e.changes[len(e.changes)-maxChanges:]...)
	}
	e.broadcastLocked()
	e.bus.publish(Event{Kind: ControlChange, At: c.At, Change: c})
}

// Note adds a remark to the change log, e.g. the auto-tuner saying it pauses for the operator.
func (e *Engine) Note(origin, text string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logLocked(origin, "note", "", text)
}

// warn records a warning for the summary and tells observers.
func (e *Engine) warn(msg string) {
	msg = e.redact(msg)
	e.mu.Lock()
	e.warnings = append(e.warnings, msg)
	e.mu.Unlock()
	e.bus.publish(Event{Kind: Warning, At: e.clock.Now(), Message: msg})
}

// Subscribe returns a [Subscription] to the run's events of the given kinds (all kinds when
// none is given) with room for buffer events; when it is full, further events are dropped and
// counted. Subscribe before Run to see every event. Events nobody asked for are never built,
// so an observer that needs only call ends should say so.
func (e *Engine) Subscribe(buffer int, kinds ...EventKind) *Subscription {
	return e.bus.subscribe(buffer, kinds)
}

// State returns the run's state.
func (e *Engine) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

// Settings returns the live settings.
func (e *Engine) Settings() Settings {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.settings
}

// Changes returns the change log, oldest first.
func (e *Engine) Changes() []Change {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Change(nil), e.changes...)
}
