package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// WorkerState is what one worker slot is doing now.
type WorkerState uint32

const (
	// WorkerIdle: waiting for work (or for a free slot after the limit was lowered).
	WorkerIdle WorkerState = iota
	// WorkerPacing: waiting out its pace since its previous call started.
	WorkerPacing
	// WorkerRateWait: waiting for a token of the rate cap.
	WorkerRateWait
	// WorkerHeld: held by a pause or by a server's Retry-After.
	WorkerHeld
	// WorkerCalling: a call is in flight.
	WorkerCalling
	// WorkerOff: the slot is above the parallelism limit.
	WorkerOff
	numWorkerStates
)

// String returns the state's name.
func (s WorkerState) String() string {
	return [...]string{"idle", "pacing", "rate-wait", "held", "calling", "off"}[s]
}

// worker is one slot of the parallelism limit, run by one goroutine while it is below the limit.
type worker struct {
	id    int
	ctx   context.Context // the run's call context, naming this worker (WorkerOf)
	state atomic.Uint32
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
			e.workers = append(e.workers, &worker{id: id, ctx: context.WithValue(e.callCtx, workerKey{}, id)})
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

// runTask makes the calls of one task: one call for a batching adapter, else one per item.
func (e *Engine) runTask(w *worker, t *task) {
	if e.batcher != nil {
		e.callBatch(w, t)
		return
	}
	for i, it := range t.items {
		if it.Invalid != "" {
			e.emit(&Result{Item: it, Error: it.Invalid, At: e.clock.Now()})
			continue
		}
		cost := 1
		if e.coster != nil {
			cost = e.coster.Cost(t.items[i : i+1])
		}
		if err := e.admit(w, cost); err != nil {
			if ec, ok := errors.AsType[errCost](err); ok {
				e.emit(&Result{Item: it, Attempts: t.attempts, Error: ec.Error(), At: e.clock.Now()})
				continue
			}
			e.giveBack(t, i, err)
			return
		}
		e.callOne(w, t, i)
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

// callOne makes one attempt at item i of t and settles it: a row, or a retry later.
func (e *Engine) callOne(w *worker, t *task, i int) {
	it := t.items[i]
	start, inflight := w.lastStart, w.inflight // set by admit on this goroutine
	attempt := t.attempts + 1
	e.publishStart(w, it.Index, 1, attempt, inflight, start)

	out, err := e.do(w, func(ctx context.Context) (Outcome, error) { return e.adapter.Do(ctx, it) })
	end := e.clock.Now()
	if d, ok := IsLater(err); ok {
		e.release(w)
		var last []*Result
		if t.last != nil {
			last = []*Result{t.last[i]}
		}
		e.scheduleRetry(&task{items: []Item{it}, attempts: t.attempts, readyAt: end.Add(d), last: last})
		return
	}
	e.calls.Add(1)
	e.endCall(w, []Outcome{out}, err, start, end)

	res := e.settle(it, out, err, attempt, end.Sub(start), end)
	msg := res.Error // before finish adds "after N attempts": one error group per cause
	var last *Result
	if t.last != nil {
		last = t.last[i]
	}
	wait, retry := e.finish(res, out, attempt, last)
	e.publishEnd(w, it.Index, 1, attempt, inflight, res, msg, out, err, end, !retry)
	if retry {
		e.scheduleRetry(&task{items: []Item{it}, attempts: attempt, readyAt: end.Add(wait), last: []*Result{res.Result}})
	}
}

// callBatch makes one call for the whole task through the adapter's batch method.
func (e *Engine) callBatch(w *worker, t *task) {
	valid := t.items[:0:0]
	var lasts []*Result
	for i, it := range t.items {
		if it.Invalid != "" {
			e.emit(&Result{Item: it, Error: it.Invalid, At: e.clock.Now()})
			continue
		}
		valid = append(valid, it)
		if t.last != nil {
			lasts = append(lasts, t.last[i])
		}
	}
	if len(valid) == 0 {
		return
	}
	cost := 1
	if e.coster != nil {
		cost = e.coster.Cost(valid)
	}
	if err := e.admit(w, cost); err != nil {
		if ec, ok := errors.AsType[errCost](err); ok {
			for _, it := range valid {
				e.emit(&Result{Item: it, Attempts: t.attempts, Error: ec.Error(), At: e.clock.Now()})
			}
			return
		}
		e.giveBack(&task{items: valid, attempts: t.attempts, last: lastsOrNil(lasts, t.last)}, 0, err)
		return
	}
	start, inflight := w.lastStart, w.inflight // set by admit on this goroutine
	attempt := t.attempts + 1
	e.publishStart(w, valid[0].Index, len(valid), attempt, inflight, start)
	var outs []Outcome
	_, err := e.do(w, func(ctx context.Context) (Outcome, error) {
		var err error
		outs, err = e.batcher.DoBatch(ctx, valid)
		return Outcome{}, err
	})
	end := e.clock.Now()
	if d, ok := IsLater(err); ok {
		e.release(w)
		e.scheduleRetry(&task{items: valid, attempts: t.attempts, readyAt: end.Add(d), last: lastsOrNil(lasts, t.last)})
		return
	}
	e.calls.Add(1)
	if err == nil && len(outs) != len(valid) {
		err = Permanent(fmt.Errorf("engine: adapter answered %d outcomes for a batch of %d items", len(outs), len(valid)))
	}
	if err != nil {
		outs = nil
	}
	e.endCall(w, outs, err, start, end)
	// The items to retry go back as one batch, so that a failed batch is retried as a batch.
	again := &task{attempts: attempt}
	var longest time.Duration
	for i, it := range valid {
		var out Outcome
		if err == nil {
			out = outs[i]
		}
		res := e.settle(it, out, err, attempt, end.Sub(start), end)
		msg := res.Error
		var last *Result
		if lasts != nil {
			last = lasts[i]
		}
		wait, retry := e.finish(res, out, attempt, last)
		if i == 0 {
			e.publishEnd(w, it.Index, len(valid), attempt, inflight, res, msg, out, err, end, !retry)
		}
		if retry {
			again.items = append(again.items, it)
			again.last = append(again.last, res.Result)
			longest = max(longest, wait)
		}
	}
	if len(again.items) > 0 {
		again.readyAt = end.Add(longest)
		e.scheduleRetry(again)
	}
}

func lastsOrNil(lasts, had []*Result) []*Result {
	if had == nil {
		return nil
	}
	return lasts
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

// settle turns an adapter's answer into the item's result and says whether it may be retried.
type settled struct {
	*Result
	retry    bool
	noAnswer bool
}

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
		Latency: s.Latency, Status: out.Status, Verdict: OK, Err: err != nil, RetryAfter: out.RetryAfter, Final: final}
	switch {
	case s.OK:
	case s.retry:
		ev.Verdict, ev.Message = Retry, msg
	default:
		ev.Verdict, ev.Message = Fail, msg
	}
	e.bus.publish(ev)
}
