package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// WorkerState is what one worker slot is doing now.
type WorkerState uint32

const (
	// WorkerIdle means the worker is waiting for work (or for a free slot after the limit was lowered).
	WorkerIdle WorkerState = iota
	// WorkerPacing means the worker is waiting out its pace since its previous call started.
	WorkerPacing
	// WorkerRateWait means the worker is waiting for a token of the rate cap.
	WorkerRateWait
	// WorkerHeld means the worker is held by a pause or by a server's Retry-After.
	WorkerHeld
	// WorkerCalling means the worker has a call in flight.
	WorkerCalling
	// WorkerOff means the slot is above the parallelism limit.
	WorkerOff
	// WorkerWaiting means the worker's call was admitted by the engine but waits, inside the
	// adapter, for a turn of something else — a shared limit, its host, tokens — before it
	// really starts ([WaitingFor]); [Snapshot.WaitingFor] says for what.
	WorkerWaiting
	numWorkerStates
)

// String returns the state's name.
func (s WorkerState) String() string {
	return [...]string{"idle", "pacing", "rate-wait", "held", "calling", "off", "waiting"}[s]
}

// worker is one slot of the parallelism limit, run by one goroutine while it is below the limit.
type worker struct {
	id    int
	e     *Engine
	ctx   context.Context // the run's call context, naming this worker (WorkerOf, WaitingFor)
	state atomic.Uint32
	// sendStart is when the engine admitted the call in progress, written before it calls the
	// adapter; began is 1 + the wait from then until the adapter said the call really started
	// (CallStarts), 0 when it did not say; waitFor is what it waits for (WaitingFor).
	sendStart time.Time
	began     atomic.Int64
	waitFor   atomic.Pointer[string]
	one       [1]Outcome // the outcome of a call of one item: the worker's own, read before its next call
	// Guarded by Engine.mu:
	running   bool
	hasSlot   bool
	lastStart time.Time
	inflight  int // calls in flight when its last call started, itself included
	holdSeq   int
	holdDelay time.Duration
	probe     bool  // its call tests the water during a hold (--hold probe)
	startSeq  int64 // the engine's count of call starts at its last start
}

func (w *worker) set(s WorkerState) { w.state.Store(uint32(s)) }

// task is work held by one worker: items not yet finished and the attempts made on them.
type task struct {
	items    []Item
	attempts int
	readyAt  time.Time
	last     []*Result // the last failure of each item, for rows if the run ends first
	// waited is how long this attempt already waited in the adapter (for a shared limit, a
	// host's turn) in calls that came back [Later]: part of the row's wait, never latency.
	waited time.Duration
}

var (
	errRetired  = errors.New("engine: worker above the parallelism limit")
	errDispatch = errors.New("engine: dispatch ended")
)

// spawnLocked starts a goroutine for every slot below the limit that has none.
// It requires that e.mu is held.
func (e *Engine) spawnLocked() {
	if e.finished || e.state >= Draining {
		return
	}
	for id := 0; id < e.settings.Parallelism; id++ {
		if id == len(e.workers) {
			w := &worker{id: id, e: e}
			w.ctx = context.WithValue(e.callCtx, workerKey{}, w)
			e.workers = append(e.workers, w)
		}
		w := e.workers[id]
		if w.running {
			continue
		}
		w.running = true
		e.wg.Add(1)
		go e.work(w)
	}
}

func (e *Engine) work(w *worker) {
	defer e.wg.Done()
	for {
		t := e.next(w)
		if t == nil {
			return
		}
		e.runTask(w, t)
		e.mu.Lock()
		if e.allSettledLocked() {
			e.broadcastLocked()
		}
		e.mu.Unlock()
	}
}

// next returns the worker's next task, or nil when it should exit: the run is over, draining,
// or the worker is above the limit. Due retries come before fresh input.
func (e *Engine) next(w *worker) *task {
	for {
		e.mu.Lock()
		if !e.finished && e.allSettledLocked() {
			e.finished = true
			e.broadcastLocked()
		}
		if e.state >= Draining || w.id >= e.settings.Parallelism || e.finished {
			w.running = false
			w.set(WorkerOff)
			e.mu.Unlock()
			return nil
		}
		now := e.clock.Now()
		if t := e.retries.popDue(now); t != nil {
			e.mu.Unlock()
			return t
		}
		changed, inputOpen := e.changed, !e.inputDone
		due := e.retries.nextDue()
		e.mu.Unlock()

		w.set(WorkerIdle)
		var timer Timer
		var timerC <-chan time.Time
		if !due.IsZero() {
			timer = e.clock.NewTimer(due.Sub(now))
			timerC = timer.C()
		}
		var t *task
		if inputOpen {
			select {
			case it, ok := <-e.input:
				if ok {
					e.ahead.give(itemBytes(it))
					t = &task{items: e.gather(it)}
				} else {
					e.markInputDone()
				}
			case <-changed:
			case <-timerC:
			}
		} else {
			select {
			case <-changed:
			case <-timerC:
			}
		}
		if timer != nil {
			timer.Stop()
		}
		if t != nil {
			return t
		}
	}
}

