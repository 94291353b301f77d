package engine

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestPauseResume: Pause lets the calls in flight finish and starts none; Resume goes on, and
// the run ends with every row.
func TestPauseResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 4}, Adapter: sleeper(rec, 100*time.Millisecond)}, numbered(100))
		wait := runAsync(context.Background(), e)

		time.Sleep(1050 * time.Millisecond)
		paused := time.Now()
		e.Pause("test")
		if got := e.State(); got != Paused {
			t.Errorf("State() after Pause = %v, want paused", got)
		}
		time.Sleep(2 * time.Second)
		if n := rec.between(paused, time.Now()); n != 0 {
			t.Errorf("%d calls started while paused, want 0", n)
		}
		snap := e.Snapshot()
		if rec.inflight.Load() != 0 || snap.InFlight != 0 || snap.Done() != int64(len(rec.snapshot())) || snap.ByState[WorkerHeld] != 4 {
			t.Errorf("while paused: adapter in flight %d, Snapshot in flight %d, done %d of %d calls, held %d; want 0, 0, all, 4",
				rec.inflight.Load(), snap.InFlight, snap.Done(), len(rec.snapshot()), snap.ByState[WorkerHeld])
		}
		resumed := time.Now()
		e.Resume("test")
		s, err := wait()
		if err != nil || s.OK != 100 || s.State != Done {
			t.Fatalf("Run() = ok %d, %v, %v; want 100, done, nil", s.OK, s.State, err)
		}
		if first := rec.between(resumed, resumed.Add(time.Millisecond)); first != 4 {
			t.Errorf("calls started at Resume = %d, want 4 at once", first)
		}
		var log []string
		for _, c := range e.Changes() {
			if c.Knob == "state" {
				log = append(log, c.String())
			}
		}
		want := []string{"state running → paused (test)", "state paused → running (test)", "state running → done (engine)"}
		if strings.Join(log, "; ") != strings.Join(want, "; ") {
			t.Errorf("state changes = %q, want %q", log, want)
		}
	})
}

// TestDrain: Drain takes no new item and starts no call; the calls in flight finish and their
// rows are written; items waiting for a retry get a failed row that says they were not retried.
func TestDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
			time.Sleep(100 * time.Millisecond)
			if (it.Line == "2" || it.Line == "5") && c.attempt == 1 {
				return Outcome{Verdict: Retry, Status: 503, Message: "503 Service Unavailable", RetryAfter: 30 * time.Second}, nil
			}
			return Outcome{Verdict: OK, Status: 200}, nil
		})
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 4}, Retries: 3, Adapter: a}, numbered(200))
		wait := runAsync(context.Background(), e)

		time.Sleep(1050 * time.Millisecond)
		drained := time.Now()
		e.Drain("test")
		s, err := wait()
		if err != nil || s.State != Draining || !s.Interrupted() {
			t.Fatalf("Run() = %v, %v; want draining, nil", s.State, err)
		}
		if d := time.Since(drained); d > 100*time.Millisecond {
			t.Errorf("Run returned %v after Drain, want once the calls in flight (100ms) finished", d)
		}
		called := map[string]bool{}
		for _, c := range rec.snapshot() {
			called[c.item] = true
			if c.at.After(drained) {
				t.Errorf("item %s started %v after Drain", c.item, c.at.Sub(drained))
			}
		}
		rows := rowsByItem(t, parseRows(t, out.Bytes()))
		if len(rows) != len(called) || s.OK+s.Failed != int64(len(called)) {
			t.Errorf("%d rows, Summary ok+failed %d, for %d items called; want all equal", len(rows), s.OK+s.Failed, len(called))
		}
		for item := range called {
			r, found := rows[item]
			switch {
			case !found:
				t.Errorf("item %s was called but has no row", item)
			case item == "2" || item == "5":
				if r.OK || r.Status != 503 || r.Attempts != 1 || r.Error != "503 Service Unavailable (not retried: run draining)" || r.RetryAfterMS != 30000 {
					t.Errorf("item %s row = %+v, want failed 503 after 1 attempt, error %q, retry_after_ms 30000", item, r, "503 Service Unavailable (not retried: run draining)")
				}
			case !r.OK:
				t.Errorf("item %s row = %+v, want ok", item, r)
			}
		}
		if got := e.State(); got != Draining {
			t.Errorf("State() after a drained Run = %v, want draining", got)
		}
	})
}

