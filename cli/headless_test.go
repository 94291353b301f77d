package cli

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/control"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// TestProgressLineNamesTheCapInForce: a progress line's "calls/s (cap X)" and "in flight N/P"
// name the effective value while it binds under its ceiling, with the ceiling; plain
// otherwise.
func TestProgressLineNamesTheCapInForce(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	snap := func(set engine.Settings, eff engine.Effective) engine.Snapshot {
		return engine.Snapshot{At: start.Add(12 * time.Second), Started: start, State: engine.Running, Settings: set, Effective: eff,
			Total: 5000, OK: 439, InFlight: 6, Calls: 100}
	}
	prev := engine.Snapshot{At: start.Add(10 * time.Second), Calls: 50}
	none := engine.Effective{QuotaLeft: -1}
	for _, tc := range []struct {
		name      string
		s         engine.Snapshot
		want, not []string
	}{
		{"ceilings in force", snap(engine.Settings{Parallelism: 8, Rate: 250, Burst: 1}, none),
			[]string{"last 2s: 25.0 calls/s (cap 250/s)", "in flight 6/8"}, []string{"effective"}},
		{"no rate ceiling", snap(engine.Settings{Parallelism: 8, Burst: 1}, none),
			[]string{"last 2s: 25.0 calls/s  in flight 6/8"}, []string{"cap", "effective"}},
		{"the effective rate binds", snap(engine.Settings{Parallelism: 8, Rate: 250, Burst: 1}, engine.Effective{Rate: 187.6, Signals: 1, QuotaLeft: -1}),
			[]string{"25.0 calls/s (cap 188/s effective · ceiling 250/s)", "in flight 6/8"}, nil},
		{"the effective rate binds under no ceiling", snap(engine.Settings{Parallelism: 8, Burst: 1}, engine.Effective{Rate: 14, Signals: 1, QuotaLeft: -1}),
			[]string{"(cap 14/s effective · ceiling none)"}, nil},
		{"the effective parallelism binds", snap(engine.Settings{Parallelism: 8, Burst: 1}, engine.Effective{Parallelism: 6, Signals: 1, QuotaLeft: -1}),
			[]string{"in flight 6/6 (effective · ceiling 8)"}, []string{"cap"}},
	} {
		fig := probes.Figures{From: start.Add(10 * time.Second), To: start.Add(12 * time.Second), Calls: 50}
		line := strings.Join(progressLines(prev, tc.s, probes.Stats{}, fig, "", jobRows{}), "\n")
		for _, w := range tc.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: progress lines %q lack %q", tc.name, line, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(line, w) {
				t.Errorf("%s: progress lines %q have %q", tc.name, line, w)
			}
		}
	}
}

