package probes_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// wt0 is a window boundary (a multiple of 5 s since the zero time): the tests' windows start
// at wt0, wt0+5s, …
var wt0 = time.Unix(1_800_000_000, 0)

// at is the instant d after wt0.
func at(d time.Duration) time.Time { return wt0.Add(d) }

// okEnd is a successful call end at t with the given latency.
func okEnd(t time.Time, latency time.Duration) engine.Event {
	return engine.Event{Kind: engine.CallEnd, At: t, Attempt: 1, Latency: latency, Status: 200, Verdict: engine.OK}
}

// okEndIn is okEnd of a call that started with inflight calls in flight, itself included.
func okEndIn(t time.Time, latency time.Duration, inflight int) engine.Event {
	ev := okEnd(t, latency)
	ev.InFlight = inflight
	return ev
}

// startAt is a call start at t that saw inflight calls in flight, itself included.
func startAt(t time.Time, inflight int) engine.Event {
	return engine.Event{Kind: engine.CallStart, At: t, Attempt: 1, InFlight: inflight}
}

// within reports whether got is within 0.1% of want: HdrHistogram at 3 significant digits
// is exact to that.
func within(got, want time.Duration) bool {
	diff := got - want
	return diff >= -want/1000 && diff <= want/1000
}

// checkLatencies compares percentiles against their exact values with a 0.1% tolerance.
func checkLatencies(t *testing.T, what string, p50, p95, p99, maxv time.Duration, want [4]time.Duration) {
	t.Helper()
	for i, got := range []time.Duration{p50, p95, p99, maxv} {
		name := [...]string{"P50", "P95", "P99", "Max"}[i]
		if !within(got, want[i]) {
			t.Errorf("%s.%s = %v, want %v (±0.1%%)", what, name, got, want[i])
		}
	}
}

// TestWindowsPercentilesOfKnownLatencies: a fixed set of latencies per window gives exact
// percentiles in each window, and their union gives exact percentiles over the run.
func TestWindowsPercentilesOfKnownLatencies(t *testing.T) {
	ws := probes.NewWindows(5*time.Second, 10)
	// Window 0: 1..100 ms, one each. Window 1: 1..1000 ms, one each, fed in reverse order.
	for i := 1; i <= 100; i++ {
		ws.Observe(okEnd(at(time.Duration(i)*10*time.Millisecond), time.Duration(i)*time.Millisecond))
	}
	for i := 1000; i >= 1; i-- {
		ws.Observe(okEnd(at(5*time.Second+time.Duration(i)*time.Millisecond), time.Duration(i)*time.Millisecond))
	}
	got := ws.Recent(at(10 * time.Second))
	if len(got) != 2 {
		t.Fatalf("Recent(t0+10s) = %d windows, want 2", len(got))
	}
	ms := time.Millisecond
	for i, tc := range []struct {
		start    time.Time
		calls    int64
		want     [4]time.Duration
		mean     time.Duration
		meanNote string
	}{
		{at(0), 100, [4]time.Duration{50 * ms, 95 * ms, 99 * ms, 100 * ms}, 50500 * time.Microsecond, "mean of 1..100 ms"},
		{at(5 * time.Second), 1000, [4]time.Duration{500 * ms, 950 * ms, 990 * ms, 1000 * ms}, 500500 * time.Microsecond, "mean of 1..1000 ms"},
	} {
		w := got[i]
		what := fmt.Sprintf("Recent()[%d]", i)
		if !w.Start.Equal(tc.start) || w.Length != 5*time.Second {
			t.Errorf("%s spans %v+%v, want %v+5s", what, w.Start, w.Length, tc.start)
		}
		if w.Calls != tc.calls || w.OK != tc.calls {
			t.Errorf("%s.Calls, OK = %d, %d, want %d, %d", what, w.Calls, w.OK, tc.calls, tc.calls)
		}
		checkLatencies(t, what, w.P50, w.P95, w.P99, w.Max, tc.want)
		if w.Mean != tc.mean || w.MeanOK != tc.mean {
			t.Errorf("%s.Mean, MeanOK = %v, %v, want %v (%s)", what, w.Mean, w.MeanOK, tc.mean, tc.meanNote)
		}
	}

	// Over the run: 1..100 ms twice and 101..1000 ms once, 1,100 values. The 550th is
	// 100 + (550-200) = 450 ms, the 1,045th 945 ms, the 1,089th 989 ms.
	run := ws.Run()
	if run.Calls != 1100 {
		t.Errorf("Run().Calls = %d, want 1100", run.Calls)
	}
	checkLatencies(t, "Run()", run.P50, run.P95, run.P99, run.Max, [4]time.Duration{450 * ms, 945 * ms, 989 * ms, 1000 * ms})
}