// TestDrainAccountsForEveryItemRead: after a drain, every item read from the input is either a
// row or counted NotStarted, so that a summary can say how many items were not run even when
// the total is unknown (stdin).
func TestDrainAccountsForEveryItemRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 4}, Adapter: sleeper(rec, 100*time.Millisecond)}, numbered(200))
		wait := runAsync(context.Background(), e)
		time.Sleep(1050 * time.Millisecond)
		e.Drain("test")
		s, err := wait()
		if err != nil {
			t.Fatal(err)
		}
		read := e.Snapshot().Read
		if s.OK+s.Failed+s.NotStarted != read {
			t.Errorf("Summary ok %d + failed %d + not started %d = %d, want the %d items read",
				s.OK, s.Failed, s.NotStarted, s.OK+s.Failed+s.NotStarted, read)
		}
	})
}

// TestLoweredThenDrainedAccounted: an item handed back by a worker retired by a lowered limit
// and then caught by a drain is counted NotStarted, not dropped from the books.
func TestLoweredThenDrainedAccounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, _ := newTestEngine(t, Config{
			Settings: Settings{Parallelism: 4, Pace: time.Second},
			Adapter:  sleeper(rec, 10*time.Millisecond),
		}, numbered(8))
		wait := runAsync(context.Background(), e)
		time.Sleep(500 * time.Millisecond) // items 0..3 are done; 4..7 are held by workers pacing until +1s
		if err := e.SetParallelism(1, "test"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // workers 1..3 have handed their items back
		e.Drain("test")
		s, err := wait()
		if err != nil {
			t.Fatal(err)
		}
		if got := s.OK + s.Failed + s.NotStarted; got != 8 {
			t.Errorf("Summary ok %d + failed %d + not started %d = %d, want the 8 items read", s.OK, s.Failed, s.NotStarted, got)
		}
	})
}

// TestStop: Stop (and cancelling Run's context, which behaves the same) cancels the calls in
// flight, which get failed rows "canceled: run stopped"; items waiting for a retry get a row
// saying they were not retried; nothing else starts.
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(e *Engine, cancel context.CancelFunc)
	}{
		{"Stop", func(e *Engine, _ context.CancelFunc) { e.Stop("test") }},
		{"context", func(_ *Engine, cancel context.CancelFunc) { cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := newRecorder()
				var mu sync.Mutex
				sawCancel := map[string]bool{}
				a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
					if it.Line == "0" {
						time.Sleep(10 * time.Millisecond)
						return Outcome{Verdict: Retry, Status: 503, Message: "503 Service Unavailable", RetryAfter: 30 * time.Second}, nil
					}
					select {
					case <-ctx.Done():
						mu.Lock()
						sawCancel[it.Line] = true
						mu.Unlock()
						return Outcome{}, ctx.Err()
					case <-time.After(10 * time.Second):
						return Outcome{Verdict: OK}, nil
					}
				})
				e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 4}, Retries: 3, Adapter: a}, numbered(100))
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				wait := runAsync(ctx, e)

				time.Sleep(time.Second)
				stopped := time.Now()
				tc.stop(e, cancel)
				s, err := wait()
				if err != nil || s.State != Stopping {
					t.Fatalf("Run() = %v, %v; want stopping, nil", s.State, err)
				}
				if d := time.Since(stopped); d != 0 {
					t.Errorf("Run returned %v after the stop, want at once", d)
				}
				for _, c := range rec.snapshot() {
					if c.at.After(stopped) {
						t.Errorf("item %s started after the stop", c.item)
					}
				}
				rows := rowsByItem(t, parseRows(t, out.Bytes()))
				want := map[string]string{
					"0": "503 Service Unavailable (not retried: run stopping)",
					"1": "canceled: run stopped", "2": "canceled: run stopped", "3": "canceled: run stopped", "4": "canceled: run stopped",
				}
				if len(rows) != len(want) || s.Failed != int64(len(want)) || s.OK != 0 {
					t.Errorf("rows %d, Summary failed %d, ok %d; want %d failed rows", len(rows), s.Failed, s.OK, len(want))
				}
				for item, msg := range want {
					if r := rows[item]; r.OK || r.Error != msg || r.Attempts != 1 {
						t.Errorf("item %s row = %+v, want failed after 1 attempt with %q", item, r, msg)
					}
					if item != "0" && !sawCancel[item] {
						t.Errorf("item %s: the adapter did not see its context done", item)
					}
				}
			})
		})
	}
}

