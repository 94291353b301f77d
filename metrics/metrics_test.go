package metrics_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/metrics"
)

// scripted answers each item by its text: "ok", "429", "503", "404", "timeout", "conn",
// "302", and "exit200" (an ok answer whose status is no HTTP status).
var scripted = engine.AdapterFunc(func(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	switch it.Line {
	case "ok":
		return engine.Outcome{Verdict: engine.OK, Status: 200}, nil
	case "429":
		return engine.Outcome{Verdict: engine.Retry, Status: 429, Message: "429 Too Many Requests"}, nil
	case "503":
		return engine.Outcome{Verdict: engine.Retry, Status: 503, Message: "503 Service Unavailable"}, nil
	case "404":
		return engine.Outcome{Verdict: engine.Fail, Status: 404, Message: "404 Not Found"}, nil
	case "timeout":
		return engine.Outcome{}, context.DeadlineExceeded
	case "conn":
		return engine.Outcome{}, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	case "302":
		return engine.Outcome{Verdict: engine.Fail, Status: 302, Message: "302 Found (not followed)"}, nil
	case "exit200":
		return engine.Outcome{Verdict: engine.OK, Status: 200}, nil
	}
	return engine.Outcome{}, engine.Permanent(errors.New("unscripted item " + it.Line))
})

func newEngine(t testing.TB, input string, total int64, a engine.Adapter, retries int) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 2, Burst: 1}, Retries: retries, MaxBackoff: time.Millisecond,
		Adapter: a, Source: engine.NewLineReader(strings.NewReader(input), false), Total: total, Results: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// families gathers the registry into a map by name, failing the test if it cannot.
func families(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	m := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		m[mf.GetName()] = mf
	}
	return m
}

// value returns the value of the series of name whose labels include want, and whether there
// is exactly one; for a histogram it is the sample count.
func value(m map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	var v float64
	n := 0
	for _, mt := range m[name].GetMetric() {
		labels := map[string]string{}
		for _, lp := range mt.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, w := range want {
			if labels[k] != w {
				match = false
			}
		}
		if !match {
			continue
		}
		n++
		switch {
		case mt.Counter != nil:
			v = mt.GetCounter().GetValue()
		case mt.Gauge != nil:
			v = mt.GetGauge().GetValue()
		case mt.Histogram != nil:
			v = float64(mt.GetHistogram().GetSampleCount())
		}
	}
	return v, n == 1
}

type want struct {
	name   string
	labels map[string]string
	value  float64
}

