package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/cuttest"

	"github.com/throttle-dev/throttle/engine"
)

// limitsRedisURL is the Redis of the tests of settings, gate and hosts. Without
// THROTTLE_TEST_REDIS they are skipped, except under CI, where a missing Redis is a failure.
func limitsRedisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("THROTTLE_TEST_REDIS")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("THROTTLE_TEST_REDIS is not set: under CI=true the cluster tests must run against a real Redis (e.g. redis://127.0.0.1:6379/0)")
		}
		t.Skip("THROTTLE_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0): the cluster tests need a real Redis")
	}
	return u
}

// limitsJobs connects one Job per host to a job named after the test, reset at the start
// and at the end. url "" is the test Redis.
func limitsJobs(t *testing.T, url string, hosts ...string) []*Job {
	t.Helper()
	if url == "" {
		url = limitsRedisURL(t)
	}
	name := fmt.Sprintf("t-%s-%x", strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()), rand.Uint32())
	if len(name) > 64 {
		name = name[len(name)-64:]
	}
	ctx := context.Background()
	var jobs []*Job
	for _, h := range hosts {
		j, err := Connect(ctx, url, name, h)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	t.Cleanup(func() {
		for _, j := range jobs {
			j.Close()
		}
	})
	limitsReset(t, url, name)
	t.Cleanup(func() { limitsReset(t, url, name) })
	return jobs
}

// limitsReset resets a job through a connection of its own (the test's may be closed or cut).
func limitsReset(t *testing.T, url, name string) {
	t.Helper()
	ctx := context.Background()
	j, err := Connect(ctx, url, name, "reset")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Reset(ctx); err != nil {
		t.Fatal(err)
	}
}

// newLimitsProxy starts a proxy to the test Redis that a test can cut, and returns it with
// the Redis URL that goes through it.
func newLimitsProxy(t *testing.T) (*cuttest.Proxy, string) {
	t.Helper()
	return cuttest.StartURL(t, limitsRedisURL(t))
}

// watchCollector gathers what Watch applies.
type watchCollector struct {
	ch chan watchApplied
}

type watchApplied struct {
	s engine.Settings
	c engine.Change
}

func newWatchCollector() *watchCollector { return &watchCollector{ch: make(chan watchApplied, 64)} }

func (w *watchCollector) apply(s engine.Settings, c engine.Change) { w.ch <- watchApplied{s, c} }

// next returns the next applied change whose knob is knob, skipping others, within d.
func (w *watchCollector) next(t *testing.T, knob string, d time.Duration) watchApplied {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case a := <-w.ch:
			if a.c.Knob == knob {
				return a
			}
		case <-deadline:
			t.Fatalf("no %q change applied within %v", knob, d)
		}
	}
}

var testSettings = engine.Settings{Parallelism: 8, Rate: 100, Burst: 5}

func TestSettingsRoundTripAndValidation(t *testing.T) {
	t.Parallel()
	jobs := limitsJobs(t, "", "web-1")
	j, ctx := jobs[0], context.Background()
	if _, err := j.Settings(ctx); !errors.Is(err, ErrNoSettings) {
		t.Fatalf("settings before InitSettings: %v, want ErrNoSettings", err)
	}
	if err := j.SetParallelism(ctx, 3, "ctl"); !errors.Is(err, ErrNoSettings) {
		t.Fatalf("SetParallelism before InitSettings: %v, want ErrNoSettings", err)
	}
	want := engine.Settings{Parallelism: 8, MaxParallelism: 20, Rate: 0.5, Burst: 3, Pace: 1500 * time.Millisecond}
	if err := j.InitSettings(ctx, want, "cli"); err != nil {
		t.Fatal(err)
	}
	got, err := j.Settings(ctx)
	if err != nil || got != want {
		t.Fatalf("settings %+v, %v: want %+v", got, err, want)
	}
	for _, bad := range []func() error{
		func() error { return j.SetParallelism(ctx, 0, "ctl") },
		func() error { return j.SetParallelism(ctx, 21, "ctl") }, // above max parallelism
		func() error { return j.SetRate(ctx, -1, 1, "ctl") },
		func() error { return j.SetRate(ctx, 10, 0, "ctl") },
		func() error { return j.SetPace(ctx, -time.Second, "ctl") },
		func() error { return j.InitSettings(ctx, engine.Settings{Parallelism: 0}, "cli") },
	} {
		if err := bad(); err == nil {
			t.Fatal("an out-of-range setting was accepted")
		}
	}
	if got, _ := j.Settings(ctx); got != want {
		t.Fatalf("refused changes changed the settings: %+v", got)
	}
	if err := j.SetParallelism(ctx, 20, "ctl"); err != nil {
		t.Fatal(err)
	}
	if err := j.SetRate(ctx, 250, 10, "ctl"); err != nil {
		t.Fatal(err)
	}
	if err := j.SetPace(ctx, 0, "ctl"); err != nil {
		t.Fatal(err)
	}
	want = engine.Settings{Parallelism: 20, MaxParallelism: 20, Rate: 250, Burst: 10}
	if got, err := j.Settings(ctx); err != nil || got != want {
		t.Fatalf("settings %+v, %v: want %+v", got, err, want)
	}
}