// TestStopBeforeRun: a run stopped before it starts makes no call and returns at once.
func TestStopBeforeRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 4}, Adapter: sleeper(rec, time.Millisecond)}, numbered(10))
		e.Stop("test")
		s, err := e.Run(context.Background())
		if err != nil || s.State != Stopping || len(rec.snapshot()) != 0 || out.Len() != 0 {
			t.Errorf("Run() after Stop = %v, %v, %d calls, %d bytes of rows; want stopping, nil, none, none", s.State, err, len(rec.snapshot()), out.Len())
		}
	})
}

// TestRunTwice: an Engine runs once.
func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 1}, Adapter: sleeper(newRecorder(), 0)}, "a\n")
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
			t.Errorf("second Run() error = %v, want one saying Run was called twice", err)
		}
	})
}

// TestNewRejects: New refuses settings out of range with an error naming the number.
func TestNewRejects(t *testing.T) {
	ok := Config{
		Settings: Settings{Parallelism: 1},
		Adapter:  sleeper(newRecorder(), 0),
		Source:   NewLineReader(strings.NewReader(""), false),
		Results:  &bytes.Buffer{},
	}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"parallelism 0", func(c *Config) { c.Parallelism = 0 }, "parallelism 0"},
		{"over max", func(c *Config) { c.Parallelism, c.MaxParallelism = 9, 8 }, "parallelism 9 exceeds max parallelism 8"},
		{"negative pace", func(c *Config) { c.Pace = -time.Second }, "pace -1s"},
		{"negative rate", func(c *Config) { c.Rate = -1 }, "rate -1"},
		{"negative burst", func(c *Config) { c.Burst = -1 }, "burst -1"},
		{"negative retries", func(c *Config) { c.Retries = -1 }, "retries -1"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout -1s"},
		{"negative chunk", func(c *Config) { c.Chunk = -2 }, "chunk -2"},
		{"no adapter", func(c *Config) { c.Adapter = nil }, "no adapter"},
		{"no source", func(c *Config) { c.Source = nil }, "no source"},
		{"no results", func(c *Config) { c.Results = nil }, "no results"},
	} {
		c := ok
		tc.edit(&c)
		if _, err := New(c); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "engine: ") {
			t.Errorf("New(%s) error = %v, want one starting \"engine: \" containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := New(ok); err != nil {
		t.Errorf("New(valid config) error = %v", err)
	}
}

// TestControlRejectsBadValues: the live setters validate as New does and change nothing on
// error.
func TestControlRejectsBadValues(t *testing.T) {
	e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 2, MaxParallelism: 8}, Adapter: sleeper(newRecorder(), 0)}, "")
	before := e.Settings()
	for name, err := range map[string]error{
		"SetParallelism(0)":  e.SetParallelism(0, "test"),
		"SetParallelism(9)":  e.SetParallelism(9, "test"),
		"SetPace(-1s)":       e.SetPace(-time.Second, "test"),
		"SetRate(-1, 1)":     e.SetRate(-1, 1, "test"),
		"SetRate(10, 0)":     e.SetRate(10, 0, "test"),
		"SetParallelism(-3)": e.SetParallelism(-3, "test"),
	} {
		if err == nil {
			t.Errorf("%s error = nil, want one", name)
		}
	}
	if after := e.Settings(); after != before {
		t.Errorf("Settings() after rejected changes = %+v, want %+v", after, before)
	}
}

