package replay

import (
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/recordtest"
	"github.com/throttle-dev/throttle/probes"
	"github.com/throttle-dev/throttle/record"
)

// Offsets of the knob changes of recordedRun.
const (
	raiseAt = 3 * time.Second
	lowerAt = 6 * time.Second
)

// recordedRun records 600 items against a simulated API under virtual time: parallelism 1
// (about 50 calls/s against a limit of 100/s), raised to 4 at 3 s (429s), lowered to 1 at 6 s.
func recordedRun(t *testing.T) (*record.Recording, engine.Summary) {
	t.Helper()
	rec, sum := recordtest.Read(t, recordtest.Run{Items: 600, Retries: 3, Settings: engine.Settings{Parallelism: 1, Burst: 1},
		Sim:     adapters.SimConfig{Rate: 100, Burst: 5, Latency: 20 * time.Millisecond, Sigma: 0.2, ErrorRate: 0.02, Seed: 3},
		Changes: []recordtest.Change{{At: raiseAt, Parallelism: 4, Origin: "ctl"}, {At: lowerAt, Parallelism: 1, Origin: "ctl"}}})
	if sum.TooMany == 0 || len(rec.Snapshots) < 5 || sum.Elapsed < lowerAt+time.Second {
		t.Fatalf("the recorded run should last past its changes and meet the limit: %+v, %d snapshots", sum, len(rec.Snapshots))
	}
	return rec, sum
}

// fakeClock is a wall clock moved by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// pausedAt returns a player of rec paused at pos, on a clock that never moves by itself.
func pausedAt(rec *record.Recording, pos time.Duration) *Player {
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := NewPlayer(rec, clock.Now)
	p.TogglePause()
	p.Seek(pos)
	return p
}

func TestPlayerSnapshotFollowsTheRecording(t *testing.T) {
	rec, sum := recordedRun(t)
	for _, pos := range []time.Duration{0, 1500 * time.Millisecond, raiseAt + 1500*time.Millisecond, lowerAt + 500*time.Millisecond} {
		p := pausedAt(rec, pos)
		s := p.Snapshot()
		if !s.Started.Equal(rec.Header.Started) || s.At.Sub(s.Started) != pos || !s.Ended.IsZero() {
			t.Errorf("at %v: started %v, at %v, ended %v", pos, s.Started, s.At.Sub(s.Started), s.Ended)
		}
		// The counters are the last sample taken by then.
		var want record.Snap
		for _, sn := range rec.Snapshots {
			if sn.At <= pos {
				want = sn
			}
		}
		got := record.Snap{At: want.At, State: want.State, Read: s.Read, OK: s.OK, Failed: s.Failed, Calls: s.Calls, Retries: s.Retries,
			TooMany: s.TooMany, Errors: s.Errors, InFlight: want.InFlight, BackingOff: s.BackingOff}
		if got != want {
			t.Errorf("at %v: counters %+v, want the sample %+v", pos, got, want)
		}
		if s.State != engine.Running || s.Total != 600 {
			t.Errorf("at %v: state %v, total %d", pos, s.State, s.Total)
		}
		wantPar := map[bool]int{true: 4, false: 1}[pos > raiseAt && pos < lowerAt]
		if s.Settings.Parallelism != wantPar {
			t.Errorf("at %v: parallelism %d, want %d", pos, s.Settings.Parallelism, wantPar)
		}
		// Calls in flight are the recorded calls spanning pos, one per calling worker slot.
		var open int
		for _, c := range rec.Calls {
			if c.Start <= pos && pos < c.End() {
				open++
			}
		}
		if s.InFlight != open || s.ByState[engine.WorkerCalling] != open || len(s.Workers) < s.Settings.Parallelism {
			t.Errorf("at %v: in flight %d, calling %d, %d slots; want %d calls spanning it and at least %d slots",
				pos, s.InFlight, s.ByState[engine.WorkerCalling], len(s.Workers), open, s.Settings.Parallelism)
		}
		var changes int
		for _, c := range rec.Changes {
			if c.At <= pos {
				changes++
			}
		}
		if len(s.Changes) != changes {
			t.Errorf("at %v: %d changes, want %d", pos, len(s.Changes), changes)
		}
	}
	mid := pausedAt(rec, raiseAt+500*time.Millisecond).Snapshot()
	if last := mid.Changes[len(mid.Changes)-1]; last.Origin != "ctl" || last.To != "4" || !last.At.Equal(rec.Header.Started.Add(rec.Changes[1].At)) {
		t.Errorf("after the raise the last change is %+v, want ctl's raise to 4 at its absolute time", last)
	}
	if mid.InFlight == 0 {
		t.Error("no call in flight in the middle of a busy run")
	}

	end := pausedAt(rec, time.Hour).Snapshot()
	if end.Ended.IsZero() || end.State != engine.Done || end.OK != sum.OK || end.Calls != sum.Calls || end.TooMany != sum.TooMany || end.InFlight != 0 {
		t.Errorf("at the end: ended %v, state %v, ok %d calls %d 429s %d in flight %d; summary %+v",
			end.Ended, end.State, end.OK, end.Calls, end.TooMany, end.InFlight, sum)
	}
}

