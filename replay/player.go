package replay

import (
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
	"github.com/throttle-dev/throttle/record"
)

// MaxSpeed is how fast the speed [Max] plays: an hour of run in 3.6 s. Jumping straight to
// the end would show nothing but the final screen; at this pace the charts still move.
const MaxSpeed = 1000

// ErrReadOnly is the answer to a knob turned during a replay: a recording is what happened,
// and another setting can only be predicted.
var ErrReadOnly = errors.New("replay: the knobs are read-only — ask throttle replay --what-if")

// Player plays a recording back for the screen of a live run: it is the screen's engine and
// its statistics ([engine.Controls] and what a [*probes.Monitor] answers) at a position in
// the recorded run. The position moves with the wall clock times the speed, computed when
// read, so a Player has no goroutine of its own. It is safe for concurrent use.
type Player struct {
	rec     *record.Recording
	started time.Time
	length  time.Duration
	now     func() time.Time

	// byWorker holds, per worker slot, the indexes into rec.Calls of the slot's calls ordered
	// by start: a slot makes one call at a time, so finding what it does at a position is a
	// binary search, whatever the length of the recording.
	byWorker [][]int32
	// holds are the Retry-After holds by start; holdUntil[i] is the latest end of holds[:i+1]
	// (a later hold may end before an earlier one).
	holds     []record.Hold
	holdUntil []time.Duration
	// jumps are the offsets of logged changes of a knob or of the state; bursts those of the
	// seconds in which 429s began again after at least a second without.
	jumps, bursts []time.Duration

	mu     sync.Mutex
	base   time.Duration // the position at the wall time since
	since  time.Time
	speed  float64 // as chosen: Max is kept as Max
	paused bool
	// mon is fed the calls that ended up to monAt, rec.Calls[:fed]; a move back builds it
	// again, since its windows cannot forget.
	mon   *probes.Monitor
	fed   int
	monAt time.Duration
}

var _ engine.Controls = (*Player)(nil)

// NewPlayer returns a player at the start of rec, playing at 1x. now is the wall clock
// (time.Now when nil); tests move it by hand.
func NewPlayer(rec *record.Recording, now func() time.Time) *Player {
	if now == nil {
		now = time.Now
	}
	p := &Player{rec: rec, started: rec.Header.Started, length: replayLength(rec), now: now, speed: 1}
	p.index()
	p.mon = probes.NewMonitor(probes.AdvisorConfig{}, false)
	p.since = now() // after indexing, which takes a moment on a long recording
	return p
}

// replayLength is where a replay ends: the run's elapsed time, or the last call or change
// when later. Offsets count from the recording's start, a moment before the engine's, from
// which the run's own elapsed time counts; its last change (the state "done") falls after it.
func replayLength(rec *record.Recording) time.Duration {
	length := rec.Elapsed()
	if n := len(rec.Calls); n > 0 {
		length = max(length, rec.Calls[n-1].End())
	}
	for _, c := range rec.Changes {
		length = max(length, c.At)
	}
	return length
}

// index builds what the player searches.
func (p *Player) index() {
	rec := p.rec
	for i, c := range rec.Calls {
		w := int(c.Worker)
		if w < 0 {
			continue
		}
		for len(p.byWorker) <= w {
			p.byWorker = append(p.byWorker, nil)
		}
		p.byWorker[w] = append(p.byWorker[w], int32(i))
	}
	for _, idx := range p.byWorker {
		slices.SortStableFunc(idx, func(a, b int32) int { return int(rec.Calls[a].Start - rec.Calls[b].Start) })
	}

	p.holds = slices.Clone(rec.Holds)
	slices.SortStableFunc(p.holds, func(a, b record.Hold) int { return int(a.At - b.At) })
	p.holdUntil = make([]time.Duration, len(p.holds))
	var until time.Duration
	for i, h := range p.holds {
		until = max(until, h.Until)
		p.holdUntil[i] = until
	}

	for _, c := range rec.Changes {
		// The start is where a replay begins, and notes change nothing.
		if c.Knob != "start" && c.Knob != "note" {
			p.jumps = append(p.jumps, c.At)
		}
	}

	var perSecond []int
	for _, c := range rec.Calls {
		if c.Class != probes.ClassTooMany {
			continue
		}
		s := int(max(c.End(), 0) / time.Second)
		for len(perSecond) <= s {
			perSecond = append(perSecond, 0)
		}
		perSecond[s]++
	}
	for s, n := range perSecond {
		if n > 0 && (s == 0 || perSecond[s-1] == 0) {
			p.bursts = append(p.bursts, time.Duration(s)*time.Second)
		}
	}
}

