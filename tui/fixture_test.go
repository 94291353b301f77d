package tui

import (
	"sync"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/probes"
)

// fixedNow is the instant of every fixture: 1:12:31 into a run.
var (
	fixedStart = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	fixedNow   = fixedStart.Add(72*time.Minute + 31*time.Second)
)

// fakeEngine is an Engine with a settable snapshot that records the controls it receives.
type fakeEngine struct {
	mu    sync.Mutex
	snap  engine.Snapshot
	calls []string
}

func (f *fakeEngine) Snapshot() engine.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeEngine) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

// Set records the change knob by knob, as the tests read it: "tui parallelism 48", "tui pace
// 250ms", "tui rate 90/s burst 1" (rate and burst are one record).
func (f *fakeEngine) Set(u engine.Update, origin string) error {
	f.mu.Lock()
	next := u.Apply(f.snap.Settings)
	f.snap.Settings = next
	f.mu.Unlock()
	if u.Turns(engine.KnobParallelism) {
		f.record(origin + " parallelism " + itoa(next.Parallelism))
	}
	if u.Turns(engine.KnobPace) {
		f.record(origin + " pace " + next.Pace.String())
	}
	if u.Turns(engine.KnobRate) || u.Turns(engine.KnobBurst) {
		f.record(origin + " rate " + engine.FormatRate(next.Rate) + " burst " + itoa(next.Burst))
	}
	return nil
}
func (f *fakeEngine) Pause(origin string)  { f.record(origin + " pause") }
func (f *fakeEngine) Resume(origin string) { f.record(origin + " resume") }
func (f *fakeEngine) Drain(origin string)  { f.record(origin + " drain") }
func (f *fakeEngine) Stop(origin string)   { f.record(origin + " stop") }

func itoa(n int) string { return human.Count(int64(n)) }

// busySnapshot is a run an hour in: 24 workers, a rate cap, some 429s and errors.
func busySnapshot() engine.Snapshot {
	s := engine.Snapshot{
		At: fixedNow, Started: fixedStart, State: engine.Running,
		Settings: engine.Settings{Parallelism: 24, MaxParallelism: 64, Pace: 250 * time.Millisecond, Rate: 200, Burst: 1},
		Total:    1_200_000, Read: 277_300, OK: 276_906, Failed: 298, Calls: 278_245, Retries: 1_041, TooMany: 1_203, Errors: 339,
		InFlight: 16, BackingOff: 2,
	}
	states := []engine.WorkerState{}
	add := func(st engine.WorkerState, n int) {
		for range n {
			states = append(states, st)
		}
	}
	add(engine.WorkerCalling, 16)
	add(engine.WorkerPacing, 3)
	add(engine.WorkerRateWait, 2)
	add(engine.WorkerIdle, 3)
	s.Workers = states
	for _, st := range states {
		s.ByState[st]++
	}
	s.Changes = []engine.Change{
		{At: fixedStart, Origin: "cli", Knob: "start", To: "parallelism 8, pace 250ms, rate 150/s, burst 1"},
		{At: fixedStart.Add(62*time.Minute + 13*time.Second), Origin: "ctl", Knob: "rate", From: "150/s", To: "200/s"},
		{At: fixedStart.Add(71*time.Minute + 40*time.Second), Origin: "tui", Knob: "parallelism", From: "16", To: "24"},
	}
	return s
}

// busySeries fills a Series with 15 minutes of a steady run: about 190 calls/s with a latency
// knee, a burst of 429s five minutes ago, a trickle of 503s and timeouts.
func busySeries() *probes.Monitor {
	busyOnce.Do(func() { busy = fillBusySeries() })
	return busy
}

// busy is built once: filling it observes 170,000 events, slow under -race.
var (
	busyOnce sync.Once
	busy     *probes.Monitor
)

func fillBusySeries() *probes.Monitor {
	s := probes.NewMonitor(probes.AdvisorConfig{}, false)
	from := fixedNow.Add(-probes.SeriesSpan)
	for sec := 0; sec < int(probes.SeriesSpan/time.Second); sec++ {
		t := from.Add(time.Duration(sec) * time.Second)
		calls := 180 + (sec*7)%20
		lat := 120*time.Millisecond + time.Duration(sec%30)*2*time.Millisecond
		if sec > 600 {
			lat += 60 * time.Millisecond
		}
		for i := range calls {
			at := t.Add(time.Duration(i) * time.Second / time.Duration(calls+1))
			ev := engine.Event{Kind: engine.CallEnd, At: at, Latency: lat + time.Duration(i%10)*time.Millisecond, Status: 200, Verdict: engine.OK}
			switch {
			case sec >= 580 && sec < 600 && i%10 == 0:
				ev.Status, ev.Verdict, ev.Message = 429, engine.Retry, "429 Too Many Requests"
			case sec%45 == 0 && i == 0:
				ev.Status, ev.Verdict, ev.Message = 503, engine.Retry, "503 Service Unavailable"
			case sec%200 == 0 && i == 1:
				ev.Status, ev.Verdict, ev.Err, ev.Message = 0, engine.Retry, true, "timeout after 30s"
			}
			s.Observe(ev)
		}
	}
	return s
}

func newFixtureModel(width, height int, plain bool) (Model, *fakeEngine) {
	fe := &fakeEngine{snap: busySnapshot()}
	m := New(fe, busySeries(), Options{Title: "http · users.txt", Retries: 3, Plain: plain, Now: func() time.Time { return fixedNow }})
	m.width, m.height = width, height
	return m, fe
}

// effectiveSnapshot is busySnapshot with the congestion response holding the rate under a
// 250/s ceiling: the target pushed back at 206/s, the engine holds 196/s. With par, the
// effective parallelism binds too.
func effectiveSnapshot(par bool) engine.Snapshot {
	s := busySnapshot()
	s.Settings.Rate = 250
	s.Effective = engine.Effective{Rate: 196, Limit: 206, Signals: 3, QuotaLeft: -1}
	s.Changes = append(s.Changes,
		engine.Change{At: fixedStart.Add(72*time.Minute + 2*time.Second), Origin: "tui", Knob: "rate", From: "200/s", To: "250/s"},
		engine.Change{At: fixedStart.Add(72*time.Minute + 9*time.Second), Origin: "adapt", Knob: "effective rate", From: "250/s", To: "196/s (target accepted 206/s)"},
	)
	if par {
		s.Effective.Parallelism, s.Effective.Concurrency = 16, 18
		s.Changes = append(s.Changes, engine.Change{At: fixedStart.Add(72*time.Minute + 20*time.Second), Origin: "adapt",
			Knob: "effective parallelism", From: "24", To: "16 (429 at 18 in flight)"})
	}
	return s
}

func newEffectiveModel(width, height int, par bool) (Model, *fakeEngine) {
	fe := &fakeEngine{snap: effectiveSnapshot(par)}
	m := New(fe, busySeries(), Options{Title: "http · users.txt", Retries: 3, Plain: true, Now: func() time.Time { return fixedNow }})
	m.width, m.height = width, height
	return m, fe
}
