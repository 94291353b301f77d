// Package engine runs a job: it streams items from a [Source] through an [Adapter] under live
// limits (a resizable parallelism cap, per-worker pacing, a global rate cap, a shared
// Retry-After hold), retries what the target asks to retry, and writes exactly one result row
// per item it attempted. It has no terminal code: observers read [Engine.Snapshot] and
// subscribe to events, and can never slow calls down.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Config is what a run needs. Zero values of the optional fields pick the defaults shown.
type Config struct {
	Settings
	// Retries is how many times a retryable outcome is retried (so attempts ≤ Retries+1).
	Retries int
	// MaxBackoff caps one backoff wait, a server's Retry-After included (default 60s).
	MaxBackoff time.Duration
	// Timeout bounds each call; 0 means none.
	Timeout time.Duration
	// Chunk is how many items a worker takes at once (default 1). An adapter that implements
	// [Batcher] gets the whole chunk in one call.
	Chunk int
	// Adapter makes the calls.
	Adapter Adapter
	// Source yields the items.
	Source Source
	// Total is the number of items the Source holds, or -1 when unknown (stdin).
	Total int64
	// Results receives one JSON line per finished item. If it is a regular file (or has a
	// Sync method) it is synced when the run ends and, with SyncEvery, periodically.
	Results io.Writer
	// SyncEvery bounds how long written rows may wait for an fsync; 0 syncs only at the end.
	SyncEvery time.Duration
	// Clock defaults to [WallClock].
	Clock Clock
	// Jitter returns a uniform random number in [0, 1); workers call it at once, so it must be
	// safe for concurrent use. It defaults to math/rand/v2's.
	Jitter func() float64
	// Origin names who set the starting settings in the change log (default "cli").
	Origin string
	// Started, when set, is what the change log's first entry says the run started with, in
	// place of this engine's settings: a host's share of a job across hosts starts with the
	// job's settings, some of which (the rate) a gate keeps rather than this engine.
	Started string
	// Adapt turns on the congestion response: under the settings (then ceilings) the engine
	// keeps an effective rate and parallelism that fall when the target pushes back (429s,
	// a spent quota, 503 with Retry-After) and climb back. Off, the settings hold as given.
	Adapt bool
	// Hold says how a shared Retry-After hold ends (default [HoldStrict]).
	Hold HoldMode
	// Redact, when set, scrubs every text the engine takes in from the adapter (an outcome's
	// message, output and extra strings, a call's error) and every warning, before any row,
	// event, snapshot or summary holds it: the one intake point, so that whatever observes the
	// run sees scrubbed text. The CLI fills it with the run's secrets; nil keeps text as it is.
	Redact func(string) string
}

// Engine runs one job. Its control methods and [Engine.Snapshot] are safe for concurrent use
// from any goroutine while [Engine.Run] runs.
type Engine struct {
	cfg     Config
	clock   Clock
	adapter Adapter
	batcher Batcher
	coster  Coster
	limiter *rate.Limiter
	line    chan struct{} // the rate line: one worker at a time waits for tokens
	bus     bus
	writer  *rowWriter
	input   chan Item
	ahead   *byteBudget // the item text in input: reserved by readInput, given back by the worker that takes it
	wg      sync.WaitGroup

	callCtx    context.Context
	cancelCall context.CancelFunc

	resizeMu sync.Mutex // orders the calls of a Resizer adapter's Resize

	maxWhy string // how the default ceiling on parallelism was derived; "" when the operator set it

	mu          sync.Mutex // guards everything below
	settings    Settings
	state       State
	started     time.Time
	ended       time.Time
	changed     chan struct{} // closed and replaced on every change of settings or state
	slotFreed   chan struct{} // closed and replaced when a slot frees while someone waits
	drained     chan struct{} // closed once the run drains or stops
	slotWaiters int
	quota       QuotaState // the latest quota a target reported
	admitted    int        // workers holding a slot (about to call or calling)
	inflight    int        // calls in progress
	workers     []*worker
	retries     retryHeap
	inputDone   bool
	finished    bool
	holdUntil   time.Time
	holdSeq     int
	holdSpread  time.Duration
	holdStart   time.Time     // when the current (or last) hold began
	pausedAt    time.Time     // when the current pause began
	pausedFor   time.Duration // the run's time paused, the current pause aside
	adapt       adaptState
	changes     []Change
	warnings    []string
	err         error // first fatal error (results not writable, input unreadable)

	read     atomic.Int64 // items taken from the Source (and not given back at a drain)
	emitted  atomic.Int64 // items whose row was handed to the writer
	okRows   atomic.Int64
	failRows atomic.Int64
	calls    atomic.Int64
	retried  atomic.Int64
	tooMany  atomic.Int64
	errored  atomic.Int64
	lost     atomic.Int64
}

