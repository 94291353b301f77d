package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// instant answers at once, counting its calls.
func instant(calls *atomic.Int64) engine.Adapter {
	return engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		calls.Add(1)
		return engine.Outcome{Verdict: engine.OK}, nil
	})
}

// loop makes n calls through g from each of w goroutines, one after another, and fails the
// test on an error.
func loop(t *testing.T, g *Gate, w, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range w {
		wg.Go(func() {
			for range n {
				if _, err := g.Do(context.Background(), engine.Item{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestGateKeepsLeasesWhileAlone: a job alone on a limit with no rate hands the leases of its
// ended calls to its next calls: far fewer round trips than calls, every call still counted
// in Redis, and every lease back soon after the last call.
func TestGateKeepsLeasesWhileAlone(t *testing.T) {
	t.Parallel()
	l, name := namedLimit(t, LimitSet{Parallelism: ptr(4)})
	var calls atomic.Int64
	g := namedGate(t, l, instant(&calls), "alone", GateOptions{}, LimitUse{Name: name})
	loop(t, g, 4, 100)
	if n := calls.Load(); n != 400 {
		t.Fatalf("%d calls, want 400", n)
	}
	if trips, kept := g.trips.Load(), g.kept.taken.Load(); trips > 100 || kept < 300 {
		t.Fatalf("%d acquisitions asked of Redis and %d calls on kept leases for 400 calls: want most calls on kept leases", trips, kept)
	}
	ctx := context.Background()
	var info LimitInfo
	if !waitUntil(time.Second, func() bool {
		info, _ = l.Get(ctx, name)
		return info.InFlight == 0 && len(info.Jobs) == 1 && info.Jobs[0].Calls == 400
	}) {
		t.Fatalf("a second after the last call: %d leases, jobs %+v: want none, and 400 calls counted", info.InFlight, info.Jobs)
	}
}

// TestGateKeepsNoLeaseWhileOthersWait: while another job waits on the limit, every call of a
// job asks Redis, so that the shares hold from call to call.
func TestGateKeepsNoLeaseWhileOthersWait(t *testing.T) {
	t.Parallel()
	l, name := namedLimit(t, LimitSet{Parallelism: ptr(2)})
	slow := namedGate(t, l, engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		time.Sleep(20 * time.Millisecond)
		return engine.Outcome{Verdict: engine.OK}, nil
	}), "slow", GateOptions{}, LimitUse{Name: name})
	// Four callers for two slots: the slow job always has calls waiting. They stop between
	// calls (a call cancelled in the gate would leave a release to the background).
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop.Store(true)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				_, _ = slow.Do(context.Background(), engine.Item{}) // refused (Later) or not: it asks again
			}
		})
	}
	if !waitUntil(5*time.Second, func() bool { return slow.blocked[0].Load() > 0 }) {
		t.Fatal("the slow job never waited on its limit")
	}
	var calls atomic.Int64
	fast := namedGate(t, l, instant(&calls), "fast", GateOptions{}, LimitUse{Name: name})
	loop(t, fast, 2, 30)
	if kept := fast.kept.taken.Load(); kept != 0 {
		t.Fatalf("%d of %d calls on kept leases while another job waited: want none", kept, calls.Load())
	}
}

// TestGateHoldEndsKeeping: a 429 with Retry-After holds the calls that would start on leases
// kept before it, as those that ask Redis.
func TestGateHoldEndsKeeping(t *testing.T) {
	t.Parallel()
	l, name := namedLimit(t, LimitSet{Parallelism: ptr(4)})
	var calls atomic.Int64
	var both sync.WaitGroup
	both.Add(2)
	g := namedGate(t, l, engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		switch calls.Add(1) {
		case 1, 2:
			both.Done()
			both.Wait() // two leases out at once, then both kept
			return engine.Outcome{Verdict: engine.OK}, nil
		case 3:
			return engine.Outcome{Verdict: engine.Retry, Status: 429, RetryAfter: 2 * time.Second}, nil
		}
		return engine.Outcome{Verdict: engine.OK}, nil
	}), "held", GateOptions{MaxWait: 50 * time.Millisecond}, LimitUse{Name: name})
	loop(t, g, 2, 1)
	g.kept.mu.Lock()
	kept := len(g.kept.free)
	g.kept.mu.Unlock()
	if kept == 0 {
		t.Log("no lease kept after the first two calls (slow machine): the check below proves less")
	}
	ctx := context.Background()
	if out, err := g.Do(ctx, engine.Item{}); err != nil || out.Status != 429 {
		t.Fatalf("third call: %+v, %v: want the 429", out, err)
	}
	if _, err := g.Do(ctx, engine.Item{}); err == nil {
		t.Fatal("a call right after a 429 with Retry-After went through on a kept lease")
	} else if _, ok := engine.IsLater(err); !ok {
		t.Fatalf("a call under the hold: %v, want engine.Later", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d calls reached the target, want 3", n)
	}
}

// TestGateTakesTokensAhead: a call whose token of the rate is due within limitAhead takes it
// in its one round trip and starts when it is due: calls in a row under a rate of 200/s
// (burst 1) ask Redis once each, and start 5 ms apart.
func TestGateTakesTokensAhead(t *testing.T) {
	t.Parallel()
	l, name := namedLimit(t, LimitSet{Rate: ptr(200.0), Burst: ptr(1)})
	var starts []time.Time
	g := namedGate(t, l, engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		starts = append(starts, time.Now())
		return engine.Outcome{Verdict: engine.OK}, nil
	}), "ahead", GateOptions{}, LimitUse{Name: name})
	const n = 20
	for range n {
		if _, err := g.Do(context.Background(), engine.Item{}); err != nil {
			t.Fatal(err)
		}
	}
	if trips := g.trips.Load(); trips != n {
		t.Fatalf("%d acquisitions asked of Redis for %d calls: want one each, its token taken ahead", trips, n)
	}
	// Redis's clock and this one tick apart: a ms of slack for the 5 ms spacing.
	if span, least := starts[n-1].Sub(starts[0]), time.Duration(n-1)*5*time.Millisecond; span < least-time.Millisecond {
		t.Fatalf("%d calls in %v: a rate of 200/s allows them in no less than %v", n, span, least)
	}
}
