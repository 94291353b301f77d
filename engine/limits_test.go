package engine

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestRateCapWindows: with rate R and burst B and far more parallelism than the rate needs,
// no window of 1 s holds more than R·1s+B call starts, and no window of 100 ms more than
// R·0.1s+B, sliding the window over every start; and the cap is reached, not undershot.
func TestRateCapWindows(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		burst int
	}{
		{50, 5},
		{20, 1},
		{7, 3}, // 1/7 s is not a whole number of nanoseconds
	} {
		t.Run(fmt.Sprintf("%v/s burst %d", tc.rate, tc.burst), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const seconds = 40
				rng := newRand(3)
				rec := newRecorder()
				a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
					time.Sleep(rng.between(20*time.Millisecond, 80*time.Millisecond))
					return Outcome{Verdict: OK}, nil
				})
				items := int(tc.rate * seconds)
				e, _ := newTestEngine(t, Config{
					Settings: Settings{Parallelism: 64, Rate: tc.rate, Burst: tc.burst},
					Adapter:  a,
				}, numbered(items))
				s, err := e.Run(context.Background())
				if err != nil || s.OK != int64(items) {
					t.Fatalf("Run() = ok %d, %v; want %d, nil", s.OK, err, items)
				}
				starts := rec.startTimes()
				for _, w := range []time.Duration{time.Second, 100 * time.Millisecond} {
					limit := tc.rate*w.Seconds() + float64(tc.burst)
					if got, at := maxInWindow(starts, w); float64(got) > limit {
						t.Errorf("%d starts in the %v from +%v, want at most %v", got, w, at.Sub(starts[0]), limit)
					}
				}
				span := starts[len(starts)-1].Sub(starts[0]).Seconds()
				if got := float64(len(starts)-tc.burst) / span; got < 0.95*tc.rate {
					t.Errorf("average rate %.2f/s, want about the cap %v/s", got, tc.rate)
				}
			})
		})
	}
}

// TestRaiseParallelism: raising parallelism 2 → 32 while calls are long puts 32 calls in flight
// within 50 ms.
func TestRaiseParallelism(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, _ := newTestEngine(t, Config{
			Settings: Settings{Parallelism: 2},
			Adapter:  sleeper(rec, 10*time.Second),
		}, numbered(200))
		wait := runAsync(context.Background(), e)

		time.Sleep(time.Second)
		if got := rec.inflight.Load(); got != 2 {
			t.Fatalf("in flight at parallelism 2 = %d, want 2", got)
		}
		if err := e.SetParallelism(32, "test"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if got := rec.inflight.Load(); got != 32 {
			t.Errorf("in flight 50ms after raising to 32 = %d, want 32", got)
		}
		if snap := e.Snapshot(); snap.InFlight != 32 || snap.ByState[WorkerCalling] != 32 || len(snap.Workers) != 32 {
			t.Errorf("Snapshot in flight %d, calling %d, workers %d; want 32, 32, 32", snap.InFlight, snap.ByState[WorkerCalling], len(snap.Workers))
		}
		s, err := wait()
		if err != nil || s.OK != 200 {
			t.Errorf("Run() = ok %d, %v; want 200, nil", s.OK, err)
		}
	})
}