func check(t *testing.T, m map[string]*dto.MetricFamily, wants []want) {
	t.Helper()
	for _, w := range wants {
		got, ok := value(m, w.name, w.labels)
		if !ok {
			t.Errorf("%s%v: no single series", w.name, w.labels)
			continue
		}
		if got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
}

// TestCountsFollowTheRun runs one item of each outcome with one retry and checks every
// counter against what the script implies, the labels of control changes (a cluster's
// "host/ctl" is "ctl", an unknown origin "other"), and that the run's name is on every
// throttle_ series and on no Go or process one.
func TestCountsFollowTheRun(t *testing.T) {
	e := newEngine(t, "ok\n429\n503\n404\ntimeout\nconn\n302\n", 7, scripted, 1)
	o := metrics.New(e, metrics.Options{Job: "http · ids.txt"})
	for _, c := range []struct {
		n      int
		origin string
	}{{3, "tui"}, {4, "host-a/ctl"}, {2, "a-client-of-its-own"}} {
		if err := e.SetParallelism(c.n, c.origin); err != nil {
			t.Fatal(err)
		}
	}
	e.Note("auto", "a remark, not a change")
	sum, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o.Finish(sum)
	m := families(t, o.Registry())

	call := func(outcome, class string) map[string]string {
		return map[string]string{"outcome": outcome, "status_class": class}
	}
	check(t, m, []want{
		// ok once; 429, 503, timeout and conn twice (one retry); 404 and 302 once: 11 calls.
		{"throttle_calls_total", call("ok", "2xx"), 1},
		{"throttle_calls_total", call("429", "4xx"), 2},
		{"throttle_calls_total", call("5xx", "5xx"), 2},
		{"throttle_calls_total", call("4xx", "4xx"), 1},
		{"throttle_calls_total", call("timeout", "none"), 2},
		{"throttle_calls_total", call("connection", "none"), 2},
		{"throttle_calls_total", call("other", "3xx"), 1},
		{"throttle_call_duration_seconds", nil, 11},
		{"throttle_items_done_total", map[string]string{"result": "ok"}, 1},
		{"throttle_items_done_total", map[string]string{"result": "failed"}, 6},
		{"throttle_retries_total", nil, 4},
		{"throttle_items_remaining", nil, 0},
		{"throttle_inflight", nil, 0},
		{"throttle_waiting", nil, 0},
		{"throttle_parallelism_limit", nil, 2},
		{"throttle_rate_limit_per_second", nil, 0},
		{"throttle_pace_seconds", nil, 0},
		{"throttle_run_state", map[string]string{"state": "done"}, 1},
		{"throttle_run_state", map[string]string{"state": "running"}, 0},
		{"throttle_metrics_events_dropped_total", nil, 0},
		{"throttle_control_changes_total", map[string]string{"knob": "parallelism", "source": "tui"}, 1},
		{"throttle_control_changes_total", map[string]string{"knob": "parallelism", "source": "ctl"}, 1},
		{"throttle_control_changes_total", map[string]string{"knob": "parallelism", "source": "other"}, 1},
		{"throttle_control_changes_total", map[string]string{"knob": "state", "source": "engine"}, 1},
	})
	var calls float64
	for _, mt := range m["throttle_calls_total"].GetMetric() {
		calls += mt.GetCounter().GetValue()
	}
	if calls != float64(sum.Calls) {
		t.Errorf("throttle_calls_total sums to %v, the summary counts %d calls", calls, sum.Calls)
	}
	if n := len(m["throttle_control_changes_total"].GetMetric()); n != 4 {
		t.Errorf("throttle_control_changes_total has %d series, want 4 (start and notes are no changes)", n)
	}
	for name, mf := range m {
		job := ""
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == metrics.JobLabel {
					job = lp.GetValue()
				}
			}
			if throttle := strings.HasPrefix(name, "throttle_"); throttle != (job == "http · ids.txt") {
				t.Errorf("%s has %s=%q", name, metrics.JobLabel, job)
			}
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("no go_goroutines: the Go collector is missing")
	}

	// The exposition passes the linter promtool check metrics runs.
	problems, err := promlint.NewWithMetricFamilies(mapValues(m)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func mapValues(m map[string]*dto.MetricFamily) []*dto.MetricFamily {
	var out []*dto.MetricFamily
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestStatusNotHTTP: with an adapter whose status is an exit code, a status of 200 is no
// "2xx".
func TestStatusNotHTTP(t *testing.T) {
	e := newEngine(t, "exit200\n", 1, scripted, 0)
	o := metrics.New(e, metrics.Options{Job: "exec", StatusNotHTTP: true})
	sum, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o.Finish(sum)
	m := families(t, o.Registry())
	check(t, m, []want{{"throttle_calls_total", map[string]string{"outcome": "ok", "status_class": "none"}, 1}})
	if _, ok := value(m, "throttle_calls_total", map[string]string{"status_class": "2xx"}); ok {
		t.Error("an exit code counted as an HTTP 2xx")
	}
}

// gate holds every call until it is opened.
type gate struct {
	once sync.Once
	open chan struct{}
}

func (g *gate) Do(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	select {
	case <-g.open:
		return engine.Outcome{Verdict: engine.OK, Status: 200}, nil
	case <-ctx.Done():
		return engine.Outcome{}, ctx.Err()
	}
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// TestGaugesAreLive scrapes a run whose calls are held: the gauges show the calls in flight
// and the knobs as they are turned, remaining items count down from the total, and an input
// of unknown size has no throttle_items_remaining at all.
func TestGaugesAreLive(t *testing.T) {
	for _, total := range []int64{5, -1} {
		g := &gate{open: make(chan struct{})}
		e := newEngine(t, "a\nb\nc\nd\ne\n", total, g, 0)
		o := metrics.New(e, metrics.Options{Job: "j"})
		done := make(chan engine.Summary)
		go func() {
			sum, _ := e.Run(context.Background())
			done <- sum
		}()
		deadline := time.Now().Add(5 * time.Second)
		for e.Snapshot().InFlight < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := e.SetRate(50, 5, "ctl"); err != nil {
			t.Fatal(err)
		}
		if err := e.SetPace(1500*time.Millisecond, "ctl"); err != nil {
			t.Fatal(err)
		}
		m := families(t, o.Registry())
		check(t, m, []want{
			{"throttle_inflight", nil, 2},
			{"throttle_parallelism_limit", nil, 2},
			{"throttle_rate_limit_per_second", nil, 50},
			{"throttle_pace_seconds", nil, 1.5},
			{"throttle_run_state", map[string]string{"state": "running"}, 1},
		})
		remaining, ok := value(m, "throttle_items_remaining", nil)
		switch {
		case total < 0 && len(m["throttle_items_remaining"].GetMetric()) > 0:
			t.Errorf("total unknown: throttle_items_remaining = %v, want no series", remaining)
		case total >= 0 && (!ok || remaining != 5):
			t.Errorf("throttle_items_remaining = %v (present %v), want 5 while no row is written", remaining, ok)
		}
		if err := e.SetPace(0, "ctl"); err != nil {
			t.Fatal(err)
		}
		g.release()
		sum := <-done
		o.Finish(sum)
		m = families(t, o.Registry())
		check(t, m, []want{
			{"throttle_items_done_total", map[string]string{"result": "ok"}, 5},
			{"throttle_control_changes_total", map[string]string{"knob": "rate", "source": "ctl"}, 1},
			{"throttle_control_changes_total", map[string]string{"knob": "burst", "source": "ctl"}, 1},
			{"throttle_control_changes_total", map[string]string{"knob": "pace", "source": "ctl"}, 2},
		})
	}
}

// TestBackoffSeconds: four items each wait out exactly 300 ms (a 503 whose Retry-After is the
// floor of the wait, above the jittered backoff's 250 ms ceiling) with idle workers, so the
// retry queue holds 1.2 item-seconds; sampled every 10 ms the counter lands within a few
// samples of that.
func TestBackoffSeconds(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	a := engine.AdapterFunc(func(ctx context.Context, it engine.Item) (engine.Outcome, error) {
		mu.Lock()
		first := !seen[it.Line]
		seen[it.Line] = true
		mu.Unlock()
		if first {
			return engine.Outcome{Verdict: engine.Retry, Status: 503, RetryAfter: 300 * time.Millisecond, Message: "busy"}, nil
		}
		return engine.Outcome{Verdict: engine.OK, Status: 200}, nil
	})
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 4, Burst: 1}, Retries: 1, MaxBackoff: time.Second,
		Adapter: a, Source: engine.NewLineReader(strings.NewReader("a\nb\nc\nd\n"), false), Total: 4, Results: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	o := metrics.New(e, metrics.Options{Job: "j", SampleEvery: 10 * time.Millisecond})
	sum, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o.Finish(sum)
	got, _ := value(families(t, o.Registry()), "throttle_backoff_seconds_total", nil)
	t.Logf("throttle_backoff_seconds_total = %.3f", got)
	// Each item may be off by one sample either way; a descheduled sampler (-race, two CPUs)
	// stretches one sample over a longer interval, which the integral absorbs.
	if got < 1.0 || got > 1.6 {
		t.Errorf("throttle_backoff_seconds_total = %.3f, want 1.2 ± 0.2 (4 items × 300 ms) to +0.4", got)
	}
	if sum.Retries != 4 || sum.OK != 4 {
		t.Fatalf("run: %d retries, %d ok; want 4 and 4", sum.Retries, sum.OK)
	}
}

// TestFinishTwice: a second Finish changes nothing and does not block.
func TestFinishTwice(t *testing.T) {
	e := newEngine(t, "ok\n", 1, scripted, 0)
	o := metrics.New(e, metrics.Options{Job: "j"})
	sum, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o.Finish(sum)
	o.Finish(engine.Summary{})
	check(t, families(t, o.Registry()), []want{{"throttle_items_done_total", map[string]string{"result": "ok"}, 1}})
}

// TestEffectiveGauges: with the congestion response on, a 429 without Retry-After (a target
// that counts calls in flight) cuts the effective parallelism under the ceiling: its gauge
// shows it while throttle_parallelism_limit keeps the ceiling, the response's signal is
// counted, and its change is labelled effective_parallelism/adapt. The effective rate, never
// cut, is 0: the ceiling applies.
func TestEffectiveGauges(t *testing.T) {
	var mu sync.Mutex
	inflight, first := 0, map[string]bool{}
	all := make(chan struct{})
	a := engine.AdapterFunc(func(ctx context.Context, it engine.Item) (engine.Outcome, error) {
		mu.Lock()
		inflight++
		if inflight == 4 {
			close(all)
		}
		again := first[it.Line]
		first[it.Line] = true
		mu.Unlock()
		if !again {
			<-all // the four first attempts are in flight together
			return engine.Outcome{Verdict: engine.Retry, Status: 429, Message: "429 Too Many Requests"}, nil
		}
		return engine.Outcome{Verdict: engine.OK, Status: 200}, nil
	})
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 4, Burst: 1}, Retries: 1, MaxBackoff: time.Millisecond, Adapt: true,
		Adapter: a, Source: engine.NewLineReader(strings.NewReader("a\nb\nc\nd\n"), false), Total: 4, Results: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	o := metrics.New(e, metrics.Options{Job: "j"})
	sum, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o.Finish(sum)
	m := families(t, o.Registry())
	check(t, m, []want{
		{"throttle_parallelism_limit", nil, 4},
		{"throttle_effective_rate_limit_per_second", nil, 0},
		{"throttle_control_changes_total", map[string]string{"knob": "effective_parallelism", "source": "adapt"}, 1},
	})
	if p, ok := value(m, "throttle_effective_parallelism_limit", nil); !ok || p < 1 || p >= 4 {
		t.Errorf("throttle_effective_parallelism_limit = %v (present %v), want the cut under the ceiling 4", p, ok)
	}
	if n, ok := value(m, "throttle_congestion_signals_total", nil); !ok || n < 1 {
		t.Errorf("throttle_congestion_signals_total = %v (present %v), want at least the one cut", n, ok)
	}
	if len(m["throttle_target_limit_per_second"].GetMetric()) != 0 {
		t.Error("throttle_target_limit_per_second is present, but the target never pushed back on the rate")
	}
}
