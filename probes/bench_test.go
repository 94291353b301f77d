package probes_test

import (
	"context"
	"io"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/enginetest"
	"github.com/throttle-dev/throttle/probes"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// probeModes are the observers BenchmarkProbesCost attaches to the engine:
//
//   - bare: no subscriber;
//   - monitor: what the CLI runs (startMonitor): a subscription of 8192 call ends feeding a
//     probes.Monitor (Series and the advisor's Windows) through probes.Feed;
//   - monitor+auto: the same with --auto (the tuner's Windows too);
//   - all-kinds: a subscription of 8192 events of every kind (call starts too, so two events
//     a call) feeding probes.Windows and probes.Series through probes.Feed.
var probeModes = []string{"bare", "monitor", "monitor+auto", "all-kinds"}

// probeRun is one measured run.
type probeRun struct {
	items             int
	elapsed, cpu      time.Duration
	observed, dropped int64
	subscribed        bool
}

// runProbed runs n generated items through the no-op adapter at parallelism 4 (rate 0 for
// none, else capped with a burst of 100), rows to io.Discard, with the observers of mode.
// The clock runs from the start of the run until the probes have caught up with what the
// subscription buffered.
func runProbed(tb testing.TB, n int, rate float64, mode string) probeRun {
	tb.Helper()
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 4, Rate: rate, Burst: 100},
		Adapter:  enginetest.Noop,
		Source:   engine.NewLineReader(enginetest.Lines(n), false),
		Total:    int64(n),
		Results:  io.Discard,
	})
	if err != nil {
		tb.Fatal(err)
	}
	var (
		sub      *engine.Subscription
		observed int64
		stop     = make(chan struct{})
		fed      = make(chan struct{})
	)
	count := func(engine.Event) { observed++ }
	switch mode {
	case "monitor", "monitor+auto":
		mon := probes.NewMonitor(probes.AdvisorConfig{}, mode == "monitor+auto")
		sub = e.Subscribe(8192, engine.CallEnd)
		go func() { defer close(fed); probes.Feed(sub, stop, mon.Observe, count) }()
	case "all-kinds":
		ws, series := probes.NewWindows(probes.DefaultWindow, 24), probes.NewSeries()
		sub = e.Subscribe(8192)
		go func() { defer close(fed); probes.Feed(sub, stop, ws.Observe, series.Observe, count) }()
	case "bare":
		close(fed)
	default:
		tb.Fatalf("runProbed: unknown mode %q", mode)
	}
	t0, cpu0 := time.Now(), cpuTime(tb)
	sum, err := e.Run(context.Background())
	if sub != nil {
		for len(sub.C) > 0 {
			runtime.Gosched()
		}
	}
	close(stop)
	<-fed
	r := probeRun{items: n, elapsed: time.Since(t0), cpu: cpuTime(tb) - cpu0, observed: observed, subscribed: sub != nil}
	if err != nil {
		tb.Fatal(err)
	}
	if sum.OK != int64(n) {
		tb.Fatalf("Run over %d items: ok %d, failed %d, lost %d", n, sum.OK, sum.Failed, sum.Lost)
	}
	if sub != nil {
		r.dropped = sub.Dropped()
		sub.Close()
	}
	return r
}

// BenchmarkProbesCost measures what probes cost the engine: one run of b.N generated items
// through an adapter that answers at once, parallelism 4, rows to io.Discard, with each set
// of [probeModes]. "noop" runs as fast as the engine can; "rate50k" and "rate100k" cap the
// engine at 50,000 and 100,000 calls/s (burst 100): 100,000 events/s with starts and ends, or
// with call ends alone. It reports items/s (under a cap, held-% of it), the process's CPU per
// item (cpu-ns/item: at a fixed rate the probes' cost shows there), the events the probes
// observed per second and how many the subscription dropped. On a shared machine, compare
// with BenchmarkProbesOverhead, which interleaves bare and probed runs.
//
//	go test -run '^$' -bench ProbesCost -count 3 ./probes/
func BenchmarkProbesCost(b *testing.B) {
	for _, rc := range []struct {
		name string
		rate float64
	}{{"noop", 0}, {"rate50k", 50_000}, {"rate100k", 100_000}} {
		for _, mode := range probeModes {
			b.Run(rc.name+"/"+mode, func(b *testing.B) {
				runtime.GC()
				b.ResetTimer()
				r := runProbed(b, b.N, rc.rate, mode)
				b.StopTimer()
				secs := r.elapsed.Seconds()
				b.ReportMetric(float64(r.items)/secs, "items/s")
				b.ReportMetric(float64(r.cpu.Nanoseconds())/float64(r.items), "cpu-ns/item")
				if rc.rate > 0 {
					b.ReportMetric(100*float64(r.items)/secs/rc.rate, "held-%")
				}
				if r.subscribed {
					b.ReportMetric(float64(r.observed)/secs, "events/s")
					b.ReportMetric(float64(r.dropped), "dropped")
					b.ReportMetric(100*float64(r.dropped)/max(1, float64(r.observed+r.dropped)), "dropped-%")
				}
			})
		}
	}
}