// TestWindowsRunOfNothing: a fresh collector has no windows and an empty run.
func TestWindowsRunOfNothing(t *testing.T) {
	ws := probes.NewWindows(5*time.Second, 10)
	if got := ws.Recent(at(time.Hour)); len(got) != 0 {
		t.Errorf("Recent() before any event = %d windows, want 0", len(got))
	}
	if got := ws.Run(); got != (probes.Stats{}) {
		t.Errorf("Run() before any event = %+v, want zero", got)
	}
}

// TestClassify: each outcome falls in one class, the way the engine reports it.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   engine.Event
		want probes.Class
	}{
		{"200 ok", engine.Event{Status: 200, Verdict: engine.OK}, probes.ClassOK},
		{"ok without a status (non-HTTP adapter)", engine.Event{Verdict: engine.OK}, probes.ClassOK},
		{"500 the adapter accepted", engine.Event{Status: 500, Verdict: engine.OK}, probes.ClassOK},
		{"429 to retry", engine.Event{Status: 429, Verdict: engine.Retry}, probes.ClassTooMany},
		{"429 with Retry-After", engine.Event{Status: 429, Verdict: engine.Retry, RetryAfter: 2 * time.Second}, probes.ClassTooMany},
		{"429 out of retries", engine.Event{Status: 429, Verdict: engine.Fail}, probes.ClassTooMany},
		{"engine timeout", engine.Event{Err: true, Verdict: engine.Retry, Message: "timeout after 30s"}, probes.ClassTimeout},
		{"engine timeout, last attempt", engine.Event{Err: true, Verdict: engine.Fail, Message: "timeout after 2s"}, probes.ClassTimeout},
		{"connection refused", engine.Event{Err: true, Verdict: engine.Retry, Message: "dial tcp 10.0.0.1:443: connect: connection refused"}, probes.ClassConnection},
		{"reset", engine.Event{Err: true, Verdict: engine.Retry, Message: "read: connection reset by peer"}, probes.ClassConnection},
		{"permanent error", engine.Event{Err: true, Verdict: engine.Fail, Message: "adapter: bad template"}, probes.ClassConnection},
		{"503 to retry", engine.Event{Status: 503, Verdict: engine.Retry, Message: "503 Service Unavailable"}, probes.Class5xx},
		{"500 failed", engine.Event{Status: 500, Verdict: engine.Fail}, probes.Class5xx},
		{"599", engine.Event{Status: 599, Verdict: engine.Fail}, probes.Class5xx},
		{"404", engine.Event{Status: 404, Verdict: engine.Fail}, probes.Class4xx},
		{"408 to retry", engine.Event{Status: 408, Verdict: engine.Retry}, probes.Class4xx},
		{"400", engine.Event{Status: 400, Verdict: engine.Fail}, probes.Class4xx},
		{"200 the adapter failed (error in the body)", engine.Event{Status: 200, Verdict: engine.Fail}, probes.ClassOther},
		{"302 failed", engine.Event{Status: 302, Verdict: engine.Fail}, probes.ClassOther},
		{"no status, failed", engine.Event{Verdict: engine.Fail, Message: "llm: refused"}, probes.ClassOther},
		{"600", engine.Event{Status: 600, Verdict: engine.Fail}, probes.ClassOther},
	} {
		tc.ev.Kind = engine.CallEnd
		if got := probes.Classify(tc.ev); got != tc.want {
			t.Errorf("%s: Classify(%+v) = %d, want %d", tc.name, tc.ev, got, tc.want)
		}
	}
}

