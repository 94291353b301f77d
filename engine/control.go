package engine

import (
	"strconv"
	"time"
)

// Controls is a running job's control surface as its observers see it: a snapshot to read,
// knobs to turn, each change with its origin. [*Engine] implements it; so does a job seen
// through its control socket. Screens and the socket take it, not the Engine.
type Controls interface {
	Snapshot() Snapshot
	SetParallelism(n int, origin string) error
	SetPace(d time.Duration, origin string) error
	SetRate(perSecond float64, burst int, origin string) error
	Pause(origin string)
	Resume(origin string)
	Drain(origin string)
	Stop(origin string)
}

var _ Controls = (*Engine)(nil)

// maxChanges is how many change-log entries the engine keeps; older ones are dropped.
const maxChanges = 200

// SetParallelism changes max_parallelism at once. Raising starts new calls immediately;
// lowering starts no call while the new limit or more are in flight, and cancels nothing.
func (e *Engine) SetParallelism(n int, origin string) error {
	e.mu.Lock()
	s := e.settings
	s.Parallelism = n
	if err := s.check(e.maxWhy); err != nil {
		e.mu.Unlock()
		return err
	}
	old := e.settings.Parallelism
	e.settings.Parallelism = n
	if e.adapt.par >= n {
		e.adapt.par = 0 // the new ceiling is under the effective parallelism: it applies
	}
	e.logLocked(origin, "parallelism", strconv.Itoa(old), strconv.Itoa(n))
	started := !e.started.IsZero()
	if started {
		e.spawnLocked()
	}
	e.mu.Unlock()
	if started && n > old { // before Run, Run checks
		e.checkOpenFiles(n)
	}
	if started && n != old {
		e.resize()
	}
	return nil
}

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

// SetPace changes each worker's minimum interval between call starts; it applies to waits
// already under way.
func (e *Engine) SetPace(d time.Duration, origin string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.settings
	s.Pace = d
	if err := s.check(e.maxWhy); err != nil {
		return err
	}
	old := e.settings.Pace
	e.settings.Pace = d
	e.logLocked(origin, "pace", old.String(), d.String())
	return nil
}

// SetRate changes the global rate cap (calls per second, 0 for none) and its burst; a raised
// rate takes effect at once, also for the call already waiting for a token.
func (e *Engine) SetRate(perSecond float64, burst int, origin string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.settings
	s.Rate, s.Burst = perSecond, burst
	if err := s.check(e.maxWhy); err != nil {
		return err
	}
	old := e.settings
	e.settings.Rate, e.settings.Burst = perSecond, burst
	now := e.clock.Now()
	if perSecond > 0 && e.adapt.rate >= perSecond {
		e.adapt.rate = 0 // the new ceiling is under the effective rate: it applies
	}
	e.applyRateLocked(now)
	e.limiter.SetBurstAt(now, burst)
	if old.Rate != perSecond {
		e.logLocked(origin, "rate", FormatRate(old.Rate), FormatRate(perSecond))
	}
	if old.Burst != burst {
		e.logLocked(origin, "burst", strconv.Itoa(old.Burst), strconv.Itoa(burst))
	}
	if old.Rate == perSecond && old.Burst == burst {
		e.broadcastLocked()
	}
	return nil
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
