package engine

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// bucketTarget is a token bucket of rate per second and burst: a call past it gets 429 with a
// whole-second Retry-After. It records each call's start.
type bucketTarget struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	tokens  float64
	last    time.Time
	latency time.Duration
	starts  []time.Time
	refused atomic.Int64
}

func newBucket(rate float64, burst int, latency time.Duration) *bucketTarget {
	return &bucketTarget{rate: rate, burst: float64(burst), tokens: float64(burst), last: time.Now(), latency: latency}
}

func (b *bucketTarget) Do(ctx context.Context, it Item) (Outcome, error) {
	b.mu.Lock()
	now := time.Now()
	b.starts = append(b.starts, now)
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	ok := b.tokens >= 1
	if ok {
		b.tokens--
	}
	b.mu.Unlock()
	if !ok {
		b.refused.Add(1)
		time.Sleep(b.latency / 10)
		return Outcome{Verdict: Retry, Status: 429, Message: "429 Too Many Requests", RetryAfter: time.Second}, nil
	}
	time.Sleep(b.latency)
	return Outcome{Verdict: OK, Status: 200}, nil
}

// TestAdaptCutsOncePerMoment: a rate 25% over a token bucket's. The burst of 429s from one
// moment (calls already in flight when the engine cut) counts once: each cut in the change log
// follows a refusal of a call started after the cut before it.
func TestAdaptCutsOncePerMoment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBucket(100, 5, 50*time.Millisecond)
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 32, Rate: 125, Burst: 1}, Retries: 8, Adapt: true, Adapter: b}, numbered(1500))
		s, err := e.Run(context.Background())
		if err != nil || s.OK != 1500 {
			t.Fatalf("Run() = %d ok, %d failed, %v; want 1500 ok", s.OK, s.Failed, err)
		}
		cuts := 0
		for _, c := range e.Changes() {
			if c.Origin == "adapt" && c.Knob == "effective rate" && !strings.HasPrefix(c.To, "ceiling") {
				from, _ := ParseRate(c.From)
				to, _ := ParseRate(strings.Fields(c.To)[0])
				if to < from {
					cuts++
				}
			}
		}
		if cuts == 0 || int64(cuts) > b.refused.Load() {
			t.Errorf("%d cuts for %d × 429, want at least one and at most one per 429", cuts, b.refused.Load())
		}
		if share := float64(b.refused.Load()) / float64(s.Calls); share >= 0.02 {
			t.Errorf("429s are %.1f%% of calls, want under 2%%; changes:\n%v", 100*share, e.Changes())
		}
		// 1500 items at 100/s: 15 s ideal.
		if s.Elapsed > 20*time.Second {
			t.Errorf("finished in %v, want within 20 s (ideal 15 s); changes:\n%v", s.Elapsed, e.Changes())
		}
		if eff := e.Snapshot().Effective; eff.Signals != cuts {
			t.Errorf("Effective.Signals = %d, want the %d cuts", eff.Signals, cuts)
		}
	})
}

// TestAdaptOffHoldsSettings: with Adapt off the engine holds the settings as given: no
// effective values, no adapt entries, whatever the target says.
func TestAdaptOffHoldsSettings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBucket(100, 5, 50*time.Millisecond)
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 8, Rate: 125, Burst: 1}, Retries: 8, Adapter: b}, numbered(300))
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, c := range e.Changes() {
			if c.Origin == "adapt" {
				t.Errorf("change %v with Adapt off", c)
			}
		}
		if eff := e.Snapshot().Effective; eff.Rate != 0 || eff.Parallelism != 0 || eff.Signals != 0 {
			t.Errorf("Effective = %+v with Adapt off, want zero", eff)
		}
		if b.refused.Load() == 0 {
			t.Error("no 429 at a rate over the bucket's: the test shows nothing")
		}
	})
}