// TestWindowsCountsByClass: a window counts its call ends by class, 429s with a Retry-After
// separately, retries by attempt, and its rates and shares follow from the counts.
func TestWindowsCountsByClass(t *testing.T) {
	ws := probes.NewWindows(5*time.Second, 10)
	ms := time.Millisecond
	type row struct {
		n  int
		ev engine.Event
	}
	rows := []row{
		{50, engine.Event{Status: 200, Verdict: engine.OK, Attempt: 1}},
		{6, engine.Event{Status: 200, Verdict: engine.OK, Attempt: 2}},
		{10, engine.Event{Status: 429, Verdict: engine.Retry, Attempt: 1}},
		{4, engine.Event{Status: 429, Verdict: engine.Retry, Attempt: 2, RetryAfter: time.Second}},
		{3, engine.Event{Err: true, Verdict: engine.Retry, Attempt: 1, Message: "timeout after 30s"}},
		{2, engine.Event{Err: true, Verdict: engine.Retry, Attempt: 3, Message: "dial tcp: connection refused"}},
		{7, engine.Event{Status: 503, Verdict: engine.Retry, Attempt: 1}},
		{5, engine.Event{Status: 404, Verdict: engine.Fail, Attempt: 1}},
		{1, engine.Event{Status: 200, Verdict: engine.Fail, Attempt: 1}},
	}
	i := 0
	for _, r := range rows {
		for range r.n {
			ev := r.ev
			ev.Kind, ev.At, ev.Latency = engine.CallEnd, at(time.Duration(i)*ms), 10*ms
			ws.Observe(ev)
			i++
		}
	}
	// Events of other kinds count nowhere.
	ws.Observe(engine.Event{Kind: engine.HoldStart, At: at(time.Second), Until: at(2 * time.Second)})
	ws.Observe(engine.Event{Kind: engine.Warning, At: at(time.Second), Message: "open files"})
	ws.Observe(engine.Event{Kind: engine.ControlChange, At: at(time.Second)})

	got := ws.Recent(at(5 * time.Second))
	if len(got) != 1 {
		t.Fatalf("Recent(t0+5s) = %d windows, want 1", len(got))
	}
	w := got[0]
	want := probes.Window{Start: at(0), Length: 5 * time.Second,
		Calls: 88, OK: 56, TooMany: 14, TooManyTimed: 4, Timeouts: 3, Connection: 2, Server5xx: 7, Client4xx: 5, Other: 1,
		Retries: 6 + 4 + 2,
		// The 429s with a Retry-After at 66-69ms hold the pool until 1.069s, the HoldStart
		// from 1s to 2s, and the calls come back a mean latency (10ms) after: 66ms to 2.01s.
		Held: 2010*time.Millisecond - 66*time.Millisecond, OKFree: 56}
	w.P50, w.P95, w.P99, w.Max, w.Mean, w.MeanOK = 0, 0, 0, 0, 0, 0
	if w != want {
		t.Errorf("window counts = %+v\nwant %+v", w, want)
	}
	if got, want := w.Errors(), int64(3+2+7+5+1); got != want {
		t.Errorf("Errors() = %d, want %d", got, want)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"TooManyShare()", w.TooManyShare(), 14.0 / 88},
		{"ErrorShare()", w.ErrorShare(), 18.0 / 88},
		{"PerSecond(Calls)", w.PerSecond(w.Calls), 88.0 / 5},
		{"PerSecond(Retries)", w.PerSecond(w.Retries), 12.0 / 5},
		{"empty Window{}.PerSecond(5)", probes.Window{}.PerSecond(5), 0},
		{"empty Window{}.TooManyShare()", probes.Window{}.TooManyShare(), 0},
		{"empty Window{}.ErrorShare()", probes.Window{}.ErrorShare(), 0},
	} {
		if diff := c.got - c.want; diff > 1e-12 || diff < -1e-12 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestWindowsInFlightAndMeans: InFlight is the mean of what the window's calls saw in flight
// when they started (carried by their CallEnd; CallStart events count nowhere); Mean covers
// every call end, MeanOK only the successful ones.
func TestWindowsInFlightAndMeans(t *testing.T) {
	ms := time.Millisecond
	tooMany := func(t time.Time, inflight int) engine.Event {
		return engine.Event{Kind: engine.CallEnd, At: t, Latency: ms, Status: 429, Verdict: engine.Retry, InFlight: inflight}
	}
	for _, tc := range []struct {
		name           string
		events         []engine.Event
		windows        int
		inflight       float64
		calls, ok      int64
		mean, meanOK   time.Duration
		p50, p95, maxv time.Duration
	}{
		{
			name:   "starts alone open no window",
			events: []engine.Event{startAt(at(0), 1), startAt(at(ms), 2), startAt(at(2*ms), 3), startAt(at(3*ms), 4)},
		},
		{
			name: "in flight from the call ends; starts ignored",
			events: []engine.Event{
				startAt(at(0), 40), startAt(at(ms), 40),
				okEndIn(at(10*ms), 10*ms, 1), okEndIn(at(20*ms), 10*ms, 2), okEndIn(at(30*ms), 10*ms, 3), okEndIn(at(40*ms), 10*ms, 4),
			},
			windows: 1, inflight: 2.5, calls: 4, ok: 4,
			mean: 10 * ms, meanOK: 10 * ms, p50: 10 * ms, p95: 10 * ms, maxv: 10 * ms,
		},
		{
			name: "fast 429s do not make the server look quick",
			events: []engine.Event{
				okEndIn(at(100*ms), 100*ms, 1), okEndIn(at(200*ms), 200*ms, 2), tooMany(at(300*ms), 3), tooMany(at(300*ms), 3),
			},
			windows: 1, inflight: 9.0 / 4, calls: 4, ok: 2,
			mean: (100 + 200 + 1 + 1) * ms / 4, meanOK: 150 * ms,
			p50: ms, p95: 200 * ms, maxv: 200 * ms,
		},
		{
			name: "errors neither",
			events: []engine.Event{
				okEndIn(at(0), 40*ms, 1),
				{Kind: engine.CallEnd, At: at(ms), Latency: 30 * time.Second, Err: true, Verdict: engine.Retry, Message: "timeout after 30s", InFlight: 1},
			},
			windows: 1, inflight: 1, calls: 2, ok: 1,
			mean: (40*ms + 30*time.Second) / 2, meanOK: 40 * ms,
			p50: 40 * ms, p95: 30 * time.Second, maxv: 30 * time.Second,
		},
		{
			name: "no ok call: MeanOK is zero",
			events: []engine.Event{
				{Kind: engine.CallEnd, At: at(0), Latency: 20 * ms, Status: 503, Verdict: engine.Retry, InFlight: 7},
			},
			windows: 1, inflight: 7, calls: 1, mean: 20 * ms, p50: 20 * ms, p95: 20 * ms, maxv: 20 * ms,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := probes.NewWindows(5*time.Second, 10)
			for _, ev := range tc.events {
				ws.Observe(ev)
			}
			got := ws.Recent(at(5 * time.Second))
			if len(got) != tc.windows {
				t.Fatalf("Recent(t0+5s) = %d windows, want %d", len(got), tc.windows)
			}
			if tc.windows == 0 {
				return
			}
			w := got[0]
			if d := w.InFlight - tc.inflight; d > 1e-12 || d < -1e-12 {
				t.Errorf("InFlight = %v, want %v", w.InFlight, tc.inflight)
			}
			if w.Calls != tc.calls || w.OK != tc.ok {
				t.Errorf("Calls, OK = %d, %d, want %d, %d", w.Calls, w.OK, tc.calls, tc.ok)
			}
			if w.Mean != tc.mean || w.MeanOK != tc.meanOK {
				t.Errorf("Mean, MeanOK = %v, %v, want %v, %v", w.Mean, w.MeanOK, tc.mean, tc.meanOK)
			}
			if !within(w.P50, tc.p50) || !within(w.P95, tc.p95) || !within(w.Max, tc.maxv) {
				t.Errorf("P50, P95, Max = %v, %v, %v, want %v, %v, %v", w.P50, w.P95, w.Max, tc.p50, tc.p95, tc.maxv)
			}
		})
	}
}

