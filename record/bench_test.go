package record_test

// Benchmarks of --record and of `throttle replay --headless`: what recording costs a run at
// 50,000 calls/s, and how long a million-call recording takes to read and summarise.
//
//	go test -run '^$' -bench . -benchtime 1x -count 5 ./record/
//
// They are an external test package because replay imports record.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/enginetest"
	"github.com/throttle-dev/throttle/record"
	"github.com/throttle-dev/throttle/replay"
)

// cpuTime returns the CPU time, user and system, this process has used so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// overheadRun is what one run of BenchmarkRecordOverhead measured.
type overheadRun struct {
	calls   int64
	wall    time.Duration
	cpu     time.Duration
	bytes   int64 // size of the recording; 0 when not recording
	dropped int64 // events the recorder missed
}

// runRecorded runs n items through enginetest.Noop with set, rows to io.Discard,
// recording the run to a file in dir when on. Wall and CPU time cover the run and, when on,
// the recorder's start and close (its last flush); reading the recording back to check it is
// left out.
func runRecorded(b *testing.B, n int, set engine.Settings, on bool, dir string) overheadRun {
	b.Helper()
	e, err := engine.New(engine.Config{Settings: set, Adapter: enginetest.Noop,
		Source: engine.NewLineReader(enginetest.Lines(n), false), Total: int64(n), Results: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "run.rec")
	// The previous run's garbage (a recording read back) must not be collected on this run's
	// clock.
	runtime.GC()
	b.StartTimer()
	cpu0, t0 := cpuTime(b), time.Now()
	var rec *record.Recorder
	if on {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		rec, err = record.Start(f, record.Header{Adapter: "noop", Total: int64(n), Settings: record.SettingsOf(set)}, e)
		if err != nil {
			b.Fatal(err)
		}
	}
	sum, err := e.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if rec != nil {
		if err := rec.Close(sum); err != nil {
			b.Fatal(err)
		}
	}
	r := overheadRun{calls: sum.Calls, wall: time.Since(t0), cpu: cpuTime(b) - cpu0}
	b.StopTimer()
	if sum.OK != int64(n) || sum.Calls != int64(n) {
		b.Fatalf("%d ok in %d calls, want %d in %d", sum.OK, sum.Calls, n, n)
	}
	if !on {
		return r
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	r.bytes = fi.Size()
	got, err := record.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	r.dropped = got.Dropped
	// Every call is in the recording or counted as missed, and the recording is complete.
	if got.Cut || got.End == nil || int64(len(got.Calls))+got.Dropped < sum.Calls || int64(len(got.Calls)) > sum.Calls {
		b.Fatalf("recording of %d calls: %d calls, %d missed, cut %v", sum.Calls, len(got.Calls), got.Dropped, got.Cut)
	}
	return r
}

// add adds r's figures to o's.
func (o *overheadRun) add(r overheadRun) {
	o.calls += r.calls
	o.wall += r.wall
	o.cpu += r.cpu
	o.bytes += r.bytes
	o.dropped += r.dropped
}

func (o overheadRun) perSecond() float64 { return float64(o.calls) / o.wall.Seconds() }

func (o overheadRun) cpuPerCall() float64 { return float64(o.cpu.Nanoseconds()) / float64(o.calls) }

// pairedRuns alternates which of a pair runs first, across the -count runs too (each of
// which is one iteration with -benchtime 1x), so that neither always has the warmer start.
var pairedRuns int

// BenchmarkRecordOverhead measures what --record costs a run: runs through an adapter that
// answers at once, rows to io.Discard, with the recorder off and on.
//
// "rate50k" caps the run at 50,000 calls/s (parallelism 64, burst 64) for 100,000 items, two
// seconds, long enough for the recorder's once-a-second flushes and snapshots to count: the
// issue's goal is that recording costs under 3% of the calls/s there, and that the recorder
// misses no event. "unthrottled" runs 500,000 items as fast as the engine can, so that the
// recorder's CPU cost shows in full instead of hiding in the idle time a rate cap leaves.
//
// "off" and "on" report calls/s (wall clock: the run plus the recorder's start and close),
// cpu-ns/call (user and system time of the whole process, getrusage), B/call (the
// recording's size) and missed/op (events the recorder's buffer dropped). On a noisy machine
// two separate medians differ by more than the 3% to be judged, so "paired" runs off and on
// back to back in each iteration and reports loss-% (the calls/s recording costs) and
// extra-cpu-ns/call.
//
//	go test -run '^$' -bench RecordOverhead -benchtime 1x -count 5 ./record/
func BenchmarkRecordOverhead(b *testing.B) {
	for _, c := range []struct {
		name  string
		items int
		set   engine.Settings
	}{
		{"rate50k", 100_000, engine.Settings{Parallelism: 64, Rate: 50_000, Burst: 64}},
		{"unthrottled", 500_000, engine.Settings{Parallelism: 64, Burst: 64}},
	} {
		// At the cap the recorder has time to spare: a missed event there is a defect, not a
		// figure.
		checkMissed := func(b *testing.B, on overheadRun) {
			if c.set.Rate > 0 && on.dropped > 0 {
				b.Errorf("the recorder missed %d events at %v calls/s", on.dropped, c.set.Rate)
			}
		}
		for _, mode := range []string{"off", "on"} {
			b.Run(c.name+"/"+mode, func(b *testing.B) {
				dir := b.TempDir()
				var total overheadRun
				b.StopTimer() // runRecorded times the run alone
				for range b.N {
					total.add(runRecorded(b, c.items, c.set, mode == "on", dir))
				}
				b.ReportMetric(total.perSecond(), "calls/s")
				b.ReportMetric(total.cpuPerCall(), "cpu-ns/call")
				if mode == "on" {
					b.ReportMetric(float64(total.bytes)/float64(total.calls), "B/call")
					b.ReportMetric(float64(total.dropped)/float64(b.N), "missed/op")
					checkMissed(b, total)
				}
			})
		}
		b.Run(c.name+"/paired", func(b *testing.B) {
			dir := b.TempDir()
			var off, on overheadRun
			b.StopTimer()
			for range b.N {
				pairedRuns++
				for _, rec := range []bool{pairedRuns%2 == 0, pairedRuns%2 == 1} {
					r := runRecorded(b, c.items, c.set, rec, dir)
					if rec {
						on.add(r)
					} else {
						off.add(r)
					}
				}
			}
			b.ReportMetric(100*(1-on.perSecond()/off.perSecond()), "loss-%")
			b.ReportMetric(on.cpuPerCall()-off.cpuPerCall(), "extra-cpu-ns/call")
			checkMissed(b, on)
		})
	}
}

// millionCalls is the size of the recording BenchmarkReadMillion reads.
const millionCalls = 1_000_000

// millionRecording returns the path of a recording of a run of a million calls through
// enginetest.Noop, unthrottled. Making one takes a few seconds, so it is kept in os.TempDir()
// under a name that carries the format version and reused by later runs; delete it to make
// a new one.
func millionRecording(b *testing.B) string {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("throttle-bench-%d-calls-v%d.rec", millionCalls, record.Version))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	// Written under a temporary name and renamed when complete and checked, so that an
	// interrupted or concurrent run never leaves a short recording under the cached name.
	f, err := os.CreateTemp(os.TempDir(), "throttle-bench-*.rec")
	if err != nil {
		b.Fatal(err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // after the rename, a no-op
	set := engine.Settings{Parallelism: 64, Burst: 64}
	e, err := engine.New(engine.Config{Settings: set, Adapter: enginetest.Noop,
		Source: engine.NewLineReader(enginetest.Lines(millionCalls), false), Total: millionCalls, Results: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	rec, err := record.Start(f, record.Header{Adapter: "noop", Total: millionCalls, Settings: record.SettingsOf(set)}, e)
	if err != nil {
		b.Fatal(err)
	}
	sum, err := e.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if err := rec.Close(sum); err != nil {
		b.Fatal(err)
	}
	got, err := record.Open(tmp)
	if err != nil {
		b.Fatal(err)
	}
	if len(got.Calls) != millionCalls || got.Dropped != 0 || got.End == nil {
		b.Fatalf("made a recording of %d calls (%d missed, complete %v), want %d", len(got.Calls), got.Dropped, got.End != nil, millionCalls)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkReadMillion measures what `throttle replay FILE --headless` does with a recording
// of a million calls: read it, compute its summary and its per-minute table. The goal is
// under 3 s. It also reports the recording's bytes per call.
//
// The calls are those of an adapter that answers at once: their latencies are a few
// microseconds, so a recording of a real target, whose latencies and offsets have more
// digits, is somewhat larger per call.
//
//	go test -run '^$' -bench ReadMillion -benchtime 1x -count 5 ./record/
func BenchmarkReadMillion(b *testing.B) {
	path := millionRecording(b)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec, err := record.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		sum := replay.Summarize(rec)
		mins := replay.Minutes(rec)
		var calls int64
		for _, m := range mins {
			calls += m.Calls
		}
		if sum.Calls != millionCalls || calls != millionCalls || sum.OK != millionCalls || sum.Latency.Calls != millionCalls {
			b.Fatalf("%s: summary of %d calls (%d ok, latency over %d), minutes of %d; want %d (delete the file to make it anew)",
				path, sum.Calls, sum.OK, sum.Latency.Calls, calls, millionCalls)
		}
	}
	b.ReportMetric(float64(fi.Size())/millionCalls, "B/call")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/replay")
}