func TestPlayerHoldsAndWarnings(t *testing.T) {
	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := &record.Recording{Header: record.Header{Started: started, Total: 10, Settings: record.Settings{Parallelism: 2}},
		Holds:    []record.Hold{{At: 2 * time.Second, Until: 5 * time.Second}, {At: 3 * time.Second, Until: 4 * time.Second}},
		Warnings: []record.Warning{{At: time.Second, Message: "open files"}},
		Calls:    []record.Call{{Start: 0, Latency: 8 * time.Second, Worker: 1}}}
	p := pausedAt(rec, 3500*time.Millisecond)
	s := p.Snapshot()
	if !s.HoldUntil.Equal(started.Add(5*time.Second)) || len(s.Warnings) != 1 {
		t.Errorf("hold until %v, warnings %q; want the later end of both holds and the warning", s.HoldUntil, s.Warnings)
	}
	if s.Workers[0] != engine.WorkerHeld || s.Workers[1] != engine.WorkerCalling {
		t.Errorf("workers %v during a hold, want held and calling", s.Workers)
	}
	if s := pausedAt(rec, 500*time.Millisecond).Snapshot(); !s.HoldUntil.IsZero() || len(s.Warnings) != 0 {
		t.Errorf("before them: hold until %v, warnings %q", s.HoldUntil, s.Warnings)
	}
}

func TestPlayerMovesWithTheClock(t *testing.T) {
	rec, _ := recordedRun(t)
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := NewPlayer(rec, clock.Now)
	if p.Position() != 0 || p.Speed() != 1 || p.Paused() {
		t.Fatalf("a new player: position %v, speed %v, paused %v", p.Position(), p.Speed(), p.Paused())
	}
	clock.Add(2 * time.Second)
	if got := p.Position(); got != 2*time.Second {
		t.Errorf("1x for 2s: position %v", got)
	}
	p.SetSpeed(10)
	clock.Add(300 * time.Millisecond)
	if got := p.Position(); got != 5*time.Second {
		t.Errorf("then 10x for 300ms: position %v, want 5s", got)
	}
	p.TogglePause()
	clock.Add(time.Hour)
	if got := p.Position(); got != 5*time.Second || !p.Paused() {
		t.Errorf("paused for an hour: position %v, want 5s", got)
	}
	p.TogglePause()
	p.SetSpeed(Max)
	clock.Add(time.Millisecond)
	if got := p.Position(); got != 6*time.Second || p.Speed() != Max {
		t.Errorf("max for 1ms: position %v, speed %v; want 6s at %vx", got, p.Speed(), MaxSpeed)
	}
	clock.Add(time.Hour)
	if got := p.Position(); got != p.Length() {
		t.Errorf("an hour at max: position %v, want the end %v", got, p.Length())
	}
	if p.Length() < rec.Elapsed() || p.Length() > rec.Elapsed()+time.Second {
		t.Errorf("length %v, run elapsed %v", p.Length(), rec.Elapsed())
	}
}

func TestPlayerSeekClamps(t *testing.T) {
	rec, _ := recordedRun(t)
	p := pausedAt(rec, 2*time.Second)
	if got := p.Seek(-10 * time.Second); got != 0 || p.Position() != 0 {
		t.Errorf("10s back from 2s: %v, want 0", got)
	}
	if got := p.Seek(10 * time.Minute); got != p.Length() || p.Position() != p.Length() {
		t.Errorf("10m on: %v, want the end %v", got, p.Length())
	}
	if got := p.Seek(-time.Second); got != p.Length()-time.Second {
		t.Errorf("1s back from the end: %v", got)
	}
	if !p.Paused() {
		t.Error("a seek unpaused the player")
	}
}