// Coster is an optional interface of adapters whose calls cost more than one rate token (an
// LLM call costs its tokens). Cost must be at most the burst.
type Coster interface {
	Cost(items []Item) int
}

// New checks cfg and returns an Engine ready to [Engine.Run].
func New(cfg Config) (*Engine, error) {
	if cfg.Burst == 0 {
		cfg.Burst = 1
	}
	var maxWhy string
	cfg.Settings, maxWhy = cfg.Settings.WithCeiling()
	if err := cfg.Settings.check(maxWhy); err != nil {
		return nil, err
	}
	switch {
	case cfg.Adapter == nil:
		return nil, errors.New("engine: no adapter")
	case cfg.Source == nil:
		return nil, errors.New("engine: no source")
	case cfg.Results == nil:
		return nil, errors.New("engine: no results writer")
	case cfg.Retries < 0:
		return nil, fmt.Errorf("engine: retries %d: must not be negative", cfg.Retries)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("engine: timeout %v: must not be negative", cfg.Timeout)
	case cfg.Chunk < 0:
		return nil, fmt.Errorf("engine: chunk %d: must be at least 1", cfg.Chunk)
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 60 * time.Second
	}
	if cfg.Chunk == 0 {
		cfg.Chunk = 1
	}
	if cfg.Clock == nil {
		cfg.Clock = WallClock{}
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	if cfg.Origin == "" {
		cfg.Origin = "cli"
	}
	e := &Engine{
		cfg:       cfg,
		clock:     cfg.Clock,
		adapter:   cfg.Adapter,
		line:      make(chan struct{}, 1),
		input:     make(chan Item, 1024),
		ahead:     newByteBudget(aheadBytes),
		settings:  cfg.Settings,
		maxWhy:    maxWhy,
		changed:   make(chan struct{}),
		slotFreed: make(chan struct{}),
		drained:   make(chan struct{}),
	}
	e.adapt.on = cfg.Adapt
	e.batcher, _ = cfg.Adapter.(Batcher)
	e.coster, _ = cfg.Adapter.(Coster)
	e.limiter = rate.NewLimiter(limitOf(cfg.Rate), cfg.Burst)
	e.callCtx, e.cancelCall = context.WithCancel(context.Background())
	e.writer = newRowWriter(cfg.Results, cfg.SyncEvery, cfg.Clock.Now, e.rowsWritten, e.rowsLost)
	return e, nil
}

func limitOf(perSecond float64) rate.Limit {
	if perSecond <= 0 {
		return rate.Inf
	}
	return rate.Limit(perSecond)
}

// Summary is the outcome of a run.
type Summary struct {
	State      State // Done, unless it was interrupted: then Draining or Stopping
	Total      int64 // items in the input, -1 if unknown
	OK         int64 // ok rows written
	Failed     int64 // failed rows written
	NotStarted int64 // items read but never attempted because the run was interrupted
	Lost       int64 // rows that could not be written
	Calls      int64
	Retries    int64
	TooMany    int64 // 429 answers
	Elapsed    time.Duration
	Warnings   []string
}

// Ended says in one word how the run ended, as the summary, its JSON and a notification say
// it: "done" (every item had its turn), "drained" (stopped taking new items, those in flight
// finished) or "stopped".
func (s Summary) Ended() string {
	switch s.State {
	case Draining:
		return "drained"
	case Stopping:
		return "stopped"
	}
	return "done"
}

// Interrupted reports whether the run was drained or stopped before its input ended.
func (s Summary) Interrupted() bool { return s.State == Draining || s.State == Stopping }

// Run runs the job to its end: every item read has been attempted and its row written, or the
// run was drained or stopped. Cancelling ctx stops the run as [Engine.Stop] does. The error
// is the first fatal one (results not writable, input unreadable); failed items are not
// errors, they are rows.
func (e *Engine) Run(ctx context.Context) (Summary, error) {
	e.mu.Lock()
	if !e.started.IsZero() {
		e.mu.Unlock()
		return Summary{}, errors.New("engine: Run called twice")
	}
	e.started = e.clock.Now()
	started := e.cfg.Started
	if started == "" {
		started = fmt.Sprintf("parallelism %d, pace %v, rate %s, burst %d",
			e.settings.Parallelism, e.settings.Pace, FormatRate(e.settings.Rate), e.settings.Burst)
	}
	e.logLocked(e.cfg.Origin, "start", "", started)
	stopped := ctx.Err() != nil
	if stopped && e.state < Stopping {
		e.setStateLocked(Stopping, "context")
	}
	e.spawnLocked()
	parallelism := e.settings.Parallelism
	e.mu.Unlock()
	if stopped {
		e.cancelCall()
	}
	e.checkOpenFiles(parallelism)
	e.resize()

	go e.readInput()
	go e.writer.run()
	adaptDone := make(chan struct{})
	if e.cfg.Adapt {
		go e.adaptLoop(adaptDone)
	}
	stopWatch := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			e.Stop("context")
		case <-stopWatch:
		}
	}()

	e.wg.Wait()
	close(stopWatch)
	close(adaptDone)

	e.mu.Lock()
	leftover := e.retries.drainAll()
	e.mu.Unlock()
	for _, t := range leftover {
		for _, r := range t.last {
			r.Error += " (not retried: run " + e.State().String() + ")"
			e.emit(r)
		}
	}
	close(e.writer.in)
	<-e.writer.done
	e.cancelCall()

	e.mu.Lock()
	if e.state != Draining && e.state != Stopping {
		e.setStateLocked(Done, "engine")
	}
	e.ended = e.clock.Now()
	err := e.err
	e.mu.Unlock()
	// The summary is the final snapshot's: whatever shows the run's end from a snapshot (the
	// screen, an attached screen) shows these numbers.
	return e.Snapshot().Summary(), err
}

