package engine

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestSpentQuotaHoldsEveryWorkerUntilItsReset: an answer that says the quota is spent (its
// remaining count is 0) holds new calls until the reset it names, as a Retry-After does, and the
// snapshot carries what the target said.
func TestSpentQuotaHoldsEveryWorkerUntilItsReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var starts []time.Time
		calls := 0
		a := AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
			mu.Lock()
			calls++
			n := calls
			starts = append(starts, time.Now())
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			q := &Quota{Limit: 100, Remaining: int64(100 - n), Reset: 30 * time.Second}
			if n == 20 {
				q = &Quota{Limit: 100, Remaining: 0, Reset: 2 * time.Second}
			}
			return Outcome{Verdict: OK, Status: 200, Quota: q}, nil
		})
		// One worker, so that no answer of an older call overwrites the spent quota.
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 1, Burst: 1}, Adapter: a}, numbered(60))
		var spent Snapshot
		done := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
				if s := e.Snapshot(); s.Quota.Remaining == 0 && !s.Quota.At.IsZero() && spent.At.IsZero() {
					spent = s
				}
			}
		}()
		_, err := e.Run(context.Background())
		close(done)
		<-watched
		if err != nil {
			t.Fatal(err)
		}
		// Find when the spent answer came: the 20th call's end, 10 ms after its start.
		spentAt := starts[19].Add(10 * time.Millisecond)
		for _, s := range starts[20:] {
			if s.After(spentAt) && s.Before(spentAt.Add(2*time.Second)) {
				t.Fatalf("a call started %v after the quota was spent; want none before its 2 s reset", s.Sub(spentAt))
			}
		}
		if spent.Quota.Limit != 100 || spent.Quota.ResetAt.Sub(spent.Quota.At) != 2*time.Second || spent.HoldUntil.IsZero() {
			t.Fatalf("snapshot while spent: %+v, hold until %v", spent.Quota, spent.HoldUntil)
		}
	})
}
