package engine

import "time"

// Snapshot is the state of a run at one instant, cheap enough to take several times a second.
type Snapshot struct {
	At      time.Time
	Started time.Time
	// Ended is when Run returned (every row written); zero while it runs.
	Ended time.Time
	State State
	// Settings are the knobs as set; with the congestion response on they are ceilings, and
	// Effective says what the run holds itself to under them.
	Settings  Settings
	Effective Effective
	// Total is the number of input items, -1 when unknown.
	Total int64
	// Read counts items taken from the input so far.
	Read int64
	// OK and Failed count rows written; Done = OK + Failed. Lost counts finished items whose
	// row could not be written.
	OK, Failed, Lost int64
	// Calls counts calls made (a batch is one call); Retries counts retries scheduled.
	Calls, Retries int64
	// TooMany counts 429 answers; Errors counts other failed calls (errors and non-OK answers).
	TooMany, Errors int64
	// InFlight is calls in progress: started at their target, not those admitted by the engine
	// that still wait for a shared limit or a host's turn (WorkerWaiting). Workers holds each
	// slot's state, for slots below the limit and for slots above it still finishing a call.
	InFlight int
	Workers  []WorkerState
	// ByState counts Workers by state.
	ByState [numWorkerStates]int
	// WaitingFor counts the WorkerWaiting workers by what they wait for ("limit tmdb", "host
	// api.example.com"); nil when none waits.
	WaitingFor map[string]int
	// BackingOff is the number of items waiting out a backoff before their next attempt.
	BackingOff int
	// HoldUntil is when a server's Retry-After hold ends; zero or past when none.
	HoldUntil time.Time
	// Paused is how long the run has been paused so far, the current pause included.
	Paused time.Duration
	// Changes is the newest part of the change log, newest last.
	Changes []Change
	// Warnings are the run's warnings so far.
	Warnings []string
	// Quota is the latest quota the target reported (rate-limit headers); At is zero when it
	// never did.
	Quota QuotaState
}

// QuotaState is a reported quota and when it was reported.
type QuotaState struct {
	Quota
	At      time.Time // when the answer that said it came
	ResetAt time.Time // At + Reset
}

// Waiting returns what most waiting workers wait for and how many wait for it ("", 0 when
// none waits); ties go to the first name in order, so that a screen does not flicker.
func (s Snapshot) Waiting() (what string, n int) {
	for k, c := range s.WaitingFor {
		if c > n || (c == n && k < what) {
			what, n = k, c
		}
	}
	return what, n
}

// Done returns the number of rows written.
func (s Snapshot) Done() int64 { return s.OK + s.Failed }

// ETA extrapolates the run's average time per row, over the time it was not paused, to the
// rows still to come; ok is false when there is nothing to extrapolate (no total, no row yet,
// or the run is over). It stands still while the run is paused: no time passes for it then.
func (s Snapshot) ETA() (time.Duration, bool) {
	done, active := s.Done(), s.At.Sub(s.Started)-s.Paused
	if s.Total <= 0 || done == 0 || done >= s.Total || active <= 0 || !s.Ended.IsZero() {
		return 0, false
	}
	return active / time.Duration(done) * time.Duration(s.Total-done), true
}

// Summary is the run's outcome as this snapshot tells it; once Ended is set it is the
// [Summary] Run returned, number for number (Run builds its summary with it).
func (s Snapshot) Summary() Summary {
	sum := Summary{State: Done, Total: s.Total, OK: s.OK, Failed: s.Failed, Lost: s.Lost,
		NotStarted: s.Read - s.OK - s.Failed - s.Lost, Calls: s.Calls, Retries: s.Retries, TooMany: s.TooMany,
		Warnings: s.Warnings}
	if s.State == Draining || s.State == Stopping {
		sum.State = s.State
	}
	end := s.Ended
	if end.IsZero() {
		end = s.At
	}
	if !s.Started.IsZero() {
		sum.Elapsed = end.Sub(s.Started)
	}
	return sum
}

// NotRun counts the items that have no row because the run was interrupted before their turn:
// those never read as well as those read and not started, when the total is known.
func (s Summary) NotRun() int64 {
	rows := s.OK + s.Failed
	if s.NotStarted > 0 || (s.Interrupted() && s.Total > rows+s.Lost) {
		if s.Total >= 0 {
			return s.Total - rows - s.Lost
		}
		return s.NotStarted
	}
	return 0
}

// Snapshot returns the run's state now.
func (e *Engine) Snapshot() Snapshot {
	e.mu.Lock()
	s := Snapshot{
		At: e.clock.Now(), Started: e.started, Ended: e.ended, State: e.state, Settings: e.settings,
		Total: e.cfg.Total, InFlight: e.inflight, BackingOff: e.retries.items(), HoldUntil: e.holdUntil,
		Warnings: append([]string(nil), e.warnings...), Quota: e.quota, Effective: e.effectiveLocked(),
		Paused: e.pausedFor,
	}
	if e.state == Paused {
		s.Paused += s.At.Sub(e.pausedAt)
	}
	from := max(0, len(e.changes)-20)
	s.Changes = append([]Change(nil), e.changes[from:]...)
	n := 0
	for i, w := range e.workers {
		if i < e.settings.Parallelism || w.running {
			n = i + 1
		}
	}
	workers := e.workers[:n]
	e.mu.Unlock()

	s.Workers = make([]WorkerState, len(workers))
	for i, w := range workers {
		st := WorkerState(w.state.Load())
		if i >= s.Settings.Parallelism && st != WorkerCalling && st != WorkerWaiting {
			st = WorkerOff
		}
		s.Workers[i] = st
		s.ByState[st]++
		if st == WorkerWaiting {
			if s.WaitingFor == nil {
				s.WaitingFor = map[string]int{}
			}
			if what := w.waitFor.Load(); what != nil {
				s.WaitingFor[*what]++
			}
		}
	}
	// A call waiting in its adapter for its turn is not in flight at its target. (The two
	// counts are read a moment apart: never below zero.)
	s.InFlight = max(0, s.InFlight-s.ByState[WorkerWaiting])
	s.Read = e.read.Load()
	s.OK, s.Failed, s.Lost = e.okRows.Load(), e.failRows.Load(), e.lost.Load()
	s.Calls, s.Retries = e.calls.Load(), e.retried.Load()
	s.TooMany, s.Errors = e.tooMany.Load(), e.errored.Load()
	return s
}