// TestHoldProbeEndsAtFirstSuccess: under --hold probe, during a 1 s hold one call at a time
// tests the water, at most every 100 ms, and the first success lifts the hold for everyone.
func TestHoldProbeEndsAtFirstSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var calls []time.Time
		var refusedAt time.Time // the first call: the target refuses every call for 250 ms from it
		a := AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
			mu.Lock()
			now := time.Now()
			calls = append(calls, now)
			if refusedAt.IsZero() {
				refusedAt = now
			}
			refuse := now.Sub(refusedAt) < 250*time.Millisecond
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			if refuse {
				return Outcome{Verdict: Retry, Status: 429, Message: "429", RetryAfter: time.Second}, nil
			}
			return Outcome{Verdict: OK, Status: 200}, nil
		})
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 8, Burst: 1}, Retries: 5, Hold: HoldProbe, Adapter: a}, numbered(200))
		s, err := e.Run(context.Background())
		if err != nil || s.OK != 200 {
			t.Fatalf("Run() = %d ok, %v", s.OK, err)
		}
		mu.Lock()
		defer mu.Unlock()
		// The 8 first calls start at once and are refused; then test calls, one at a time, at
		// least 100 ms apart, until one starts past the 250 ms and is taken: it lifts the hold.
		var tests []time.Duration
		for _, c := range calls[8:] {
			d := c.Sub(refusedAt)
			tests = append(tests, d)
			if d >= 250*time.Millisecond {
				break
			}
		}
		for i := 1; i < len(tests); i++ {
			if tests[i]-tests[i-1] < 100*time.Millisecond {
				t.Errorf("test calls at %v: closer than 100 ms", tests)
			}
		}
		if last := tests[len(tests)-1]; last > 400*time.Millisecond {
			t.Errorf("the successful test call started %v after the refusal, want within 400 ms, not after the 1 s hold", last)
		}
		// After it, the pool is back long before the hold's second.
		if n := len(calls); calls[n-1].Sub(refusedAt) > 2*time.Second {
			t.Errorf("the run's last call at %v", calls[n-1].Sub(refusedAt))
		}
	})
}

// TestAdaptQuotaAccounting: a fixed window of 50 calls a second that reports its quota with a
// Reset of whole seconds rounded up, against a rate ceiling twice that: no call is refused,
// since the engine takes the calls started after each answer off the quota it reported, and
// waits for the reset narrowed from many answers.
func TestAdaptQuotaAccounting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		origin := time.Now()
		var mu sync.Mutex
		used, window := 0, int64(0)
		var refused atomic.Int64
		a := AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
			mu.Lock()
			now := time.Now()
			w := int64(now.Sub(origin) / time.Second)
			if w != window {
				window, used = w, 0
			}
			reset := origin.Add(time.Duration(w+1) * time.Second).Sub(now)
			reset = (reset + time.Second - 1) / time.Second * time.Second // whole seconds, up
			ok := used < 50
			if ok {
				used++
			}
			q := &Quota{Limit: 50, Remaining: int64(50 - used), Reset: reset}
			mu.Unlock()
			time.Sleep(30 * time.Millisecond)
			if !ok {
				refused.Add(1)
				return Outcome{Verdict: Retry, Status: 429, Message: "429", RetryAfter: reset, Quota: q}, nil
			}
			return Outcome{Verdict: OK, Status: 200, Quota: q}, nil
		})
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 16, Rate: 100, Burst: 1}, Retries: 5, Adapt: true, Adapter: a}, numbered(500))
		s, err := e.Run(context.Background())
		if err != nil || s.OK != 500 {
			t.Fatalf("Run() = %d ok, %v", s.OK, err)
		}
		if n := refused.Load(); n > 0 {
			t.Errorf("%d calls refused past the quota, want none", n)
		}
		// 500 calls at 50 a second: ten windows; the last one ends at 10 s.
		if s.Elapsed > 10500*time.Millisecond {
			t.Errorf("finished in %v, want within about 10 s (the quota's pace)", s.Elapsed)
		}
	})
}

// TestAdaptParallelismCut: a target that refuses calls past 4 in flight without Retry-After
// gets an effective parallelism under the ceiling of 8; a lowered ceiling under it applies.
func TestAdaptParallelismCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var inFlight atomic.Int64
		var refused atomic.Int64
		a := AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			if n > 4 {
				refused.Add(1)
				time.Sleep(time.Millisecond)
				return Outcome{Verdict: Retry, Status: 429, Message: "429"}, nil
			}
			time.Sleep(20 * time.Millisecond)
			return Outcome{Verdict: OK, Status: 200}, nil
		})
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 8, Burst: 1}, Retries: 8, Adapt: true, Adapter: a}, numbered(2000))
		wait := runAsync(context.Background(), e)
		time.Sleep(3 * time.Second)
		eff := e.Snapshot().Effective
		if eff.Parallelism < 1 || eff.Parallelism > 4 {
			t.Errorf("effective parallelism %d after 3 s, want 1 to 4", eff.Parallelism)
		}
		if err := e.SetParallelism(2, "test"); err != nil {
			t.Fatal(err)
		}
		if eff := e.Snapshot().Effective; eff.Parallelism != 0 {
			t.Errorf("effective parallelism %d under a ceiling of 2, want 0 (the ceiling applies)", eff.Parallelism)
		}
		s, err := wait()
		if err != nil || s.OK != 2000 {
			t.Fatalf("Run() = %d ok, %v", s.OK, err)
		}
		if share := float64(refused.Load()) / float64(s.Calls); share >= 0.02 {
			t.Errorf("429s are %.1f%% of calls, want under 2%%", 100*share)
		}
	})
}