func TestPlayerNextChange(t *testing.T) {
	rec, _ := recordedRun(t)
	p := pausedAt(rec, 0)
	var stops []string
	for p.NextChange() {
		s := p.Snapshot()
		c := s.Changes[len(s.Changes)-1]
		if c.At != s.At {
			t.Errorf("jumped to %v, the change is at %v", s.At.Sub(s.Started), c.At.Sub(s.Started))
		}
		stops = append(stops, c.Knob+" "+c.To)
		if len(stops) > 10 {
			t.Fatal("NextChange never ends")
		}
	}
	if want := []string{"parallelism 4", "parallelism 1", "state done"}; !reflect.DeepEqual(stops, want) {
		t.Errorf("NextChange stopped at %q, want %q", stops, want)
	}
	if last := rec.Changes[len(rec.Changes)-1]; p.Position() != last.At {
		t.Errorf("with no change left the position moved to %v; the last change is at %v", p.Position(), last.At)
	}
}

// syntheticRun is a recording of 429s in the seconds given (and one ok call a second
// around them), for exact assertions on bursts.
func syntheticRun(tooMany ...int) *record.Recording {
	rec := &record.Recording{Header: record.Header{Started: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Total: -1,
		Settings: record.Settings{Parallelism: 1}}, End: &record.End{State: "done", Elapsed: record.Duration(20 * time.Second)}}
	for s := range 20 {
		at := time.Duration(s) * time.Second
		rec.Calls = append(rec.Calls, record.Call{Start: at + 100*time.Millisecond, Latency: 50 * time.Millisecond, Status: 200, Final: true, Items: 1})
		for _, tm := range tooMany {
			if tm == s {
				rec.Calls = append(rec.Calls, record.Call{Start: at + 300*time.Millisecond, Latency: 10 * time.Millisecond, Status: 429,
					Class: probes.ClassTooMany, Verdict: engine.Retry})
			}
		}
	}
	return rec
}

func TestPlayerNextBurst(t *testing.T) {
	// 429s in 2, 3 (one burst), 5 (a second without before it), 9 and 10.
	p := pausedAt(syntheticRun(2, 3, 5, 9, 10), 0)
	var stops []time.Duration
	for p.NextBurst() {
		stops = append(stops, p.Position())
		if len(stops) > 10 {
			t.Fatal("NextBurst never ends")
		}
	}
	if want := []time.Duration{2 * time.Second, 5 * time.Second, 9 * time.Second}; !reflect.DeepEqual(stops, want) {
		t.Errorf("NextBurst stopped at %v, want %v", stops, want)
	}
	if p.Position() != 9*time.Second {
		t.Errorf("with no burst left the position moved to %v", p.Position())
	}
	p.Seek(-500 * time.Millisecond) // 8.5s: the burst at 9s is after it
	if !p.NextBurst() || p.Position() != 9*time.Second {
		t.Errorf("from 8.5s: position %v, want 9s", p.Position())
	}
	if none := pausedAt(syntheticRun(), 0); none.NextBurst() || none.NextChange() {
		t.Error("a run without 429s or changes has a burst or a change to jump to")
	}
}

func TestPlayerKnobsAreReadOnly(t *testing.T) {
	rec, _ := recordedRun(t)
	p := pausedAt(rec, 4*time.Second)
	before := p.Snapshot()
	for name, err := range map[string]error{
		"parallelism": p.Set(engine.Turn(engine.KnobParallelism, engine.Settings{Parallelism: 64}), "tui"),
		"pace":        p.Set(engine.Turn(engine.KnobPace, engine.Settings{Pace: time.Second}), "tui"),
		"rate":        p.Set(engine.Diff(before.Settings, engine.Settings{Rate: 10, Burst: 1}), "tui"),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("set %s: %v, want ErrReadOnly", name, err)
		}
	}
	p.Pause("tui")
	p.Resume("tui")
	p.Drain("tui")
	p.Stop("tui")
	if after := p.Snapshot(); !reflect.DeepEqual(before, after) {
		t.Errorf("the controls changed the snapshot:\n%+v\n%+v", before, after)
	}
}

