package engine

import (
	"container/heap"
	"errors"
	"fmt"
	"time"
)

// blocker is what keeps a worker from starting a call now.
type blocker uint8

const (
	unblocked blocker = iota
	blockEnded
	blockRetired
	blockPaused
	blockHeld
	blockPacing
)

// blockedLocked says what, if anything, keeps w from starting a call at now, and until when
// (zero when only a change of settings can lift it). It requires that e.mu is held.
func (e *Engine) blockedLocked(w *worker, now time.Time) (blocker, time.Time) {
	switch {
	case e.state >= Draining:
		return blockEnded, time.Time{}
	case w.id >= e.settings.Parallelism:
		return blockRetired, time.Time{}
	case e.state == Paused:
		return blockPaused, time.Time{}
	}
	if !e.holdUntil.IsZero() {
		if w.holdSeq != e.holdSeq {
			w.holdSeq = e.holdSeq
			w.holdDelay = time.Duration(e.cfg.Jitter() * float64(e.holdSpread))
		}
		if until := e.holdUntil.Add(w.holdDelay); now.Before(until) {
			// --hold probe: one call at a time may test the water, one spacing after the last.
			switch a := &e.adapt; {
			case e.cfg.Hold != HoldProbe || !now.Before(e.holdUntil) || a.probing:
				return blockHeld, until
			case now.Before(a.probeNext):
				return blockHeld, earlier(until, a.probeNext)
			}
		}
	}
	if e.settings.Pace > 0 && !w.lastStart.IsZero() {
		if until := w.lastStart.Add(e.settings.Pace); now.Before(until) {
			return blockPacing, until
		}
	}
	return unblocked, time.Time{}
}

// admit waits until w may start a call of the given cost, then counts the call in flight. In
// order: not paused, not held by a Retry-After, its pace since its last start, a parallelism
// slot, a rate token. Any change of settings re-runs the whole check, so a raised rate or
// limit takes effect at once and a lowered one is never overrun: a call starts only while
// fewer than the limit are in flight. It returns errRetired when w is above a lowered limit
// and errDispatch when the run drains or stops.
func (e *Engine) admit(w *worker, cost int) error {
	for {
		e.mu.Lock()
		now := e.clock.Now()
		if w.hasSlot && e.admitted > e.parCapLocked() {
			e.releaseSlotLocked(w)
		}
		b, until := e.blockedLocked(w, now)
		if b != unblocked {
			if w.hasSlot {
				e.releaseSlotLocked(w)
			}
			changed := e.changed
			e.mu.Unlock()
			switch b {
			case blockEnded:
				return errDispatch
			case blockRetired:
				return errRetired
			case blockPacing:
				w.set(WorkerPacing)
			default:
				w.set(WorkerHeld)
			}
			e.sleep(until.Sub(now), changed)
			continue
		}
		if !w.hasSlot {
			if e.admitted >= e.parCapLocked() {
				e.slotWaiters++
				freed, changed := e.slotFreed, e.changed
				e.mu.Unlock()
				w.set(WorkerIdle)
				select {
				case <-freed:
				case <-changed:
				}
				e.mu.Lock()
				e.slotWaiters--
				e.mu.Unlock()
				continue
			}
			e.admitted++
			w.hasSlot = true
		}
		if e.rateCapLocked() <= 0 {
			e.startLocked(w, now)
			e.mu.Unlock()
			return nil
		}
		changed := e.changed
		e.mu.Unlock()

		if err := e.takeToken(w, cost, changed); errors.Is(err, errChanged) {
			continue
		} else if err != nil {
			e.mu.Lock()
			e.releaseSlotLocked(w)
			e.mu.Unlock()
			return err
		}
		// The token is ours; start unless a change arrived meanwhile.
		e.mu.Lock()
		now = e.clock.Now()
		if b, _ := e.blockedLocked(w, now); b == unblocked && e.admitted <= e.parCapLocked() {
			e.startLocked(w, now)
			e.mu.Unlock()
			return nil
		}
		e.mu.Unlock()
	}
}

// takeToken waits in the rate line for cost tokens. Only the worker at the head of the line
// holds a reservation, so a change of rate re-times the one wait that matters (rate.Limiter
// does not wake waiters on SetLimit): on any change it gives the reservation back and returns
// errChanged, and admit re-checks everything.
func (e *Engine) takeToken(w *worker, cost int, changed <-chan struct{}) error {
	w.set(WorkerRateWait)
	select {
	case e.line <- struct{}{}:
	case <-changed:
		return errChanged
	}
	defer func() { <-e.line }()
	now := e.clock.Now()
	r := e.limiter.ReserveN(now, cost)
	if !r.OK() {
		return errCost{cost: cost, burst: e.limiter.Burst()}
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	t := e.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-changed:
		r.CancelAt(e.clock.Now())
		return errChanged
	}
}

// sleep waits for d (forever when d ≤ 0) or until changed is closed.
func (e *Engine) sleep(d time.Duration, changed <-chan struct{}) {
	if d <= 0 {
		<-changed
		return
	}
	t := e.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
	case <-changed:
	}
}

// startLocked counts w's call in flight. It requires that e.mu is held.
func (e *Engine) startLocked(w *worker, now time.Time) {
	e.inflight++
	w.lastStart, w.inflight = now, e.inflight
	if now.Before(e.holdUntil) { // only a --hold probe call starts during a hold
		w.probe, e.adapt.probing = true, true
	}
	e.noteStartLocked(w, now)
	w.set(WorkerCalling)
}

// release ends w's call: its slot frees for the next.
func (e *Engine) release(w *worker) {
	e.mu.Lock()
	e.inflight--
	e.releaseSlotLocked(w)
	e.mu.Unlock()
	w.set(WorkerIdle)
}

// releaseSlotLocked requires that e.mu is held.
func (e *Engine) releaseSlotLocked(w *worker) {
	if !w.hasSlot {
		return
	}
	w.hasSlot = false
	e.admitted--
	if e.slotWaiters > 0 {
		close(e.slotFreed)
		e.slotFreed = make(chan struct{})
	}
}

// broadcastLocked wakes every goroutine waiting on a change. It requires that e.mu is held.
func (e *Engine) broadcastLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// errChanged says settings changed during a wait; the caller re-checks from the top.
var errChanged = errors.New("engine: settings changed")

// errCost says a call costs more tokens than the bucket can ever hold.
type errCost struct{ cost, burst int }

func (e errCost) Error() string {
	return fmt.Sprintf("engine: call costs %d tokens, more than the burst %d", e.cost, e.burst)
}

// retryHeap orders tasks waiting for a retry by the time they become due.
type retryHeap []*task

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].readyAt.Before(h[j].readyAt) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*task)) }
func (h *retryHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

func (h *retryHeap) push(t *task) { heap.Push(h, t) }

func (h *retryHeap) popDue(now time.Time) *task {
	if len(*h) == 0 || (*h)[0].readyAt.After(now) {
		return nil
	}
	return heap.Pop(h).(*task)
}

func (h retryHeap) nextDue() time.Time {
	if len(h) == 0 {
		return time.Time{}
	}
	return h[0].readyAt
}

func (h *retryHeap) drainAll() []*task {
	all := *h
	*h = nil
	return all
}

// items counts the items waiting in the heap.
func (h retryHeap) items() int {
	n := 0
	for _, t := range h {
		n += len(t.items)
	}
	return n
}