// TestWatchDeliversEachChangeWithItsHost: a change made on web-2 reaches web-1's Watch with
// the new settings, and its origin names web-2; a refused or empty change sends nothing.
func TestWatchDeliversEachChangeWithItsHost(t *testing.T) {
	t.Parallel()
	jobs := limitsJobs(t, "", "web-1", "web-2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := jobs[0].InitSettings(ctx, testSettings, "cli"); err != nil {
		t.Fatal(err)
	}
	w := newWatchCollector()
	done := make(chan error, 1)
	go func() { done <- jobs[0].Watch(ctx, w.apply) }()
	first := w.next(t, "sync", 3*time.Second)
	if first.s != testSettings || first.c.Origin != "web-1/redis" {
		t.Fatalf("first apply %+v: want the job's settings, origin web-1/redis", first)
	}

	if err := jobs[1].SetParallelism(ctx, 5, "1234/ctl"); err != nil {
		t.Fatal(err)
	}
	a := w.next(t, "parallelism", 2*time.Second)
	if a.s.Parallelism != 5 || a.c.Origin != "web-2/1234/ctl" || a.c.From != "8" || a.c.To != "5" {
		t.Fatalf("applied %+v: want parallelism 8 → 5 from web-2/1234/ctl", a)
	}
	if got := a.c.String(); got != "parallelism 8 → 5 (web-2/1234/ctl)" {
		t.Fatalf("change log line %q", got)
	}
	if err := jobs[1].SetParallelism(ctx, 0, "1234/ctl"); err == nil {
		t.Fatal("parallelism 0 accepted")
	}
	if err := jobs[1].SetParallelism(ctx, 5, "1234/ctl"); err != nil { // no change: no message
		t.Fatal(err)
	}
	if err := jobs[1].SetRate(ctx, 50, 10, "tui"); err != nil {
		t.Fatal(err)
	}
	// The messages come in order: had the no-op or the refused change been sent, it would come
	// before the rate.
	var r watchApplied
	select {
	case r = <-w.ch:
	case <-time.After(2 * time.Second):
		t.Fatal("no change applied within 2s of SetRate")
	}
	// Rate and burst are one change: one message, one entry in every host's change log.
	if r.c.Knob != "rate, burst" || r.c.From != "100/s, 5" || r.c.To != "50/s, 10" || r.c.Origin != "web-2/tui" || r.s.Rate != 50 || r.s.Burst != 10 {
		t.Fatalf("applied %+v: want rate 100/s → 50/s and burst 5 → 10 from web-2/tui as one change, and nothing before it", r)
	}
	if got := r.c.String(); got != "rate 100/s → 50/s, burst 5 → 10 (web-2/tui)" {
		t.Fatalf("change log line %q", got)
	}
	if err := jobs[0].SetPace(ctx, time.Second, "ctl"); err != nil {
		t.Fatal(err)
	}
	p := w.next(t, "pace", 2*time.Second)
	if p.s.Pace != time.Second || p.c.From != "0s" || p.c.To != "1s" || p.c.Origin != "web-1/ctl" {
		t.Fatalf("applied %+v: want pace 0s → 1s from web-1/ctl", p)
	}
	if err := jobs[1].InitSettings(ctx, testSettings, "cli"); err != nil {
		t.Fatal(err)
	}
	if s := w.next(t, "start", 2*time.Second); s.s != testSettings || s.c.Origin != "web-2/cli" {
		t.Fatalf("applied %+v: want the start settings from web-2/cli", s)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch returned %v when its context ended", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Watch did not return within 1s of its context's end")
	}
}