// TestWindowsCloseOnTime: windows close when their time is up, whether or not an event comes;
// a gap gives empty windows; each window's statistics are its own.
func TestWindowsCloseOnTime(t *testing.T) {
	ms, s := time.Millisecond, time.Second
	ws := probes.NewWindows(5*s, 100)
	ws.Observe(okEndIn(at(s), 800*ms, 3))
	ws.Observe(okEndIn(at(4999*ms), 600*ms, 3))

	type want struct {
		start      time.Time
		calls      int64
		p95, maxv  time.Duration
		inflight   float64
		meanOfCall time.Duration
	}
	steps := []struct {
		name string
		feed []engine.Event
		now  time.Time
		want []want
	}{
		{"before the first window ends", nil, at(4999 * ms), nil},
		{"the first window ends at its boundary", nil, at(5 * s),
			[]want{{at(0), 2, 800 * ms, 800 * ms, 3, 700 * ms}}},
		{"a gap gives empty windows", nil, at(22 * s),
			[]want{{at(0), 2, 800 * ms, 800 * ms, 3, 700 * ms}, {at(5 * s), 0, 0, 0, 0, 0}, {at(10 * s), 0, 0, 0, 0, 0}, {at(15 * s), 0, 0, 0, 0, 0}}},
		{"an event after the gap lands in its own window, with its own latencies",
			[]engine.Event{okEndIn(at(20*s), 5*ms, 1), okEndIn(at(24*s), 7*ms, 1)}, at(25 * s),
			[]want{{at(0), 2, 800 * ms, 800 * ms, 3, 700 * ms}, {at(5 * s), 0, 0, 0, 0, 0}, {at(10 * s), 0, 0, 0, 0, 0}, {at(15 * s), 0, 0, 0, 0, 0},
				{at(20 * s), 2, 7 * ms, 7 * ms, 1, 6 * ms}}},
		{"an event on a boundary opens the next window",
			[]engine.Event{okEnd(at(30*s), 9*ms)}, at(34 * s),
			[]want{{at(0), 2, 800 * ms, 800 * ms, 3, 700 * ms}, {at(5 * s), 0, 0, 0, 0, 0}, {at(10 * s), 0, 0, 0, 0, 0}, {at(15 * s), 0, 0, 0, 0, 0},
				{at(20 * s), 2, 7 * ms, 7 * ms, 1, 6 * ms}, {at(25 * s), 0, 0, 0, 0, 0}}},
	}
	for _, st := range steps {
		for _, ev := range st.feed {
			ws.Observe(ev)
		}
		got := ws.Recent(st.now)
		if len(got) != len(st.want) {
			t.Errorf("%s: Recent(t0+%v) = %d windows, want %d", st.name, st.now.Sub(wt0), len(got), len(st.want))
			continue
		}
		for i, w := range st.want {
			g := got[i]
			if !g.Start.Equal(w.start) || g.Calls != w.calls || !within(g.P95, w.p95) || !within(g.Max, w.maxv) ||
				g.InFlight != w.inflight || g.Mean != w.meanOfCall {
				t.Errorf("%s: Recent(t0+%v)[%d] = start t0+%v, %d calls, p95 %v, max %v, in flight %v, mean %v; want t0+%v, %d, %v, %v, %v, %v",
					st.name, st.now.Sub(wt0), i, g.Start.Sub(wt0), g.Calls, g.P95, g.Max, g.InFlight, g.Mean,
					w.start.Sub(wt0), w.calls, w.p95, w.maxv, w.inflight, w.meanOfCall)
			}
		}
	}
	// The run's latency keeps every call.
	if run := ws.Run(); run.Calls != 5 || !within(run.Max, 800*ms) {
		t.Errorf("Run() = %d calls, max %v, want 5 calls, max 800ms", run.Calls, run.Max)
	}
}