// chunkWait is how long a worker waits for more items to fill a chunk once it has one: long
// enough for a file to fill it, short enough that a trickle on stdin is not held back.
const chunkWait = 50 * time.Millisecond

// gather returns first and up to Chunk-1 more items from the input.
func (e *Engine) gather(first Item) []Item {
	items := []Item{first}
	var timer Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(items) < e.cfg.Chunk {
		select {
		case it, ok := <-e.input:
			if !ok {
				e.markInputDone()
				return items
			}
			e.ahead.give(itemBytes(it))
			items = append(items, it)
			continue
		default:
		}
		if timer == nil {
			timer = e.clock.NewTimer(chunkWait)
		}
		select {
		case it, ok := <-e.input:
			if !ok {
				e.markInputDone()
				return items
			}
			e.ahead.give(itemBytes(it))
			items = append(items, it)
		case <-timer.C():
			return items
		}
	}
	return items
}

// allSettledLocked reports whether the run's work is over: the input ended, and every item
// read has had its row emitted (none is held by a worker or waits for a retry). Counting
// items, not tasks, leaves no gap between a worker receiving an item and counting it. It
// requires that e.mu is held.
func (e *Engine) allSettledLocked() bool {
	return e.inputDone && e.retries.Len() == 0 && e.emitted.Load() == e.read.Load()
}

func (e *Engine) markInputDone() {
	e.mu.Lock()
	if !e.inputDone {
		e.inputDone = true
		e.broadcastLocked()
	}
	e.mu.Unlock()
}

// runTask makes the calls of one task: one call for the whole task with a batching adapter,
// else one call per item. Both are the same call sequence: a call of one item is a batch of one.
func (e *Engine) runTask(w *worker, t *task) {
	if e.batcher != nil {
		e.call(w, t, 0, len(t.items))
		return
	}
	for i := range t.items {
		if !e.call(w, t, i, i+1) {
			return
		}
	}
}