// TestControlHammer calls every control method and Snapshot from many goroutines while a run
// goes on (run it under -race); the run still ends with one row per item.
func TestControlHammer(t *testing.T) {
	const items = 20000
	rec := newRecorder()
	a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
		if it.Index%97 == 0 && c.attempt == 1 {
			return Outcome{Verdict: Retry, Status: 429, Message: "429 Too Many Requests", RetryAfter: time.Millisecond}, nil
		}
		return Outcome{Verdict: OK}, nil
	})
	e, out := newTestEngine(t, Config{
		Settings:   Settings{Parallelism: 8, MaxParallelism: 64},
		Retries:    3,
		MaxBackoff: 5 * time.Millisecond,
		Adapter:    a,
	}, numbered(items))
	sub := e.Subscribe(16)
	wait := runAsync(context.Background(), e)
	// Start once Run reads input (TestSetParallelismWhileRunStarts covers Run's first instants).
	for e.Snapshot().Read == 0 {
		time.Sleep(10 * time.Microsecond)
	}
	var hammers sync.WaitGroup
	for g := range 8 {
		hammers.Add(1)
		go func() {
			defer hammers.Done()
			rng := newRand(uint64(g))
			for i := range 300 {
				switch g % 4 {
				case 0:
					_ = e.SetParallelism(1+int(rng.Float64()*64), "hammer")
				case 1:
					_ = e.SetPace(rng.between(0, 200*time.Microsecond), "hammer")
					_ = e.SetRate([]float64{0, 5000, 50000}[i%3], 1+i%5, "hammer")
				case 2:
					if i%2 == 0 {
						e.Pause("hammer")
					} else {
						e.Resume("hammer")
					}
				case 3:
					snap := e.Snapshot()
					if snap.Done() > items || len(snap.Workers) > 64 {
						t.Errorf("Snapshot done %d, %d workers; want ≤ %d, ≤ 64", snap.Done(), len(snap.Workers), items)
					}
					_ = e.Changes()
					_ = e.Settings()
					_ = e.State()
				}
				time.Sleep(20 * time.Microsecond)
			}
		}()
	}
	hammers.Wait()
	t.Logf("rows when the hammers stopped: %d", e.Snapshot().Done())
	e.Resume("test")
	_ = e.SetRate(0, 1, "test")
	_ = e.SetPace(0, "test")
	_ = e.SetParallelism(8, "test")
	s, err := wait()
	sub.Close()
	if err != nil || s.OK != items || s.Failed != 0 {
		t.Fatalf("Run() = ok %d, failed %d, %v; want %d, 0, nil", s.OK, s.Failed, err, items)
	}
	rows := rowsByItem(t, parseRows(t, out.Bytes()))
	for i := range items {
		if _, found := rows[strconv.Itoa(i)]; !found {
			t.Errorf("item %d has no row", i)
		}
	}
	if len(e.Changes()) > maxChanges {
		t.Errorf("change log holds %d entries, want at most %d", len(e.Changes()), maxChanges)
	}
}

// TestSetParallelismWhileRunStarts: control calls may come from another goroutine the moment
// Run starts (the CLI's control socket, a signal); under -race this reports a read of the
// settings outside the lock.
func TestSetParallelismWhileRunStarts(t *testing.T) {
	for range 50 {
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 2}, Adapter: sleeper(newRecorder(), 0)}, numbered(10))
		wait := runAsync(context.Background(), e)
		for i := 0; i < 20 || e.Snapshot().Started.IsZero(); i++ { // until Run has started, and on
			if err := e.SetParallelism(1+i%3, "test"); err != nil {
				t.Fatal(err)
			}
		}
		if s, err := wait(); err != nil || s.OK != 10 {
			t.Fatalf("Run() = ok %d, %v; want 10, nil", s.OK, err)
		}
	}
}

// TestRunWithCanceledContext: Run with a context already cancelled behaves as Stop before
// Run: no call is made. (Ten runs, since the order of the first goroutines varies.)
func TestRunWithCanceledContext(t *testing.T) {
	for range 10 {
		runWithCanceledContext(t)
	}
}

func runWithCanceledContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 4}, Adapter: sleeper(rec, time.Second)}, numbered(10))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s, err := e.Run(ctx)
		if err != nil || s.State != Stopping {
			t.Errorf("Run(canceled ctx) = %v, %v; want stopping, nil", s.State, err)
		}
		if n := len(rec.snapshot()); n != 0 {
			t.Errorf("Run(canceled ctx) made %d calls (rows: %q), want 0", n, out.String())
		}
	})
}

// failingSource yields n items, then fails.
type failingSource struct {
	n, next int
	err     error
}

func (f *failingSource) Next() (Item, error) {
	if f.next == f.n {
		return Item{}, f.err
	}
	f.next++
	return Item{Index: int64(f.next - 1), Line: strconv.Itoa(f.next - 1)}, nil
}

// TestSourceError: an input that cannot be read ends the run with its error; the items read
// before it that were attempted have their rows.
func TestSourceError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errRead := errors.New("input: I/O error")
		rec := newRecorder()
		e, out := newTestEngine(t, Config{
			Settings: Settings{Parallelism: 2},
			Adapter:  sleeper(rec, 10*time.Millisecond),
			Source:   &failingSource{n: 5, err: errRead},
		}, "")
		s, err := e.Run(context.Background())
		if !errors.Is(err, errRead) || s.State != Draining {
			t.Errorf("Run() = %v, %v; want draining, %v", s.State, err, errRead)
		}
		rows := rowsByItem(t, parseRows(t, out.Bytes()))
		if len(rows) != len(rec.per) {
			t.Errorf("%d rows for %d items called, want one each", len(rows), len(rec.per))
		}
	})
}

// TestFollowLogsTheChangeAsMade: a change made elsewhere (a shared job's settings) is applied
// in this engine's part and logged as it was made, once, with its origin: a rate this engine
// does not apply is logged too, and a parallelism this engine takes only a share of is
// logged at the job's values, not this engine's.
func TestFollowLogsTheChangeAsMade(t *testing.T) {
	e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 4, Burst: 1}, Adapter: AdapterFunc(func(context.Context, Item) (Outcome, error) {
		return Outcome{Verdict: OK}, nil
	})}, "1\n")
	job := Change{Origin: "web-2/4121/ctl", Knob: "rate", From: "120/s", To: "100/s"}
	if err := e.Follow(Update{}, job); err != nil {
		t.Fatal(err)
	}
	share := Change{Origin: "web-2/4121/ctl", Knob: "parallelism", From: "24", To: "48"}
	if err := e.Follow(Turn(KnobParallelism, Settings{Parallelism: 8}), share); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range e.Changes() {
		if c.Knob != "start" {
			got = append(got, c.String())
		}
	}
	want := []string{"rate 120/s → 100/s (web-2/4121/ctl)", "parallelism 24 → 48 (web-2/4121/ctl)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("change log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := e.Snapshot().Settings.Parallelism; p != 8 {
		t.Fatalf("parallelism %d after following: want this engine's part, 8", p)
	}
}

// TestStartedNamesTheStart: the change log's first entry says what the run started with:
// the engine's settings, or Config.Started in their place.
func TestStartedNamesTheStart(t *testing.T) {
	ok := AdapterFunc(func(context.Context, Item) (Outcome, error) { return Outcome{Verdict: OK}, nil })
	for _, tc := range []struct{ started, want string }{
		{"", "start: parallelism 3, pace 0s, rate unlimited, burst 1 (cli)"},
		{"the job's parallelism 48, rate 300/s", "start: the job's parallelism 48, rate 300/s (cluster)"},
	} {
		origin := "cli"
		if tc.started != "" {
			origin = "cluster"
		}
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 3, Burst: 1}, Adapter: ok, Origin: origin, Started: tc.started}, "1\n")
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := e.Changes()[0].String(); got != tc.want {
			t.Errorf("first change %q, want %q", got, tc.want)
		}
	}
}