// TestWatchSurvivesRedisGoingAway: a change made while the watcher's link is cut is applied
// once the link is back, with a sync change.
func TestWatchSurvivesRedisGoingAway(t *testing.T) {
	t.Parallel()
	proxy, via := newLimitsProxy(t)
	direct := limitsJobs(t, "", "web-2")[0]
	watcher, err := Connect(context.Background(), via, direct.Name(), "web-1")
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := direct.InitSettings(ctx, testSettings, "cli"); err != nil {
		t.Fatal(err)
	}
	w := newWatchCollector()
	done := make(chan error, 1)
	go func() { done <- watcher.Watch(ctx, w.apply) }()
	w.next(t, "sync", 3*time.Second)

	proxy.Cut()
	time.Sleep(300 * time.Millisecond) // the watcher notices and retries
	if err := direct.SetParallelism(ctx, 3, "ctl"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	proxy.Restore(t)
	a := w.next(t, "sync", 5*time.Second)
	if a.s.Parallelism != 3 {
		t.Fatalf("after the outage Watch applied %+v: want the parallelism set meanwhile (3)", a.s)
	}
	if err := direct.SetParallelism(ctx, 4, "ctl"); err != nil {
		t.Fatal(err)
	}
	if a := w.next(t, "parallelism", 2*time.Second); a.s.Parallelism != 4 || a.c.Origin != "web-2/ctl" {
		t.Fatalf("after the outage Watch applied %+v: want parallelism 4 from web-2/ctl", a)
	}
	cancel()
	select {
	case err := <-done:
		_ = err // Watch returns its context's end, which the test caused
	case <-time.After(time.Second):
		t.Fatal("Watch did not return within 1s of its context's end")
	}
}

// controlsLocal is a host's engine as far as Controls is concerned: it records what reaches
// it.
type controlsLocal struct {
	mu    sync.Mutex
	calls []string
}

func (c *controlsLocal) record(s string) { c.mu.Lock(); c.calls = append(c.calls, s); c.mu.Unlock() }
func (c *controlsLocal) Snapshot() engine.Snapshot {
	return engine.Snapshot{InFlight: 3, Settings: engine.Settings{Parallelism: 16, Burst: 1}}
}
func (c *controlsLocal) Set(u engine.Update, o string) error { c.record(u.String()); return nil }
func (c *controlsLocal) Pause(o string)                      { c.record("pause " + o) }
func (c *controlsLocal) Resume(o string)                     { c.record("resume " + o) }
func (c *controlsLocal) Drain(o string)                      { c.record("drain " + o) }
func (c *controlsLocal) Stop(o string)                       { c.record("stop " + o) }

// TestControlsTurnTheJobsKnobsAndActLocally: knobs go to Redis for every host, and the
// snapshot shows the job's settings; pause, resume, drain and stop stay on this host.
func TestControlsTurnTheJobsKnobsAndActLocally(t *testing.T) {
	t.Parallel()
	jobs := limitsJobs(t, "", "web-1", "web-2")
	ctx := context.Background()
	if err := jobs[0].InitSettings(ctx, testSettings, "cli"); err != nil {
		t.Fatal(err)
	}
	local := &controlsLocal{}
	c := jobs[1].Controls(local)
	deadline := time.Now().Add(2 * time.Second)
	for c.Snapshot().Settings != testSettings {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot settings %+v: want the job's %+v", c.Snapshot().Settings, testSettings)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := c.Snapshot(); s.InFlight != 3 {
		t.Fatalf("snapshot %+v: want the local engine's in flight", s)
	}
	for _, set := range []string{"parallelism 12", "rate 40", "burst 2", "pace 1s"} {
		u, err := engine.ParseSetting(set)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Set(u, "ctl"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Set(engine.Turn(engine.KnobParallelism, engine.Settings{}), "ctl"); err == nil {
		t.Fatal("parallelism 0 accepted")
	}
	if err := c.Set(engine.Turn(engine.KnobRate, engine.Settings{Rate: math.NaN()}), "ctl"); err == nil {
		t.Fatal("rate NaN accepted")
	}
	want := engine.Settings{Parallelism: 12, Rate: 40, Burst: 2, Pace: time.Second}
	if got, err := jobs[0].Settings(ctx); err != nil || got != want {
		t.Fatalf("job settings %+v, %v: want %+v", got, err, want)
	}
	if got := c.Snapshot().Settings; got != want {
		t.Fatalf("snapshot right after the change %+v: want %+v", got, want)
	}
	c.Pause("tui")
	c.Resume("tui")
	c.Drain("ctl")
	c.Stop("signal")
	local.mu.Lock()
	defer local.mu.Unlock()
	if got := strings.Join(local.calls, ","); got != "pause tui,resume tui,drain ctl,stop signal" {
		t.Fatalf("local engine got %q: want the state changes only, the knobs going to redis", got)
	}
}