// giveBack returns the unstarted rest of a task when the worker cannot go on: to the queue if
// the worker was retired, as rows (or not-started counts) if dispatch ended.
func (e *Engine) giveBack(t *task, from int, err error) {
	rest := &task{items: t.items[from:], attempts: t.attempts, readyAt: e.clock.Now()}
	if t.last != nil {
		rest.last = t.last[from:]
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if errors.Is(err, errRetired) {
		e.retries.push(rest)
		e.broadcastLocked()
		return
	}
	if rest.last != nil {
		e.retries.push(rest) // written as rows when the run ends
	}
	// Items never attempted get no row; Summary.NotStarted counts them.
}

// call makes one attempt at items [from, to) of t in one call and settles them: a row each,
// or a retry later. An invalid item gets its failed row without a call. It reports false when
// the worker cannot go on (admission refused): the unstarted rest of t went back.
func (e *Engine) call(w *worker, t *task, from, to int) bool {
	items, lasts := e.callable(t, from, to)
	if len(items) == 0 {
		return true
	}
	cost := 1
	if e.coster != nil {
		cost = e.coster.Cost(items)
	}
	if err := e.admit(w, cost); err != nil {
		if ec := (errCost{}); errors.As(err, &ec) {
			for _, it := range items {
				e.emit(&Result{Item: it, Attempts: t.attempts, Error: ec.Error(), At: e.clock.Now()})
			}
			return true
		}
		// These items and the task's items after them were never started.
		rest := &task{items: append(items[:len(items):len(items)], t.items[to:]...), attempts: t.attempts}
		if t.last != nil {
			rest.last = append(lasts[:len(lasts):len(lasts)], t.last[to:]...)
		}
		e.giveBack(rest, 0, err)
		return false
	}
	start, inflight := w.lastStart, w.inflight // set by admit on this goroutine
	attempt := t.attempts + 1
	e.publishStart(w, items[0].Index, len(items), attempt, inflight, start)
	w.sendStart = start
	outs, err := e.send(w, items)
	end := e.clock.Now()
	// The call really started when the adapter said so: the time before is a wait (a shared
	// limit, a host's turn), the row's wait_ms, and latency counts from there.
	waited := w.waited()
	begun := start.Add(waited)
	if t.waited > 0 && len(t.items) == to-from { // a Later's rest: the whole task is these items
		waited += t.waited
	}
	if d, ok := IsLater(err); ok {
		e.release(w)
		// Its own copies: a waiting retry must not hold the rest of a chunk in memory.
		e.scheduleRetry(&task{items: slices.Clone(items), attempts: t.attempts, readyAt: end.Add(d), last: slices.Clone(lasts),
			waited: waited + end.Sub(begun)})
		return true
	}
	e.calls.Add(1)
	e.endCall(w, outs, err, begun, end)
	// The items to retry go back as one task, so that a failed batch is retried as a batch;
	// made at the first retry, as most calls have none.
	var again *task
	var longest time.Duration
	for i, it := range items {
		var out Outcome
		if outs != nil {
			out = outs[i]
		}
		res := e.settle(it, out, err, attempt, end.Sub(begun), end)
		res.Wait = waited
		msg := res.Error // before finish adds "after N attempts": one error group per cause
		var last *Result
		if lasts != nil {
			last = lasts[i]
		}
		wait, retry := e.finish(res, out, attempt, last)
		if i == 0 {
			e.publishEnd(w, it.Index, len(items), attempt, inflight, res, msg, out, err, end, !retry)
		}
		if retry {
			if again == nil {
				again = &task{attempts: attempt}
			}
			again.items = append(again.items, it)
			again.last = append(again.last, res.Result)
			longest = max(longest, wait)
		}
	}
	if again != nil {
		again.readyAt = end.Add(longest)
		e.scheduleRetry(again)
	}
	return true
}

// callable writes the failed rows of the invalid items among [from, to) of t and returns the
// others with their last failures (nil when t has none). When all are valid, as is usual, they
// are t's own slices: a call of one item allocates nothing for it.
func (e *Engine) callable(t *task, from, to int) (items []Item, lasts []*Result) {
	items = t.items[from:to]
	if t.last != nil {
		lasts = t.last[from:to]
	}
	for i, it := range items {
		if it.Invalid == "" {
			continue
		}
		// Copy the valid ones before it and skip the invalid ones from here.
		valid := slices.Clone(items[:i])
		var kept []*Result
		if lasts != nil {
			kept = slices.Clone(lasts[:i])
		}
		for j := i; j < len(items); j++ {
			if items[j].Invalid != "" {
				e.emit(&Result{Item: items[j], Error: items[j].Invalid, At: e.clock.Now()})
				continue
			}
			valid = append(valid, items[j])
			if lasts != nil {
				kept = append(kept, lasts[j])
			}
		}
		return valid, kept
	}
	return items, lasts
}

// send makes the one call for items: the adapter's batch method with a batching adapter, else
// its Do for the one item. A single call keeps the outcome the adapter gave with its error (the
// engine reacts to it as before); a failed batch's outcomes are dropped, and a batch answered
// with the wrong number of outcomes fails for good.
func (e *Engine) send(w *worker, items []Item) ([]Outcome, error) {
	if e.batcher == nil {
		out, err := e.do(w, func(ctx context.Context) (Outcome, error) { return e.adapter.Do(ctx, items[0]) })
		w.one[0] = out
		return w.one[:], err
	}
	var outs []Outcome
	_, err := e.do(w, func(ctx context.Context) (Outcome, error) {
		var err error
		outs, err = e.batcher.DoBatch(ctx, items)
		return Outcome{}, err
	})
	if err == nil && len(outs) != len(items) {
		err = Permanent(fmt.Errorf("engine: adapter answered %d outcomes for a batch of %d items", len(outs), len(items)))
	}
	if err != nil {
		return nil, err
	}
	return outs, nil
}

// do runs one call of w under the per-call timeout and the run's stop context.
func (e *Engine) do(w *worker, call func(context.Context) (Outcome, error)) (Outcome, error) {
	ctx := w.ctx
	if e.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.Timeout)
		defer cancel()
	}
	return call(ctx)
}

// settled is an item's result and what its answer allows: a retry, or none because there was
// no answer.
type settled struct {
	*Result
	retry    bool
	noAnswer bool
}