// TestLowerParallelism: lowering parallelism 32 → 4 starts no call while 4 or more are in
// flight (each start sees at most 4 in flight, itself included), cancels nothing, and loses
// nothing; the pool then runs at 4.
func TestLowerParallelism(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const items = 600
		rng := newRand(4)
		rec := newRecorder()
		var lowered, canceled atomic.Bool
		var overLimit atomic.Int64
		a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
			if lowered.Load() && c.inflight > 4 {
				overLimit.Add(1)
				t.Errorf("item %s started with %d calls in flight (itself included) after lowering to 4", it.Line, c.inflight)
			}
			time.Sleep(rng.between(50*time.Millisecond, 500*time.Millisecond))
			if ctx.Err() != nil {
				canceled.Store(true)
			}
			return Outcome{Verdict: OK}, nil
		})
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 32}, Adapter: a}, numbered(items))
		wait := runAsync(context.Background(), e)

		time.Sleep(1003 * time.Millisecond)
		synctest.Wait() // every worker is in a wait: no call is between admission and the adapter
		if got := rec.inflight.Load(); got < 16 {
			t.Fatalf("in flight before lowering = %d, want most of 32", got)
		}
		lowered.Store(true)
		if err := e.SetParallelism(4, "test"); err != nil {
			t.Fatal(err)
		}
		if snap := e.Snapshot(); snap.InFlight <= 4 {
			t.Errorf("Snapshot in flight right after lowering = %d, want the running calls (> 4) to go on", snap.InFlight)
		}
		time.Sleep(time.Second) // the longest call has ended
		if got := rec.inflight.Load(); got != 4 {
			t.Errorf("in flight a second after lowering = %d, want 4", got)
		}
		if snap := e.Snapshot(); len(snap.Workers) != 4 || snap.InFlight != 4 {
			t.Errorf("Snapshot: %d workers, %d in flight; want 4, 4", len(snap.Workers), snap.InFlight)
		}

		s, err := wait()
		if err != nil || s.OK != items || s.Failed != 0 {
			t.Errorf("Run() = ok %d, failed %d, %v; want %d, 0, nil", s.OK, s.Failed, err, items)
		}
		if canceled.Load() {
			t.Error("a call saw its context canceled: lowering must not cancel running calls")
		}
		for key, r := range rowsByItem(t, parseRows(t, out.Bytes())) {
			if r.Attempts != 1 {
				t.Errorf("item %s attempts = %d, want 1", key, r.Attempts)
			}
		}
	})
}

// TestPacing: W workers with pace P start W/P calls a second (within 5%) against a fast
// target, one worker's starts are never closer than P, and a new pace applies at once.
func TestPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers = 8
		rec := newRecorder()
		e, _ := newTestEngine(t, Config{
			Settings: Settings{Parallelism: workers, Pace: 250 * time.Millisecond},
			Adapter:  sleeper(rec, time.Millisecond),
		}, numbered(32*30+16*45))
		sub := e.Subscribe(4096)
		t0 := time.Now()
		wait := runAsync(context.Background(), e)

		time.Sleep(30*time.Second + 500*time.Microsecond)
		changed := time.Now()
		if err := e.SetPace(500*time.Millisecond, "test"); err != nil {
			t.Fatal(err)
		}
		s, err := wait()
		if err != nil || s.Failed != 0 {
			t.Fatalf("Run() = failed %d, %v; want 0, nil", s.Failed, err)
		}
		for _, phase := range []struct {
			from, to time.Duration
			want     float64 // calls per second
		}{
			{5 * time.Second, 30 * time.Second, workers / 0.25},
			{35 * time.Second, 60 * time.Second, workers / 0.5},
		} {
			n := rec.between(t0.Add(phase.from), t0.Add(phase.to))
			got := float64(n) / (phase.to - phase.from).Seconds()
			if math.Abs(got-phase.want) > 0.05*phase.want {
				t.Errorf("calls/s in [%v, %v) = %.2f, want %v ± 5%%", phase.from, phase.to, got, phase.want)
			}
		}
		lastStart := map[int]time.Time{}
		for _, ev := range drainEvents(sub) {
			if ev.Kind != CallStart {
				continue
			}
			pace := 250 * time.Millisecond
			if !ev.At.Before(changed) { // the new pace applies to waits under way
				pace = 500 * time.Millisecond
			}
			if prev, ok := lastStart[ev.Worker]; ok && ev.At.Sub(prev) < pace {
				t.Errorf("worker %d started at +%v, %v after its previous start, want at least %v", ev.Worker, ev.At.Sub(t0), ev.At.Sub(prev), pace)
			}
			lastStart[ev.Worker] = ev.At
		}
		if sub.Dropped() != 0 {
			t.Errorf("subscription dropped %d events, want 0 (buffer too small for the test)", sub.Dropped())
		}
	})
}