// BenchmarkProbesOverhead runs bare and probed jobs in alternation, rounds of the same size,
// so that whatever else the machine does hits both alike, and reports the throughput of each
// and the probes' cost: cost-% = 1 − probed/bare items/s (the goal: under 2% at
// 100,000 events/s), and cpu-% = the extra CPU per item.
//
//	go test -run '^$' -bench ProbesOverhead -count 3 ./probes/
func BenchmarkProbesOverhead(b *testing.B) {
	for _, rc := range []struct {
		name  string
		rate  float64
		round int
	}{{"noop", 0, 50_000}, {"rate50k", 50_000, 10_000}, {"rate100k", 100_000, 20_000}} {
		for _, mode := range []string{"monitor", "monitor+auto"} {
			b.Run(rc.name+"/"+mode, func(b *testing.B) {
				var bare, probed probeRun
				add := func(acc *probeRun, r probeRun) {
					acc.items += r.items
					acc.elapsed += r.elapsed
					acc.cpu += r.cpu
					acc.observed += r.observed
					acc.dropped += r.dropped
				}
				for i := 0; bare.items < b.N; i++ {
					runtime.GC()
					n := min(rc.round, b.N-bare.items)
					if i%2 == 0 {
						add(&bare, runProbed(b, n, rc.rate, "bare"))
						add(&probed, runProbed(b, n, rc.rate, mode))
					} else {
						add(&probed, runProbed(b, n, rc.rate, mode))
						add(&bare, runProbed(b, n, rc.rate, "bare"))
					}
				}
				bareRate := float64(bare.items) / bare.elapsed.Seconds()
				probedRate := float64(probed.items) / probed.elapsed.Seconds()
				b.ReportMetric(bareRate, "bare-items/s")
				b.ReportMetric(probedRate, "probed-items/s")
				b.ReportMetric(100*(1-probedRate/bareRate), "cost-%")
				b.ReportMetric(100*(float64(probed.cpu)/float64(bare.cpu)-1), "cpu-%")
				b.ReportMetric(float64(probed.dropped), "dropped")
			})
		}
	}
}

// benchEvents returns n call ends as a run at 100,000 events/s would produce them: 10 µs
// apart from t0, latencies spread from 1 ms to about 1 s, 2% 429s (half with Retry-After),
// 1% 503s, some retries.
func benchEvents(n int) []engine.Event {
	evs := make([]engine.Event, n)
	for i := range evs {
		ev := engine.Event{Kind: engine.CallEnd, At: wt0.Add(time.Duration(i) * 10 * time.Microsecond),
			Attempt: 1, InFlight: 1 + i%16, Status: 200, Verdict: engine.OK,
			Latency: time.Millisecond + time.Duration((i*7919)%1000)*time.Duration(1+i%7)*time.Millisecond/7}
		switch {
		case i%50 == 0:
			ev.Status, ev.Verdict, ev.Attempt = 429, engine.Retry, 2
			if i%100 == 0 {
				ev.RetryAfter = time.Second
			}
		case i%100 == 1:
			ev.Status, ev.Verdict, ev.Message = 503, engine.Retry, "503 Service Unavailable"
		}
		evs[i] = ev
	}
	return evs
}

// BenchmarkObserve measures one event through each observer (ns/event), fed a run at
// 100,000 events/s of virtual time so that seconds and windows roll over as they would.
//
//	go test -run '^$' -bench Observe -count 3 ./probes/
func BenchmarkObserve(b *testing.B) {
	const span = 1 << 16
	evs := benchEvents(span)
	last := evs[span-1].At.Sub(wt0) + 10*time.Microsecond
	for _, oc := range []struct {
		name string
		new  func() func(engine.Event)
	}{
		{"Windows", func() func(engine.Event) { return probes.NewWindows(probes.DefaultWindow, 24).Observe }},
		{"Series", func() func(engine.Event) { return probes.NewSeries().Observe }},
		{"Monitor", func() func(engine.Event) { return probes.NewMonitor(probes.AdvisorConfig{}, false).Observe }},
		{"Monitor+auto", func() func(engine.Event) { return probes.NewMonitor(probes.AdvisorConfig{}, true).Observe }},
	} {
		b.Run(oc.name, func(b *testing.B) {
			observe := oc.new()
			b.ReportAllocs()
			i := 0
			var shift time.Duration
			for b.Loop() {
				ev := evs[i]
				ev.At = ev.At.Add(shift)
				observe(ev)
				if i++; i == span {
					i, shift = 0, shift+last
				}
			}
		})
	}
}