// Length is how long the recorded run lasted: where the position ends.
func (p *Player) Length() time.Duration { return p.length }

// Position is the offset into the recorded run being shown.
func (p *Player) Position() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.posLocked()
}

// Speed is the replay speed as chosen: 1, 10, 100, … or [Max].
func (p *Player) Speed() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.speed
}

// Paused says whether the position stands still.
func (p *Player) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// TogglePause stops the position or sets it moving again.
func (p *Player) TogglePause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rebaseLocked(p.posLocked())
	p.paused = !p.paused
}

// SetSpeed plays on at x times the recorded pace; [Max] (or any x ≤ 0) plays at [MaxSpeed].
func (p *Player) SetSpeed(x float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rebaseLocked(p.posLocked())
	p.speed = max(x, Max)
}

// Seek moves the position by delta, within the run, and returns the new position.
func (p *Player) Seek(delta time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rebaseLocked(p.posLocked() + delta)
	return p.base
}

// NextChange moves to the next logged change of a knob or of the run's state after the
// position; it reports false, and stays, when there is none.
func (p *Player) NextChange() bool { return p.jumpTo(p.jumps) }

// NextBurst moves to the start of the next second after the position in which 429s began
// again after at least a second without; it reports false, and stays, when there is none.
func (p *Player) NextBurst() bool { return p.jumpTo(p.bursts) }

// jumpTo moves to the first of offsets (ascending) after the position.
func (p *Player) jumpTo(offsets []time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pos := p.posLocked()
	i := sort.Search(len(offsets), func(i int) bool { return offsets[i] > pos })
	if i == len(offsets) || offsets[i] > p.length {
		return false
	}
	p.rebaseLocked(offsets[i])
	return true
}

// posLocked is the position now. It requires p.mu.
func (p *Player) posLocked() time.Duration {
	pos := p.base
	if !p.paused {
		speed := p.speed
		if speed <= Max {
			speed = MaxSpeed
		}
		pos += time.Duration(float64(p.now().Sub(p.since)) * speed)
	}
	return min(max(pos, 0), p.length)
}

// rebaseLocked makes pos, clamped to the run, the position as of now: every change of speed,
// pause or position starts counting afresh from there. It requires p.mu.
func (p *Player) rebaseLocked(pos time.Duration) {
	p.base, p.since = min(max(pos, 0), p.length), p.now()
}

// Snapshot is the recorded run at the position, as the live screen read it: the settings and
// the congestion response's effective values, state, counters, workers, hold, changes and
// warnings of that instant.
func (p *Player) Snapshot() engine.Snapshot {
	p.mu.Lock()
	pos := p.posLocked()
	p.mu.Unlock()
	return p.snapshotAt(pos)
}

// snapshotAt builds the snapshot at pos from the recording, which never changes.
func (p *Player) snapshotAt(pos time.Duration) engine.Snapshot {
	rec := p.rec
	ended := rec.End != nil && pos >= p.length
	s := engine.Snapshot{Started: p.started, At: p.started.Add(pos), Total: rec.Header.Total, State: engine.Running}
	s.Settings, s.Effective = rec.LimitsAt(pos)
	upTo := func(n int, at func(int) time.Duration) int {
		if ended { // the run's last records come just after its end
			return n
		}
		return sort.Search(n, func(i int) bool { return at(i) > pos })
	}

	// Counters are sampled once a second: the last sample taken by then.
	if i := upTo(len(rec.Snapshots), func(i int) time.Duration { return rec.Snapshots[i].At }); i > 0 {
		sn := rec.Snapshots[i-1]
		s.Read, s.OK, s.Failed, s.Calls, s.Retries = sn.Read, sn.OK, sn.Failed, sn.Calls, sn.Retries
		s.TooMany, s.Errors, s.BackingOff = sn.TooMany, sn.Errors, sn.BackingOff
	}

	n := upTo(len(rec.Changes), func(i int) time.Duration { return rec.Changes[i].At })
	for i := n - 1; i >= 0; i-- {
		if c := rec.Changes[i]; c.Knob == "state" {
			s.State = stateNamed(c.To)
			break
		}
	}
	for _, c := range rec.Changes[max(0, n-20):n] { // as many as the engine's snapshot keeps
		s.Changes = append(s.Changes, engine.Change{At: p.started.Add(c.At), Origin: c.Origin, Knob: c.Knob, From: c.From, To: c.To})
	}
	for _, w := range rec.Warnings[:upTo(len(rec.Warnings), func(i int) time.Duration { return rec.Warnings[i].At })] {
		s.Warnings = append(s.Warnings, w.Message)
	}
	if i := sort.Search(len(p.holds), func(i int) bool { return p.holds[i].At > pos }); i > 0 {
		s.HoldUntil = p.started.Add(p.holdUntil[i-1])
	}
	if ended {
		s.Ended = p.started.Add(p.length)
		s.State = stateNamed(rec.End.State)
	}
	p.workers(&s, pos)
	return s
}