// TestWindowsKeep: only the last keep closed windows are kept, oldest first.
func TestWindowsKeep(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		keep, windows int
		first         time.Duration // start of the oldest window kept, after t0
		n             int
	}{
		{3, 2, 0, 2},
		{3, 3, 0, 3},
		{3, 7, 20 * s, 3},
		{1, 7, 30 * s, 1},
		{0, 7, 30 * s, 1}, // at least one
	} {
		ws := probes.NewWindows(5*s, tc.keep)
		for i := range tc.windows {
			for range i + 1 {
				ws.Observe(okEnd(at(time.Duration(i)*5*s+s), time.Duration(i+1)*time.Millisecond))
			}
		}
		got := ws.Recent(at(time.Duration(tc.windows) * 5 * s))
		if len(got) != tc.n {
			t.Errorf("NewWindows(5s, %d) after %d windows: Recent() = %d windows, want %d", tc.keep, tc.windows, len(got), tc.n)
			continue
		}
		for i, w := range got {
			start := at(tc.first + time.Duration(i)*5*s)
			idx := int(w.Start.Sub(wt0) / (5 * s))
			if !w.Start.Equal(start) || w.Calls != int64(idx+1) || !within(w.Max, time.Duration(idx+1)*time.Millisecond) {
				t.Errorf("NewWindows(5s, %d) after %d windows: Recent()[%d] = t0+%v with %d calls, max %v; want t0+%v with %d calls",
					tc.keep, tc.windows, i, w.Start.Sub(wt0), w.Calls, w.Max, start.Sub(wt0), idx+1)
			}
		}
	}
}