// TestAdaptParallelismCutOnArrivalOrder: the pool's first moment starts 20 calls at once and
// they reach a target that takes 16 at a time in another order than they started (each takes
// its own time on the way). The refused call may be one that started early, when few were
// out: the cut is from the calls out when its refusal came back, not from the few before it,
// so the effective parallelism stays near the target's 16 rather than collapsing.
func TestAdaptParallelismCutOnArrivalOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var busy atomic.Int64
		var seq atomic.Int64
		a := AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
			// The way there: the calls started first arrive last (20 ms down to 1 ms).
			time.Sleep(time.Duration(max(1, 21-seq.Add(1))) * time.Millisecond)
			n := busy.Add(1)
			defer busy.Add(-1)
			if n > 16 {
				return Outcome{Verdict: Retry, Status: 429, Message: "429"}, nil
			}
			time.Sleep(50 * time.Millisecond)
			return Outcome{Verdict: OK, Status: 200}, nil
		})
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 20, Burst: 1}, Retries: 8, Adapt: true, Adapter: a}, numbered(400))
		s, err := e.Run(context.Background())
		if err != nil || s.OK != 400 {
			t.Fatalf("Run() = %d ok, %v", s.OK, err)
		}
		lowest := 20
		for _, c := range e.Changes() {
			if c.Origin == "adapt" && c.Knob == "effective parallelism" {
				if n, err := strconv.Atoi(strings.Fields(c.To)[0]); err == nil {
					lowest = min(lowest, n)
				}
			}
		}
		if lowest == 20 {
			t.Fatalf("no cut of parallelism: the test shows nothing; changes:\n%v", e.Changes())
		}
		if lowest < 13 {
			t.Errorf("effective parallelism went down to %d against a target that takes 16; changes:\n%v", lowest, e.Changes())
		}
	})
}

// TestAdaptConfirmedLimitLooksLessOften: against a token bucket that never moves, a look past
// the plateau that measures the limit the last one measured confirms it: the pool comes back
// from the hold at the plateau rather than under it, and the next look waits rateKConfirmed.
// The run stays under 2% 429s and close to ideal (virtual time: a check of the rule, not of
// throughput).
func TestAdaptConfirmedLimitLooksLessOften(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBucket(100, 5, 50*time.Millisecond)
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 32, Rate: 125, Burst: 1}, Retries: 8, Adapt: true, Adapter: b}, numbered(9000))
		s, err := e.Run(context.Background())
		if err != nil || s.OK != 9000 {
			t.Fatalf("Run() = %d ok, %d failed, %v; want 9000 ok", s.OK, s.Failed, err)
		}
		type cut struct {
			at           time.Time
			to, accepted float64
		}
		var cuts []cut
		for _, c := range e.Changes() {
			if c.Origin != "adapt" || !strings.Contains(c.To, "target accepted") {
				continue
			}
			to, _ := ParseRate(strings.Fields(c.To)[0])
			acc, _ := ParseRate(strings.TrimSuffix(c.To[strings.LastIndex(c.To, " ")+1:], ")"))
			cuts = append(cuts, cut{c.At, to, acc})
		}
		confirmed := 0
		for i := 1; i < len(cuts); i++ {
			p, c := cuts[i-1], cuts[i]
			if d := c.accepted/p.accepted - 1; d < -0.03 || d > 0.03 {
				continue
			}
			if c.to < 0.96*c.accepted { // a cut would be to 95%; the plateau is 97-98.5%
				continue // a refusal under the plateau: convergence, not a confirmation
			}
			confirmed++
			if i+1 < len(cuts) && cuts[i+1].at.Sub(c.at) < rateKConfirmed {
				t.Errorf("the look after a confirmation at %v came %v later, want ≥ %v; changes:\n%v",
					c.at, cuts[i+1].at.Sub(c.at), rateKConfirmed, e.Changes())
			}
		}
		if confirmed == 0 {
			t.Errorf("no look past the plateau confirmed the limit in 90 s; changes:\n%v", e.Changes())
		}
		if share := float64(b.refused.Load()) / float64(s.Calls); share >= 0.02 {
			t.Errorf("429s are %.1f%% of calls, want under 2%%", 100*share)
		}
		if s.Elapsed > 99*time.Second { // 9000 at 100/s: 90 s ideal
			t.Errorf("finished in %v, want within 1.1 × the ideal 90 s; changes:\n%v", s.Elapsed, e.Changes())
		}
	})
}