// workers fills the worker slots: calling while a recorded call of the slot spans pos, else
// held, pacing or idle as the engine would have shown it. Calls in flight are counted from the
// same calls, so the count and the strip agree at every instant (the per-second samples hold
// an in-flight count too, but only of their own instant).
func (p *Player) workers(s *engine.Snapshot, pos time.Duration) {
	limit := s.Settings.Parallelism
	held := s.State == engine.Paused || s.HoldUntil.After(s.At)
	states := make([]engine.WorkerState, max(limit, len(p.byWorker)))
	last := limit
	for w := range states {
		var calling, pacing bool
		if w < len(p.byWorker) && s.Ended.IsZero() {
			idx := p.byWorker[w]
			if k := sort.Search(len(idx), func(i int) bool { return p.rec.Calls[idx[i]].Start > pos }); k > 0 {
				c := p.rec.Calls[idx[k-1]]
				calling = pos < c.End()
				pacing = s.Settings.Pace > 0 && pos < c.Start+s.Settings.Pace
			}
		}
		st := engine.WorkerIdle
		switch {
		case calling:
			st = engine.WorkerCalling
			s.InFlight++
			last = max(last, w+1)
		case w >= limit: // above a lowered limit, its call done
			st = engine.WorkerOff
		case held:
			st = engine.WorkerHeld
		case pacing:
			st = engine.WorkerPacing
		}
		states[w] = st
	}
	s.Workers = states[:last]
	for _, st := range s.Workers {
		s.ByState[st]++
	}
}

// feedLocked feeds the monitor every call that ended by the position, building it again when
// the position moved back, and returns the position as a time of the recorded run. It
// requires p.mu.
func (p *Player) feedLocked() time.Time {
	pos := p.posLocked()
	if pos < p.monAt {
		p.mon, p.fed = probes.NewMonitor(probes.AdvisorConfig{}, false), 0
	}
	calls := p.rec.Calls
	for p.fed < len(calls) && calls[p.fed].End() <= pos {
		p.mon.Observe(calls[p.fed].Event(p.started))
		p.fed++
	}
	p.monAt = pos
	return p.started.Add(pos)
}

// Points are the per-second points of the recorded run up to the position; now is ignored:
// the position is the replay's now. So for Latency and Advice.
func (p *Player) Points(_ time.Time, span time.Duration) []probes.Point {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mon.Points(p.feedLocked(), span)
}

// Latency is the latency of the last complete 5 s window before the position.
func (p *Player) Latency(time.Time) probes.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mon.Latency(p.feedLocked())
}

// Errors are the failures up to the position, grouped by message, the most recent first.
func (p *Player) Errors(n int) []probes.ErrorGroup {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.feedLocked()
	return p.mon.Errors(n)
}

// Advice is what the advisor would have said at the position, for the settings set and the
// congestion response's values eff.
func (p *Player) Advice(_ time.Time, set engine.Settings, eff engine.Effective) probes.Advice {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mon.Advice(p.feedLocked(), set, eff)
}

// Set refuses: the knobs of a recording are read-only.
func (p *Player) Set(engine.Update, string) error { return ErrReadOnly }

// Pause does nothing: a recorded run cannot be paused (TogglePause pauses the replay).
func (p *Player) Pause(string) {}

// Resume does nothing: a recorded run cannot be resumed.
func (p *Player) Resume(string) {}

// Drain does nothing: a recorded run cannot be drained.
func (p *Player) Drain(string) {}

// Stop does nothing: a recorded run cannot be stopped.
func (p *Player) Stop(string) {}