// TestPlayerStatsAsLive: the statistics at a position are those of a monitor fed the calls
// that ended by then, also after seeking away and back.
func TestPlayerStatsAsLive(t *testing.T) {
	rec, _ := recordedRun(t)
	pos := lowerAt + 700*time.Millisecond
	now := rec.Header.Started.Add(pos)
	live := probes.NewMonitor(probes.AdvisorConfig{}, false)
	for _, c := range rec.Calls {
		if c.End() <= pos {
			live.Observe(c.Event(rec.Header.Started))
		}
	}
	want := live.Points(now, time.Minute)

	p := pausedAt(rec, pos)
	ignored := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC) // the screen's own clock
	check := func(when string) {
		t.Helper()
		if got := p.Points(ignored, time.Minute); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: points differ from a live monitor's", when)
		}
		if got := p.Latency(ignored); got != live.Latency(now) {
			t.Errorf("%s: latency %+v, want %+v", when, got, live.Latency(now))
		}
		if got := p.Errors(8); !reflect.DeepEqual(got, live.Errors(8)) {
			t.Errorf("%s: errors %+v, want %+v", when, got, live.Errors(8))
		}
		set, eff := rec.LimitsAt(pos)
		if got := p.Advice(ignored, set, eff); !reflect.DeepEqual(got, live.Advice(now, set, eff)) {
			t.Errorf("%s: advice %+v, want %+v", when, got, live.Advice(now, set, eff))
		}
	}
	check("first read")
	var tooMany int64
	for _, pt := range want {
		tooMany += pt.TooMany
	}
	if tooMany == 0 {
		t.Error("no 429s in the points of the last minute")
	}
	p.Seek(time.Hour)
	p.Points(ignored, time.Minute)
	p.Seek(pos - p.Position())
	check("after the end and back")
}

func TestPlayerConcurrentUse(t *testing.T) {
	rec, _ := recordedRun(t)
	p := NewPlayer(rec, nil)
	p.SetSpeed(Max)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 50 {
				switch i {
				case 0:
					p.Snapshot()
				case 1:
					p.Points(time.Time{}, time.Minute)
					p.Errors(4)
				case 2:
					p.Seek(-2 * time.Second)
					p.NextBurst()
				case 3:
					p.TogglePause()
					p.NextChange()
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkRefeed: a seek back in a recording of a million calls feeds them all again.
func BenchmarkRefeed(b *testing.B) {
	const n = 1_000_000
	rec := &record.Recording{Header: record.Header{Started: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Total: n,
		Settings: record.Settings{Parallelism: 64}}}
	rec.Calls = make([]record.Call, n)
	for i := range rec.Calls {
		c := record.Call{Start: time.Duration(i) * time.Millisecond, Latency: time.Duration(20+i%40) * time.Millisecond,
			Worker: int32(i % 64), Status: 200, Items: 1, Final: true}
		switch {
		case i%50 == 0:
			c.Status, c.Class, c.Verdict, c.Final = 429, probes.ClassTooMany, engine.Retry, false
		case i%333 == 0:
			c.Status, c.Class, c.Verdict = 503, probes.Class5xx, engine.Retry
		}
		rec.Calls[i] = c
	}
	slices.SortStableFunc(rec.Calls, func(a, b record.Call) int { return int(a.End() - b.End()) })
	p := pausedAt(rec, 0)
	b.ResetTimer()
	for b.Loop() {
		p.Seek(time.Hour)
		p.Points(time.Time{}, time.Minute)
		p.Seek(-time.Hour)
		p.Points(time.Time{}, time.Minute)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// TestPlayerShowsEffectiveValues: a recording of a run whose congestion response cut the
// effective rate under its ceiling replays with the effective values of each moment in its
// snapshot, as the live screen read them.
func TestPlayerShowsEffectiveValues(t *testing.T) {
	rec, _ := recordtest.Read(t, recordtest.Run{Items: 2000, Retries: 5, Adapt: true, Settings: engine.Settings{Parallelism: 16, Rate: 300, Burst: 1},
		Sim: adapters.SimConfig{Rate: 200, Burst: 5, Latency: 20 * time.Millisecond, RetryAfter: time.Second, Seed: 3}})
	var cutAt time.Duration = -1
	for _, c := range rec.Changes {
		if c.Origin == "adapt" && c.Knob == "effective rate" {
			cutAt = c.At
			break
		}
	}
	if cutAt < 0 {
		t.Fatalf("the recorded run has no change of the effective rate: %+v", rec.Changes)
	}
	s := pausedAt(rec, cutAt+time.Millisecond).Snapshot()
	if s.Settings.Rate != 300 || s.Effective.Rate <= 0 || s.Effective.Rate >= 300 || s.Effective.Signals == 0 {
		t.Errorf("snapshot just after the cut: settings %+v, effective %+v; want the ceiling 300/s and an effective rate under it", s.Settings, s.Effective)
	}
	if s := pausedAt(rec, cutAt-time.Millisecond).Snapshot(); s.Effective.Rate != 0 {
		t.Errorf("snapshot before the cut: effective %+v, want none", s.Effective)
	}
}