// TestProgressLinesFit80: a progress report with everything in it — large counts, effective
// caps, workers waiting for a shared limit of a long name that binds, a quota, a hold, a
// backoff — is a few lines of at most 80 columns, and every figure says its window.
func TestProgressLinesFit80(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	long := strings.Repeat("tmdb-", 12) + "api"
	s := engine.Snapshot{At: start.Add(100*time.Hour + 12*time.Second), Started: start, State: engine.Draining,
		Settings: engine.Settings{Parallelism: 4096, Rate: 250000, Burst: 1}, Effective: engine.Effective{Rate: 187654.3, Parallelism: 4000, Signals: 3, QuotaLeft: -1},
		Total: 123456789012, OK: 12345678901, Failed: 1234567890, Calls: 98765432109, TooMany: 9876543210, Errors: 8765432109,
		InFlight: 3999, BackingOff: 123456, HoldUntil: start.Add(100*time.Hour + 14*time.Second),
		Quota:      engine.QuotaState{Quota: engine.Quota{Limit: 1e9, Remaining: 123456789, Reset: time.Hour}, At: start.Add(100 * time.Hour), ResetAt: start.Add(101 * time.Hour)},
		WaitingFor: map[string]int{"limit " + long: 70, "host api.example.com": 3}}
	s.ByState[engine.WorkerWaiting] = 73
	prev := engine.Snapshot{At: s.At.Add(-2 * time.Second), Calls: s.Calls - 300000, TooMany: s.TooMany - 1234}
	fig := probes.Figures{From: s.At.Add(-2 * time.Second), To: s.At, Calls: 300000}
	lines := progressLines(prev, s, probes.Stats{Calls: 10, P50: 3400 * time.Microsecond, P95: 29 * time.Millisecond},
		fig, "shared limit "+long+": share of parallelism 128", jobRows{})
	if len(lines) > 14 {
		t.Errorf("%d lines: want 14 at most", len(lines))
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	all := strings.Join(lines, "\n")
	flat := strings.Join(strings.Fields(all), " ")
	for _, w := range []string{"100:00:12 draining", "whole run: failed 1,234,567,890 · 429s 9,876,543,210 · errors 8,765,432,109",
		"last 2s: 150000.0 calls/s (cap 188000/s effective · ceiling 250000/s) · 429s +1,234", "in flight 3999/4000 (effective · ceiling 4096)",
		"70 waiting for limit " + long + " (+3 for other turns)", "5s window: p50 3.4ms p95 29ms", "binding: shared limit " + long + ": share of parallelism 128",
		"backoff 123456", "quota 123,456,789 left (resets in 59m48s)", "held 2s (Retry-After)"} {
		if !strings.Contains(flat, w) {
			t.Errorf("progress lines lack %q:\n%s", w, all)
		}
	}
}

// TestProgressLinesSharedLimit: a run held by a shared limit says so in two lines of at most
// 80 columns: the workers waiting for it, what of it binds, and the latency without the wait.
func TestProgressLinesSharedLimit(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	s := engine.Snapshot{At: start.Add(6 * time.Second), Started: start, State: engine.Running,
		Settings: engine.Settings{Parallelism: 16, Burst: 1}, Effective: engine.Effective{QuotaLeft: -1},
		Total: 200, OK: 28, Calls: 28, WaitingFor: map[string]int{"limit tmdb": 16}}
	s.ByState[engine.WorkerWaiting] = 16
	prev := engine.Snapshot{At: start.Add(4 * time.Second), Calls: 19}
	fig := probes.Figures{From: prev.At, To: s.At, Calls: 9}
	lines := progressLines(prev, s, probes.Stats{Calls: 9, P50: 3400 * time.Microsecond, P95: 4800 * time.Microsecond}, fig, "shared limit tmdb: rate 5/s", jobRows{})
	want := []string{
		"0:06  running  28/200 14.0%  ETA 0:37  whole run: failed 0 · 429s 0 · errors 0",
		"  last 2s: 4.5 calls/s  in flight 0/16  16 waiting for limit tmdb",
		"  5s window: p50 3.4ms p95 4.8ms  binding: shared limit tmdb: rate 5/s",
	}
	sameLines(t, "progress lines", lines, want)
}

// TestWrapLine: a line wider than the width breaks at a space, after a " · " or a comma
// where it can, each further line indented; a word wider than the line is cut.
func TestWrapLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"short", []string{"short"}},
		{"aaaa bbbb · cccc dddd", []string{"aaaa bbbb ·", "  cccc dddd"}},
		{"aaaa, bbbb cccc dddd", []string{"aaaa, bbbb", "  cccc dddd"}},
		{"aaaaaaaaaaaaaaaaaaaaaaaaa", []string{"aaaaaaaaaaaa", "  aaaaaaaaaa", "  aaa"}},
	} {
		got := wrapLine(tc.in, 12)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("wrapLine(%q, 12) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestHeadlessStartedMidRun: progress lines started in the middle of a run (a screen whose
// terminal went away: SIGHUP) count their first rate over the time since they started, not
// the calls since the run's start over one interval (which said 15 calls/s under a cap of 5).
func TestHeadlessStartedMidRun(t *testing.T) {
	t.Parallel()
	e, err := engine.New(engine.Config{Settings: engine.Settings{Parallelism: 4, Rate: 50, Burst: 1}, Retries: 1,
		Adapter: engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
			time.Sleep(time.Millisecond)
			return engine.Outcome{Verdict: engine.OK}, nil
		}), Source: engine.NewLineReader(strings.NewReader(strings.Repeat("x\n", 1000)), false), Total: 1000, Results: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _, _ = e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for e.Snapshot().Calls < 40 { // most of a second at 50/s
		time.Sleep(10 * time.Millisecond)
	}
	var buf lockedBuffer
	h := startHeadless(&buf, e, probes.NewMonitor(probes.AdvisorConfig{}, false), "t", 300*time.Millisecond, job{})
	re := regexp.MustCompile(`last ([\d.]+)s: ([\d.]+) calls/s \(cap 50/s\)`)
	var m []string
	for deadline := time.Now().Add(10 * time.Second); m == nil && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		m = re.FindStringSubmatch(buf.String())
	}
	h.stop()
	if m == nil {
		t.Fatalf("no progress line with a rate:\n%s", buf.String())
	}
	span, _ := strconv.ParseFloat(m[1], 64)
	perSec, _ := strconv.ParseFloat(m[2], 64)
	// 50/s over its window, a call or two of burst and rounding aside.
	if span < 0.3 || span > 1 || perSec > 50+2/span {
		t.Errorf("the first line says %s: want its window (0.3 s or a little more) and at most the cap of 50/s", m[0])
	}
}

// TestCtlGetShowsEffective: ctl get's text gives the effective values beside the ceilings,
// and what the target accepted when it pushed back.
func TestCtlGetShowsEffective(t *testing.T) {
	var out bytes.Buffer
	env := &Env{Stdout: &out}
	printStatus(env, &control.Status{Title: "t", PID: 7, State: "running", Parallelism: 16, Pace: "0s", Rate: "250/s", Burst: 1,
		EffectiveParallelism: 6, EffectiveRate: "188/s", TargetLimit: "198/s", Signals: 3, InFlight: 5, Total: -1})
	for _, want := range []string{"parallelism 6 effective · ceiling 16 (in flight 5), pace 0s, rate 188/s effective · ceiling 250/s, burst 1",
		"the target pushed back 3 times; the target accepted 198/s when it last pushed back"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ctl get lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	printStatus(env, &control.Status{Title: "t", PID: 7, State: "running", Parallelism: 16, Pace: "0s", Rate: "unlimited", Burst: 1,
		EffectiveRate: "14/s", Signals: 1, Total: -1})
	for _, want := range []string{"parallelism 16 (in flight 0), pace 0s, rate 14/s effective · ceiling none, burst 1", "pushed back 1 time\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ctl get lacks %q:\n%s", want, out.String())
		}
	}
}