// readInput feeds the input channel; it is the only reader of the Source. It holds less than
// aheadBytes of item text ahead of the workers, plus one item (and at most the channel's
// 1,024 items): it reads the next item only while what it holds is under aheadBytes.
func (e *Engine) readInput() {
	defer close(e.input)
	for {
		// Room first, then read: the item in hand counts as ahead too.
		if !e.ahead.wait(e.drained) {
			return
		}
		it, err := e.cfg.Source.Next()
		if errors.Is(err, io.EOF) {
			if w, ok := e.cfg.Source.(EndWarner); ok {
				if msg := w.EndWarning(); msg != "" {
					e.warn(msg)
				}
			}
			return
		}
		if err != nil {
			e.fail(err)
			return
		}
		e.read.Add(1)
		n := itemBytes(it)
		e.ahead.add(n)
		select {
		case e.input <- it:
		case <-e.drained:
			e.ahead.give(n)
			e.read.Add(-1)
			return
		}
	}
}

// fail records a fatal error and drains the run: nothing new starts.
func (e *Engine) fail(err error) {
	e.mu.Lock()
	if e.err == nil {
		e.err = err
	}
	e.mu.Unlock()
	e.Drain("engine")
}

func (e *Engine) rowsWritten(ok, failed int64) {
	e.okRows.Add(ok)
	e.failRows.Add(failed)
}

func (e *Engine) rowsLost(err error, n int) {
	e.lost.Add(int64(n))
	if err != nil {
		e.fail(fmt.Errorf("engine: writing results: %w", err))
	}
}

// emit encodes a finished item's row and hands it to the writer.
func (e *Engine) emit(r *Result) {
	defer e.emitted.Add(1)
	line := AppendRow(make([]byte, 0, 256+len(r.Item.Line)+len(r.Output)), r)
	e.writer.pending.take(int64(len(line)), nil)
	e.writer.in <- pendingRow{line: line, ok: r.OK, index: r.Item.Index}
}