// settle turns an adapter's answer into the item's result and says whether it may be retried.
func (e *Engine) settle(it Item, out Outcome, err error, attempt int, latency time.Duration, end time.Time) settled {
	r := &Result{Item: it, Attempts: attempt, Latency: latency, At: end}
	out = e.redactOutcome(out)
	if err != nil {
		s := settled{Result: r, noAnswer: true}
		switch {
		case e.callCtx.Err() != nil:
			r.Error = "canceled: run stopped"
		case IsPermanent(err):
			r.Error = e.redact(err.Error())
		case errors.Is(err, context.DeadlineExceeded):
			r.Error = fmt.Sprintf("timeout after %v", e.cfg.Timeout)
			s.retry = true
		default:
			r.Error = e.redact(err.Error())
			s.retry = true
		}
		e.errored.Add(1)
		return s
	}
	r.Status, r.RetryAfter, r.Extra = out.Status, out.RetryAfter, out.Extra
	if out.Status == 429 {
		e.tooMany.Add(1)
	}
	switch out.Verdict {
	case OK:
		r.OK, r.Output = true, out.Output
		return settled{Result: r}
	case Retry:
		r.Error = out.Message
		if out.Status != 429 {
			e.errored.Add(1)
		}
		return settled{Result: r, retry: true}
	default:
		r.Error = out.Message
		e.errored.Add(1)
		return settled{Result: r}
	}
}

// redact passes t through [Config.Redact].
func (e *Engine) redact(t string) string {
	if e.cfg.Redact == nil || t == "" {
		return t
	}
	return e.cfg.Redact(t)
}

// redactOutcome returns out with its message, output and extra strings passed through
// [Config.Redact]. An output that scrubbing left invalid as JSON (a secret that was a bare
// number) is kept as a JSON string of its text.
func (e *Engine) redactOutcome(out Outcome) Outcome {
	if e.cfg.Redact == nil {
		return out
	}
	out.Message = e.redact(out.Message)
	if len(out.Output) > 0 {
		if s := e.redact(string(out.Output)); s != string(out.Output) {
			out.Output = json.RawMessage(s)
			if !json.Valid(out.Output) {
				out.Output, _ = json.Marshal(s) // a string always marshals
			}
		}
	}
	if len(out.Extra) > 0 {
		extra := make(map[string]any, len(out.Extra)) // the adapter may share its map
		for k, v := range out.Extra {
			if s, ok := v.(string); ok {
				v = e.redact(s)
			}
			extra[k] = v
		}
		out.Extra = extra
	}
	return out
}

// finish writes the item's row, or, when it may be retried, returns the wait before its next
// attempt and writes nothing: the caller schedules the retry.
func (e *Engine) finish(s settled, out Outcome, attempt int, last *Result) (wait time.Duration, retry bool) {
	if s.retry && attempt <= e.cfg.Retries && e.State() < Draining {
		e.retried.Add(1)
		return Backoff(attempt, out.RetryAfter, e.cfg.MaxBackoff, e.cfg.Jitter()), true
	}
	if !s.OK && attempt > 1 {
		s.Error = fmt.Sprintf("%s after %d attempts", s.Error, attempt)
	}
	if s.RetryAfter == 0 && last != nil {
		s.RetryAfter = last.RetryAfter
	}
	e.emit(s.Result)
	return 0, false
}

// scheduleRetry queues a task's next attempt.
func (e *Engine) scheduleRetry(t *task) {
	e.mu.Lock()
	e.retries.push(t)
	e.broadcastLocked()
	e.mu.Unlock()
}

func (e *Engine) publishStart(w *worker, index int64, items, attempt, inflight int, at time.Time) {
	if !e.bus.wanted(CallStart) {
		return
	}
	e.bus.publish(Event{Kind: CallStart, At: at, Worker: w.id, Index: index, Items: items, Attempt: attempt, InFlight: inflight})
}

// publishEnd reports a call's end; msg is its error before finish decorated it.
func (e *Engine) publishEnd(w *worker, index int64, items, attempt, inflight int, s settled, msg string, out Outcome, err error, at time.Time, final bool) {
	if !e.bus.wanted(CallEnd) {
		return
	}
	ev := Event{Kind: CallEnd, At: at, Worker: w.id, Index: index, Items: items, Attempt: attempt, InFlight: inflight,
		Latency: s.Latency, Wait: s.Wait, Status: out.Status, Verdict: OK, Err: err != nil, RetryAfter: out.RetryAfter, Final: final}
	switch {
	case s.OK:
	case s.retry:
		ev.Verdict, ev.Message = Retry, msg
	default:
		ev.Verdict, ev.Message = Fail, msg
	}
	e.bus.publish(ev)
}
