package engine

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestLaterPutsTheItemBackWithoutAnAttempt: an adapter that says "not now" twice for every
// item, then answers, gives rows with attempts 1, no retries, two calls fewer per item.
func TestLaterPutsTheItemBackWithoutAnAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		tries := map[int64]int{}
		var tried []time.Time
		a := AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
			mu.Lock()
			defer mu.Unlock()
			tries[it.Index]++
			if it.Index == 0 {
				tried = append(tried, time.Now())
			}
			if tries[it.Index] <= 2 {
				return Outcome{}, Later(300 * time.Millisecond)
			}
			return Outcome{Verdict: OK}, nil
		})
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 2, Burst: 1}, Retries: 0, Adapter: a}, numbered(20))
		sum, err := e.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if sum.OK != 20 || sum.Calls != 20 || sum.Retries != 0 || sum.Failed != 0 {
			t.Fatalf("summary %+v: want 20 ok in 20 calls, the deferrals counting as none", sum)
		}
		for _, r := range parseRows(t, out.Bytes()) {
			if r.Attempts != 1 {
				t.Fatalf("row %+v: a deferral counted as an attempt", r)
			}
		}
		if len(tried) != 3 || tried[1].Sub(tried[0]) < 300*time.Millisecond || tried[2].Sub(tried[1]) < 300*time.Millisecond {
			t.Fatalf("item 0 tried at %v: want three tries 300 ms apart", tried)
		}
	})
}

// TestLaterItemsOfADrainedRunAreNotStarted: an item still deferred when the run drains has no
// row and counts as not started.
func TestLaterItemsOfADrainedRunAreNotStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
			if it.Index == 3 {
				return Outcome{}, Later(time.Hour)
			}
			return Outcome{Verdict: OK}, nil
		})
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 1, Burst: 1}, Adapter: a}, numbered(5))
		go func() {
			time.Sleep(time.Minute)
			e.Drain("tui")
		}()
		sum, err := e.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if sum.OK != 4 || sum.NotStarted != 1 || len(parseRows(t, out.Bytes())) != 4 {
			t.Fatalf("summary %+v: want 4 ok and the deferred item not started", sum)
		}
	})
}