// TestWindowsConcurrent hammers one collector from several feeders while readers pull; run
// under -race. Every call end is counted once.
func TestWindowsConcurrent(t *testing.T) {
	const feeders, per = 4, 5000
	ws := probes.NewWindows(time.Second, 1000)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_ = ws.Recent(at(0))
				_ = ws.Run()
			}
		}
	}()
	for f := range feeders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				t := at(time.Duration(i) * time.Millisecond)
				ws.Observe(okEndIn(t, time.Duration(i%100+1)*time.Millisecond, f+1))
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	var calls int64
	// Feeders reach t0+5s; every window up to t0+10s is closed and kept.
	for _, w := range ws.Recent(at(10 * time.Second)) {
		calls += w.Calls
	}
	if calls != feeders*per {
		t.Errorf("calls over all windows = %d, want %d", calls, feeders*per)
	}
	if run := ws.Run(); run.Calls != feeders*per {
		t.Errorf("Run().Calls = %d, want %d", run.Calls, feeders*per)
	}
}

// TestWindowsMeasureAwayFromHolds: a 429's Retry-After (or a HoldStart) holds the pool; the
// window says how long (with the refill of a mean latency after), and counts apart the ok
// calls that ended outside the holds, so that what the target accepted is measured over the
// time the pool could call.
func TestWindowsMeasureAwayFromHolds(t *testing.T) {
	ws := probes.NewWindows(5*time.Second, 10)
	ms := time.Millisecond
	ok := func(at time.Duration) engine.Event {
		return engine.Event{Kind: engine.CallEnd, At: wt0.Add(at), Status: 200, Verdict: engine.OK, Latency: 100 * ms}
	}
	ws.Observe(ok(100 * ms)) // the run's first call, started at the window's start
	ws.Observe(engine.Event{Kind: engine.CallEnd, At: wt0.Add(time.Second), Status: 429, Verdict: engine.Retry, RetryAfter: time.Second, Latency: 100 * ms})
	ws.Observe(ok(1500 * ms)) // a call in flight when the hold began
	ws.Observe(engine.Event{Kind: engine.HoldStart, At: wt0.Add(3 * time.Second), Until: wt0.Add(3500 * ms)})
	ws.Observe(ok(2500 * ms))
	ws.Observe(ok(3200 * ms))
	ws.Observe(ok(4000 * ms))
	got := ws.Recent(wt0.Add(5 * time.Second))
	if len(got) != 1 {
		t.Fatalf("Recent = %d windows, want 1", len(got))
	}
	w := got[0]
	// The holds: 1s-2s and 3s-3.5s, each followed by the mean ok latency (100ms).
	if w.Held != 1700*ms || w.OK != 5 || w.OKFree != 3 {
		t.Errorf("window held %v with %d ok, %d outside the holds; want 1.7s, 5 and 3", w.Held, w.OK, w.OKFree)
	}
	if r, over := w.Accepted(); over != 3300*ms || r < 0.909 || r > 0.91 {
		t.Errorf("Accepted() = %v over %v, want 3 ok over 3.3s", r, over)
	}

	// A run that began mid-window: the time before its first call is not time it could call.
	ws = probes.NewWindows(5*time.Second, 10)
	ws.Observe(ok(3100 * ms))
	ws.Observe(ok(4000 * ms))
	if w := ws.Recent(wt0.Add(5 * time.Second))[0]; w.Held != 3*time.Second || w.OKFree != 2 {
		t.Errorf("a first window the run began 3s into: held %v, %d ok outside; want 3s and 2", w.Held, w.OKFree)
	}
}