// TestSetRateTakesEffectAtOnce: with rate 1/min and workers queued for a token, raising the
// rate to 100/s makes calls flow at 100/s within milliseconds, not after the minute; lowering
// it to 2/s applies at once too.
func TestSetRateTakesEffectAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, _ := newTestEngine(t, Config{
			Settings: Settings{Parallelism: 4, Rate: 1.0 / 60, Burst: 1},
			Adapter:  sleeper(rec, time.Millisecond),
		}, numbered(240))
		wait := runAsync(context.Background(), e)

		time.Sleep(5 * time.Second)
		if got := len(rec.snapshot()); got != 1 {
			t.Fatalf("calls in the first 5s at 1/min = %d, want 1", got)
		}
		if snap := e.Snapshot(); snap.ByState[WorkerRateWait] == 0 {
			t.Errorf("Snapshot ByState = %v, want workers waiting for the rate", snap.ByState)
		}
		raised := time.Now()
		if err := e.SetRate(100, 1, "test"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		calls := rec.snapshot()
		if len(calls) < 2 {
			t.Fatalf("no call in the second after raising the rate to 100/s")
		}
		if d := calls[1].at.Sub(raised); d > 20*time.Millisecond {
			t.Errorf("first call after raising the rate to 100/s started %v later, want within 20ms", d)
		}
		if n := rec.between(raised, raised.Add(time.Second)); n < 95 || n > 101 {
			t.Errorf("calls in the second after raising to 100/s = %d, want 95..101", n)
		}

		time.Sleep(time.Second + 500*time.Microsecond)
		lowered := time.Now()
		if err := e.SetRate(2, 1, "test"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		if n := rec.between(lowered, lowered.Add(5*time.Second)); n < 9 || n > 11 {
			t.Errorf("calls in the 5s after lowering to 2/s = %d, want 9..11", n)
		}
		if err := e.SetRate(1000, 1, "test"); err != nil {
			t.Fatal(err)
		}
		if s, err := wait(); err != nil || s.OK != 240 {
			t.Errorf("Run() = ok %d, %v; want 240, nil", s.OK, err)
		}
	})
}

// TestRateOffAndOnAgain: turning the rate cap off (0) and on again restores the cap.
func TestRateOffAndOnAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, _ := newTestEngine(t, Config{
			Settings: Settings{Parallelism: 4, Rate: 10, Burst: 1},
			Adapter:  sleeper(rec, time.Millisecond),
		}, numbered(100))
		wait := runAsync(context.Background(), e)

		time.Sleep(2*time.Second + 500*time.Microsecond)
		e.Pause("test")
		for _, r := range []float64{0, 10} { // an operator switches the cap off, then on again
			if err := e.SetRate(r, 1, "test"); err != nil {
				t.Fatal(err)
			}
		}
		on := time.Now()
		e.Resume("test")
		time.Sleep(time.Second)
		if n := rec.between(on, on.Add(time.Second)); n > 11 {
			t.Errorf("calls in the second after setting the rate 10/s again = %d, want at most 11", n)
		}
		e.Drain("test")
		if _, err := wait(); err != nil {
			t.Error(err)
		}
	})
}

// TestUnlimitedToLimitedBeforeRun: settings given before Run, rate 0 (with a burst) then a
// rate, give a capped run.
func TestUnlimitedToLimitedBeforeRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 4}, Adapter: sleeper(rec, time.Millisecond)}, numbered(50))
		if err := e.SetRate(0, 2, "test"); err != nil {
			t.Fatal(err)
		}
		if err := e.SetRate(10, 2, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, at := maxInWindow(rec.startTimes(), time.Second); got > 12 {
			t.Errorf("%d calls in the second from +%v at rate 10/s burst 2, want at most 12", got, at.Sub(rec.startTimes()[0]))
		}
	})
}
