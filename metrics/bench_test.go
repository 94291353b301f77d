package metrics_test

import (
	"context"
	"io"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/enginetest"
	"github.com/throttle-dev/throttle/metrics"
	"github.com/throttle-dev/throttle/probes"
)

// setup is what is attached to the engine in one run of the overhead scenario.
type setup struct {
	name    string
	monitor bool // a probes.Monitor fed from its own CallEnd subscription, as every CLI run has
	metrics bool // a metrics.Observer
	discard bool // a subscription to what the metrics read, drained by a goroutine doing nothing
	shared  bool // with monitor and metrics: the metrics fed from the monitor's subscription, as the CLI does
}

// runNoop runs n items through enginetest.Noop at parallelism 4 with rows to io.Discard — the
// engine-overhead scenario of engine.BenchmarkEngineNoop — with s attached, and returns the
// run's items/s and the process's CPU time per item.
func runNoop(b *testing.B, n int, s setup) (itemsPerSec, cpuPerItem float64) {
	return runAt(b, n, 0, s)
}

// runAt is runNoop with the rate capped at rate calls/s (0: none).
func runAt(b *testing.B, n int, rate float64, s setup) (itemsPerSec, cpuPerItem float64) {
	b.Helper()
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 4, Rate: rate, Burst: 10},
		Adapter:  enginetest.Noop,
		Source:   engine.NewLineReader(enginetest.Lines(n), false),
		Total:    int64(n),
		Results:  io.Discard,
	})
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	fed := make(chan struct{})
	var o *metrics.Observer
	if s.metrics {
		o = metrics.New(e, metrics.Options{Job: "bench", Shared: s.shared})
	}
	if s.monitor {
		mon := probes.NewMonitor(probes.AdvisorConfig{}, false)
		feeds := []func(engine.Event){mon.Observe}
		kinds := []engine.EventKind{engine.CallEnd}
		if s.shared {
			feeds, kinds = append(feeds, o.Observe), append(kinds, engine.ControlChange)
		}
		sub := e.Subscribe(8192, kinds...) // as cli.startMonitor does
		go func() {
			defer close(fed)
			probes.Feed(sub, stop, feeds...)
		}()
	} else if s.discard {
		sub := e.Subscribe(metrics.DefaultBuffer, engine.CallEnd, engine.ControlChange)
		go func() {
			defer close(fed)
			probes.Feed(sub, stop)
		}()
	} else {
		close(fed)
	}
	cpu0, start := cpuTime(), time.Now()
	sum, err := e.Run(context.Background())
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	close(stop)
	<-fed
	if err != nil {
		b.Fatal(err)
	}
	if o != nil {
		o.Finish(sum) // outside the timing: it only counts what the run left buffered
	}
	if sum.OK != int64(n) {
		b.Fatalf("Run over %d items: %d ok", n, sum.OK)
	}
	return float64(n) / elapsed.Seconds(), float64(cpu.Nanoseconds()) / float64(n)
}

// cpuTime is the CPU time this process has used, user and system: unlike items/s it does not
// move when other processes load the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkObserverOverhead measures what attaching the metrics costs the engine. Each
// iteration runs the engine-overhead scenario once with each setup, in an order rotating
// from one iteration to the next so that drift of the machine hits all alike: bare; with
// the metrics; with the CallEnd monitor every CLI run has; with the monitor and the metrics;
// with a subscription to the same events that does nothing with them, the floor of any
// observer fed from events.
// It reports the median items/s of each, the median loss of each pair run in the same
// iteration (metrics against bare, monitor+metrics against monitor), and the median CPU
// time per item. The goal is a loss under 2%.
//
//	go test -run '^$' -bench ObserverOverhead -benchtime 40x ./metrics/
func BenchmarkObserverOverhead(b *testing.B) {
	const items = 100_000
	setups := []setup{
		{name: "bare"}, {name: "metrics", metrics: true}, {name: "monitor", monitor: true},
		{name: "monitor+metrics", monitor: true, metrics: true}, {name: "discard", discard: true},
		{name: "monitor+shared", monitor: true, metrics: true, shared: true},
	}
	rate := make([][]float64, len(setups))
	cpu := make([][]float64, len(setups))
	i := 0
	for b.Loop() {
		for k := range setups {
			j := (k + i) % len(setups)
			r, c := runNoop(b, items, setups[j])
			rate[j], cpu[j] = append(rate[j], r), append(cpu[j], c)
		}
		i++
	}
	loss := func(with, without int) float64 {
		var l []float64
		for k := range rate[with] {
			l = append(l, 100*(rate[without][k]-rate[with][k])/rate[without][k])
		}
		return median(l)
	}
	for j, s := range setups {
		b.ReportMetric(median(rate[j]), s.name+"-items/s")
		b.ReportMetric(median(cpu[j]), s.name+"-cpu-ns/item")
	}
	b.ReportMetric(loss(1, 0), "loss-vs-bare-%")
	b.ReportMetric(loss(3, 2), "loss-vs-monitor-%")
	b.ReportMetric(loss(4, 0), "discard-loss-vs-bare-%")
	b.ReportMetric(loss(5, 2), "shared-loss-vs-monitor-%")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkObserverAtRate measures the metrics' cost where the calls' rate, not the engine,
// sets the pace, as for a real target: the engine-overhead scenario capped at 2,000 and
// 20,000 calls/s, a second per run, bare and observed in alternating order. Throughput is the
// cap either way, so it reports the median CPU time per item and its increase.
//
//	go test -run '^$' -bench ObserverAtRate -benchtime 8x ./metrics/
func BenchmarkObserverAtRate(b *testing.B) {
	rates := []float64{2000, 20000}
	setups := []setup{{name: "bare"}, {name: "metrics", metrics: true}}
	cpu := make([][2][]float64, len(rates))
	i := 0
	for b.Loop() {
		for r, rate := range rates {
			for k := range setups {
				j := (k + i) % len(setups)
				_, c := runAt(b, int(rate), rate, setups[j])
				cpu[r][j] = append(cpu[r][j], c)
			}
		}
		i++
	}
	for r, rate := range rates {
		name := strconv.Itoa(int(rate)) + "/s-"
		bare, observed := median(cpu[r][0]), median(cpu[r][1])
		b.ReportMetric(bare, name+"bare-cpu-ns/item")
		b.ReportMetric(observed, name+"metrics-cpu-ns/item")
		b.ReportMetric(100*(observed-bare)/bare, name+"cpu-increase-%")
	}
}

// BenchmarkEngineNoopMetrics is the engine-overhead scenario as engine.BenchmarkEngineNoop
// runs it, one run of b.N items, bare and with the metrics attached, for benchstat:
//
//	go test -run '^$' -bench EngineNoopMetrics -count 10 ./metrics/
func BenchmarkEngineNoopMetrics(b *testing.B) {
	for _, s := range []setup{{name: "bare/p4"}, {name: "metrics/p4", metrics: true}} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			r, _ := runNoop(b, b.N, s)
			b.ReportMetric(r, "items/s")
		})
	}
}
