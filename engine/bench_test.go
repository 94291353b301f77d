package engine_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/enginetest"
)

// runNoop runs one job of n items through enginetest.Noop at parallelism p, its rows written to w. With
// events, a subscriber drains the event stream as headless progress and the TUI do.
func runNoop(b *testing.B, n, p int, w io.Writer, events bool) {
	b.Helper()
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: p},
		Adapter:  enginetest.Noop,
		Source:   engine.NewLineReader(enginetest.Lines(n), false),
		Total:    int64(n),
		Results:  w,
	})
	if err != nil {
		b.Fatal(err)
	}
	if events {
		sub := e.Subscribe(1 << 16)
		defer sub.Close()
		quit := make(chan struct{})
		defer close(quit)
		go func() {
			for {
				select {
				case <-sub.C:
				case <-quit:
					return
				}
			}
		}()
	}
	sum, err := e.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if sum.OK != int64(n) || sum.Failed != 0 || sum.Lost != 0 {
		b.Fatalf("Run over %d items: ok %d, failed %d, lost %d; want %d ok", n, sum.OK, sum.Failed, sum.Lost, n)
	}
}

// BenchmarkEngineNoop measures the engine's overhead per item: one run of b.N items, generated
// on the fly, through an adapter that answers at once, each row encoded and written to a real
// file (or to io.Discard); "events" adds a subscriber that drains every call's events, as
// headless mode and the TUI do. It reports items/s; the goal is 300,000 items/s on 2 cores.
//
//	go test -run '^$' -bench EngineNoop -count 5 ./engine/
func BenchmarkEngineNoop(b *testing.B) {
	for _, p := range []int{4, 64} {
		for _, sink := range []string{"file", "discard", "file+events"} {
			b.Run(sink+"/p"+strconv.Itoa(p), func(b *testing.B) {
				w := io.Discard
				if sink != "discard" {
					f, err := os.Create(filepath.Join(b.TempDir(), "results.jsonl"))
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					w = f
				}
				b.ReportAllocs()
				b.ResetTimer()
				runNoop(b, b.N, p, w, sink == "file+events")
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
			})
		}
	}
}

// BenchmarkLineReader measures reading items alone, the floor under BenchmarkEngineNoop.
func BenchmarkLineReader(b *testing.B) {
	b.ReportAllocs()
	r := engine.NewLineReader(enginetest.Lines(b.N), false)
	for {
		if _, err := r.Next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkAppendRow measures encoding one typical row.
func BenchmarkAppendRow(b *testing.B) {
	r := &engine.Result{Item: engine.Item{Line: "item-123456"}, OK: true, Status: 200, Attempts: 1,
		Output: []byte(`{"id":"item-123456","value":42}`)}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = engine.AppendRow(buf[:0], r)
	}
}