// TestCtlGetShowsWaiting: ctl get's text says how many calls wait for their turn, and for
// what, beside the calls in flight.
func TestCtlGetShowsWaiting(t *testing.T) {
	var out bytes.Buffer
	printStatus(&Env{Stdout: &out}, &control.Status{Title: "t", PID: 7, State: "running", Parallelism: 16, Pace: "0s", Rate: "unlimited", Burst: 1,
		InFlight: 1, Waiting: 15, WaitingFor: "limit tmdb", Total: -1})
	if want := "parallelism 16 (in flight 1, 15 waiting for limit tmdb), pace 0s"; !strings.Contains(out.String(), want) {
		t.Errorf("ctl get lacks %q:\n%s", want, out.String())
	}
}

// TestCtlGetShowsTheJob: on a shared job's coordinator ctl get gives the job's rows against
// the input's total and its ETA, then this host's counts as this host's ("done 357 of ?"
// said the host's rows against no total).
func TestCtlGetShowsTheJob(t *testing.T) {
	var out bytes.Buffer
	printStatus(&Env{Stdout: &out}, &control.Status{Title: "t", PID: 7, State: "running", Parallelism: 16, Pace: "0s", Rate: "unlimited", Burst: 1,
		OK: 350, Failed: 7, Calls: 360, Total: -1, Job: &control.JobProgress{Rows: 1191, Total: 3000, ETASeconds: 6}})
	for _, want := range []string{"job: 1,191/3,000 rows 39.7% · ETA 0:06\n", "this host: done 357: ok 350, failed 7 · calls 360"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ctl get lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "of ?") {
		t.Errorf("ctl get says the total is unknown:\n%s", out.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProgressLinesSharedJob: a shared job's coordinator leads its progress lines with the
// job's rows against the input's total and the job's ETA, then this host's own counts; its
// first line says the job's total and settings, not this host's engine's (no total, no rate).
func TestProgressLinesSharedJob(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	s := engine.Snapshot{At: start.Add(4 * time.Second), Started: start, State: engine.Running,
		Settings: engine.Settings{Parallelism: 16, Burst: 1}, Effective: engine.Effective{QuotaLeft: -1},
		Total: -1, OK: 400, Failed: 2, Calls: 402, InFlight: 7}
	prev := engine.Snapshot{At: start.Add(2 * time.Second), Calls: 200}
	fig := probes.Figures{From: prev.At, To: s.At, Calls: 202}
	lines := progressLines(prev, s, probes.Stats{}, fig, "", jobRows{rows: 1191, total: 3000, eta: 6 * time.Second})
	want := []string{
		"0:04  running  job 1,191/3,000 rows 39.7%  ETA 0:06",
		"  this host: 402 done, failed 2 · 429s 0 · errors 0  last 2s: 101.0 calls/s",
		"  in flight 7/16",
	}
	sameLines(t, "progress lines", lines, want)

	// The job's settings as a shared job's controls answer them: an engine's snapshot's.
	ctl, err := engine.New(engine.Config{Settings: engine.Settings{Parallelism: 48, MaxParallelism: 64, Rate: 300, Burst: 1},
		Adapter: engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) { return engine.Outcome{}, nil }),
		Source:  engine.NewLineReader(strings.NewReader(""), false), Results: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		j    job
		want string
	}{
		{"one host", job{}, "unknown total · parallelism 16, pace none, rate unlimited (burst 1)"},
		{"coordinator", job{controls: ctl, progress: func() jobRows { return jobRows{total: 3000} }},
			"a job of 3,000 items · the job's parallelism 48, pace none, rate 300/s (burst 1), max parallelism 64 · this host up to 16 in flight"},
		{"joined host", job{controls: ctl},
			"the job's total is its coordinator's · the job's parallelism 48, pace none, rate 300/s (burst 1), max parallelism 64 · this host up to 16 in flight"},
	} {
		if got := runHeader(s, tc.j); got != tc.want {
			t.Errorf("%s: header %q, want %q", tc.name, got, tc.want)
		}
	}
}

// sameLines fails t unless got is want, line for line.
func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
		t.Errorf("%s:\n%s\nwant:\n%s", what, g, w)
	}
}
