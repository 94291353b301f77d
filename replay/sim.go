package replay

// What-if's model engine: the fitted target as an engine adapter answering in virtual time,
// the input of a simulated run, and the real engine run against them (with the auto-tuner
// when the run had it). Product code of its own, so that Predict needs no test kit.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// response is the congestion response a simulated run has, as the recorded run had it.
type response struct {
	adapt bool
	hold  engine.HoldMode
}

// simulate runs n items through the real engine against the model, in virtual time.
// It returns the run's outcome and the most calls it had in flight.
func simulate(ctx context.Context, m *Model, set engine.Settings, auto bool, resp response, n int64, retries int, maxBackoff, timeout time.Duration, start time.Time) (Outcome, int, error) {
	clock := NewVirtualClock(start)
	// One seeded source for the repeatable prediction, locked: workers draw their jitter at once.
	rng := rand.New(rand.NewPCG(1, 2))
	var rngMu sync.Mutex
	jitter := func() float64 {
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.Float64()
	}
	tgt := m.target(clock, timeout, 3)
	e, err := engine.New(engine.Config{
		Settings: set, Retries: retries, MaxBackoff: maxBackoff,
		Adapter: tgt, Source: &numbered{n: n}, Total: n,
		Results: io.Discard, Clock: clock, Jitter: jitter, Adapt: resp.adapt, Hold: resp.hold,
	})
	if err != nil {
		return Outcome{}, 0, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	stopAuto := func() {}
	if auto {
		stopAuto = startVirtualTuner(runCtx, e, clock)
	}
	var sum engine.Summary
	var runErr error
	go func() {
		defer close(done)
		sum, runErr = e.Run(runCtx)
		stopAuto()
	}()
	if err := clock.Run(done); err != nil {
		cancel()
		<-done
		return Outcome{}, 0, err
	}
	if runErr != nil {
		return Outcome{}, 0, runErr
	}
	return Outcome{Elapsed: sum.Elapsed, Calls: sum.Calls, TooMany: sum.TooMany, OK: sum.OK, Failed: sum.Failed, Retries: sum.Retries}, tgt.peak, nil
}

// startVirtualTuner runs the auto-tuner on the virtual clock: it observes the engine's calls
// and steps every AutoWindow of virtual time. The returned function stops it.
func startVirtualTuner(ctx context.Context, e *engine.Engine, clock *VirtualClock) func() {
	mon := probes.NewMonitor(probes.AdvisorConfig{}, true)
	// A virtual run waits for its observers (the clock moves only when they are idle), so the
	// buffer only has to hold what one step of the clock ends.
	sub := e.Subscribe(1<<16, engine.CallEnd)
	tuner := mon.Tuner(e)
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		probes.Feed(sub, stop, mon.Observe)
	}()
	tctx, cancel := context.WithCancel(ctx)
	stepped := make(chan struct{})
	go func() {
		defer close(stepped)
		for clock.Sleep(tctx, probes.AutoWindow) == nil {
			tuner.Step(clock.Now())
		}
	}()
	return func() {
		cancel()
		<-stepped
		close(stop)
		<-fed
		sub.Close()
	}
}

// target is the model answering calls in virtual time: an engine adapter.
type target struct {
	m       *Model
	clock   *VirtualClock
	timeout time.Duration

	mu       sync.Mutex
	rng      *rand.Rand
	lim      *rate.Limiter
	inflight int // calls inside Do, rejected ones included: what the engine sees
	busy     int // admitted calls being served: what a concurrency limit counts
	peak     int // the most calls in flight
}

func (m *Model) target(clock *VirtualClock, timeout time.Duration, seed uint64) *target {
	t := &target{m: m, clock: clock, timeout: timeout, rng: rand.New(rand.NewPCG(seed, 0x7768617469660a))}
	if m.Rate > 0 {
		t.lim = rate.NewLimiter(rate.Limit(m.Rate), max(m.Burst, 1))
		t.lim.AllowN(clock.Now(), 0) // start the bucket full at the run's start
	}
	return t
}

// Do answers one call as the fitted target would.
func (t *target) Do(ctx context.Context, _ engine.Item) (engine.Outcome, error) {
	now := t.clock.Now()
	t.mu.Lock()
	t.inflight++
	n := t.inflight
	t.peak = max(t.peak, n)
	var tooMany bool
	var retryAfter time.Duration
	switch {
	case t.m.Concurrency > 0 && t.busy >= t.m.Concurrency:
		tooMany = true
	case t.lim != nil:
		if r := t.lim.ReserveN(now, 1); r.DelayFrom(now) > 0 {
			r.CancelAt(now)
			tooMany = true
			retryAfter = t.m.RetryAfter
			if retryAfter == 0 {
				retryAfter = max(time.Millisecond, r.DelayFrom(now))
			}
		}
	}
	if !tooMany {
		t.busy++
	}
	lat := t.m.TooManyLatency
	if !tooMany {
		lat = t.m.latencyAt(n, t.rng)
	}
	roll := t.rng.Float64()
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.inflight--
		if !tooMany {
			t.busy--
		}
		t.mu.Unlock()
	}()

	timedOut := t.timeout > 0 && lat > t.timeout
	if timedOut {
		lat = t.timeout
	}
	if err := t.clock.Sleep(ctx, lat); err != nil {
		return engine.Outcome{}, err
	}
	switch {
	case timedOut:
		return engine.Outcome{}, context.DeadlineExceeded
	case tooMany:
		return engine.Outcome{Verdict: engine.Retry, Status: 429, RetryAfter: retryAfter, Message: "HTTP 429"}, nil
	case roll < t.m.RetryShare:
		if t.m.ErrStatus == 0 {
			return engine.Outcome{}, errors.New("connection error")
		}
		return engine.Outcome{Verdict: engine.Retry, Status: t.m.ErrStatus, Message: fmt.Sprintf("HTTP %d", t.m.ErrStatus)}, nil
	case roll < t.m.RetryShare+t.m.FailShare:
		return engine.Outcome{Verdict: engine.Fail, Status: 400, Message: "HTTP 400"}, nil
	}
	return engine.Outcome{Verdict: engine.OK, Status: 200}, nil
}

// numbered is the input of a simulated run: n items, "item-0" to "item-(n-1)", made as they
// are asked for. The model answers every item alike, so their text does not matter; made on
// demand, an input of any length costs no memory.
type numbered struct{ n, next int64 }

// Next returns the next item, or io.EOF after the last.
func (s *numbered) Next() (engine.Item, error) {
	if s.next >= s.n {
		return engine.Item{}, io.EOF
	}
	it := engine.Item{Index: s.next, Line: "item-" + strconv.FormatInt(s.next, 10)}
	s.next++
	return it, nil
}
