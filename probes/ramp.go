package probes

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
)

// RampConfig bounds a [Ramp]: it never runs longer, calls more, or goes wider than this.
type RampConfig struct {
	Start    int           // first parallelism (default 1)
	Max      int           // highest parallelism tried (default 256)
	Step     time.Duration // how long each parallelism is held (default 5s)
	MaxTime  time.Duration // the whole ramp (default 2m)
	MaxCalls int64         // calls in all (default 5000)
}

func (c RampConfig) withDefaults() RampConfig {
	if c.Start <= 0 {
		c.Start = 1
	}
	if c.Max <= 0 {
		c.Max = 256
	}
	if c.Step <= 0 {
		c.Step = 5 * time.Second
	}
	if c.MaxTime <= 0 {
		c.MaxTime = 2 * time.Minute
	}
	if c.MaxCalls <= 0 {
		c.MaxCalls = 5000
	}
	return c
}

// RampStep is what one parallelism gave.
type RampStep struct {
	Parallelism int
	Calls       int64
	OKPerSec    float64
	TooMany     int64
	Errors      int64
	Mean, P95   time.Duration
}

// RampResult is the ramp's finding: each step, why it stopped, the knee (the last step before
// the first sign of the limit), the capacity seen, and starting values at about half of it.
type RampResult struct {
	Steps    []RampStep
	Stop     string
	Knee     RampStep
	Capacity float64 // the most ok answers per second seen
	// Parallelism and Rate are the recommended starting values: half the capacity, and the
	// parallelism that carries it at the latency seen before any load (Little's law).
	Parallelism int
	Rate        float64
}

// Ramp finds a target's safe parallelism and rate: it doubles the parallelism of a running
// engine step by step, from cfg.Start, and stops at the first sign of the limit — 429s, more
// than 5% errors, a latency knee (p95 over twice the first step's while throughput grows less
// than a tenth), or throughput that stops growing — or at its bounds. The engine should run
// with no retries, so that the ramp never retries into a 429 storm. ws must collect windows
// of at most cfg.Step. Ramp leaves the engine running; the caller stops it.
func Ramp(ctx context.Context, e Knobs, ws *Windows, cfg RampConfig) RampResult {
	cfg = cfg.withDefaults()
	var res RampResult
	deadline := time.Now().Add(cfg.MaxTime)
	var calls int64
	var base RampStep
	p := cfg.Start
	for {
		cur := e.Snapshot().Settings
		next := cur
		next.Parallelism = p
		if err := e.Set(engine.Diff(cur, next), "probe"); err != nil {
			res.Stop = err.Error()
			break
		}
		from := time.Now()
		select {
		case <-ctx.Done():
			res.Stop = "interrupted"
			return res.finish(base)
		case <-time.After(cfg.Step):
		}
		st := stepOf(p, ws.Recent(time.Now()), from)
		calls += st.Calls
		res.Steps = append(res.Steps, st)
		res.Capacity = max(res.Capacity, st.OKPerSec)
		if len(res.Steps) == 1 {
			base = st
		}
		prev := res.Knee
		switch {
		case st.Calls == 0:
			res.Stop = fmt.Sprintf("no call ended in %s at parallelism %d", human.Span(cfg.Step), p)
		case st.TooMany > 0:
			res.Stop = fmt.Sprintf("429s at parallelism %d (%d of %s)", p, st.TooMany, human.Counted(st.Calls, "call", "calls"))
		case float64(st.Errors) > 0.05*float64(st.Calls):
			res.Stop = fmt.Sprintf("errors at parallelism %d (%d of %s)", p, st.Errors, human.Counted(st.Calls, "call", "calls"))
		case len(res.Steps) > 1 && st.P95 > 2*base.P95 && st.OKPerSec < 1.1*prev.OKPerSec:
			res.Stop = fmt.Sprintf("latency knee at parallelism %d: p95 %s against %s at first, throughput flat", p, human.Latency(st.P95), human.Latency(base.P95))
		case len(res.Steps) > 1 && st.OKPerSec < 1.1*prev.OKPerSec:
			res.Stop = fmt.Sprintf("throughput stopped growing at parallelism %d (%.0f/s against %.0f/s)", p, st.OKPerSec, prev.OKPerSec)
		}
		if res.Stop != "" {
			break
		}
		res.Knee = st
		switch {
		case p >= cfg.Max:
			res.Stop = fmt.Sprintf("reached the ceiling of parallelism %d without a sign of the limit", cfg.Max)
		case calls >= cfg.MaxCalls:
			res.Stop = fmt.Sprintf("made the most calls allowed (%d) without a sign of the limit", cfg.MaxCalls)
		case time.Now().Add(cfg.Step).After(deadline):
			res.Stop = fmt.Sprintf("ran out of time (%s) without a sign of the limit", human.Span(cfg.MaxTime))
		}
		if res.Stop != "" {
			break
		}
		p = min(p*2, cfg.Max)
	}
	return res.finish(base)
}

func (res RampResult) finish(base RampStep) RampResult {
	res.Rate = roundTo3(res.Capacity / 2)
	if base.Mean > 0 {
		res.Parallelism = max(1, int(math.Round(res.Rate*base.Mean.Seconds())))
	} else {
		res.Parallelism = max(1, res.Knee.Parallelism/2)
	}
	return res
}

// stepOf sums the windows that started at or after from.
func stepOf(p int, ws []Window, from time.Time) RampStep {
	st := RampStep{Parallelism: p}
	var span time.Duration
	var latSum time.Duration
	for _, w := range ws {
		if w.Start.Before(from) { // the window the step began in holds the step before too
			continue
		}
		st.Calls += w.Calls
		st.TooMany += w.TooMany
		st.Errors += w.Errors()
		st.OKPerSec += float64(w.OK)
		latSum += w.Mean * time.Duration(w.Calls)
		st.P95 = max(st.P95, w.P95)
		span += w.Length
	}
	if span > 0 {
		st.OKPerSec /= span.Seconds()
	}
	if st.Calls > 0 {
		st.Mean = latSum / time.Duration(st.Calls)
	}
	return st
}
