package cluster

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// benchLimit creates a limit set far above what one process can reach (rate, burst and
// parallelism), so that every acquisition is admitted: what is measured is its cost.
func benchLimit(b *testing.B) (*Limits, string) {
	b.Helper()
	ctx := context.Background()
	l, err := ConnectLimits(ctx, limitsRedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	name := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if _, _, err := l.Set(ctx, name, "bench", LimitSet{Rate: ptr(1e7), Burst: ptr(1 << 24), Parallelism: ptr(1 << 20)}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = l.Remove(context.Background(), name, "bench", true)
		l.Close()
	})
	return l, name
}

var benchOK = engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
	return engine.Outcome{Verdict: engine.OK}, nil
})

// BenchmarkLimitAcquire measures one acquisition from a shared limit — its share of a trip to
// Redis before a call (see gateTrips: from 16 goroutines, the acquisitions and releases that
// come while a trip is out go together in the next) — from one goroutine and from 16 at once,
// and reports its p50 and p99. The release after the call is not counted in the latency (it
// is in ns/op).
//
//	THROTTLE_TEST_REDIS=redis://127.0.0.1:6379/0 go test -run '^$' -bench LimitAcquire -benchtime 20000x ./cluster/
func BenchmarkLimitAcquire(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%d", conc), func(b *testing.B) {
			l, name := benchLimit(b)
			g, err := l.Use(context.Background(), benchOK, []LimitUse{{Name: name}}, GateOptions{Job: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			ctx := context.Background()
			lat := make([]time.Duration, b.N)
			var next sync.Mutex
			k := 0
			b.ResetTimer()
			var wg sync.WaitGroup
			for range conc {
				wg.Go(func() {
					for {
						next.Lock()
						i := k
						k++
						next.Unlock()
						if i >= b.N {
							return
						}
						start := time.Now()
						lease, err := g.admit(ctx, nil)
						lat[i] = time.Since(start)
						if err != nil {
							b.Error(err)
							return
						}
						g.finish(lease, 0)
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkLimitJob measures the most calls per second one job reaches with a no-op adapter
// and parallelism 64: directly, and through a shared limit set far above it. The difference
// is the cost of the limit (an acquisition and a release a call, coalesced into trips), as the
// job sees it.
//
//	THROTTLE_TEST_REDIS=redis://127.0.0.1:6379/0 go test -run '^$' -bench LimitJob -benchtime 50000x ./cluster/
func BenchmarkLimitJob(b *testing.B) {
	for _, shared := range []bool{false, true} {
		name := "direct"
		if shared {
			name = "shared-limit"
		}
		b.Run(name, func(b *testing.B) {
			var a engine.Adapter = benchOK
			if shared {
				l, limit := benchLimit(b)
				g, err := l.Use(context.Background(), benchOK, []LimitUse{{Name: limit}}, GateOptions{Job: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				defer g.Close()
				a = g.Adapter()
			}
			var lines strings.Builder
			for i := range b.N {
				fmt.Fprintf(&lines, "%d\n", i)
			}
			e, err := engine.New(engine.Config{
				Settings: engine.Settings{Parallelism: 64, Burst: 1}, Adapter: a, Total: int64(b.N),
				Source: engine.NewLineReader(strings.NewReader(lines.String()), false), Results: io.Discard,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			sum, err := e.Run(context.Background())
			elapsed := time.Since(start)
			b.StopTimer()
			if err != nil || sum.OK != int64(b.N) {
				b.Fatalf("%+v, %v", sum, err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
		})
	}
}
