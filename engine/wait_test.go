package engine

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// gatedTarget waits for its "limit" before each call — wait, in the adapter, after the engine
// admitted the call — then answers in latency. The first call of each item in later comes
// back Later after the wait, as a shared limit's gate does past its MaxWait.
type gatedTarget struct {
	wait, latency time.Duration
	mu            sync.Mutex
	later         map[string]bool // items to send back once
}

func (g *gatedTarget) Do(ctx context.Context, it Item) (Outcome, error) {
	WaitingFor(ctx, "limit tmdb")
	time.Sleep(g.wait)
	g.mu.Lock()
	back := g.later[it.Line]
	delete(g.later, it.Line)
	g.mu.Unlock()
	if back {
		return Outcome{}, Later(0)
	}
	CallStarts(ctx)
	time.Sleep(g.latency)
	return Outcome{Verdict: OK, Status: 200}, nil
}

// TestWaitIsNotLatency: calls that wait 200 ms for a shared limit and answer in 2 ms have rows
// of latency_ms 2 and wait_ms 200, CallEnd events of Latency 2 ms, and while they wait the
// snapshot shows the workers waiting for the limit, none in flight or calling. An item sent
// back once (Later) after its wait carries both waits in its row.
func TestWaitIsNotLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gatedTarget{wait: 200 * time.Millisecond, latency: 2 * time.Millisecond, later: map[string]bool{"3": true}}
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 4}, Adapter: g}, numbered(8))
		sub := e.Subscribe(64, CallEnd)
		wait := runAsync(context.Background(), e)
		time.Sleep(100 * time.Millisecond) // every worker is in its first wait
		synctest.Wait()
		s := e.Snapshot()
		if s.ByState[WorkerWaiting] != 4 || s.ByState[WorkerCalling] != 0 || s.InFlight != 0 {
			t.Errorf("snapshot while waiting: by state %v, %d in flight; want 4 waiting, 0 calling, 0 in flight", s.ByState, s.InFlight)
		}
		if what, n := s.Waiting(); what != "limit tmdb" || n != 4 {
			t.Errorf("Waiting() = %q, %d; want \"limit tmdb\", 4", what, n)
		}
		time.Sleep(101 * time.Millisecond) // the waits are over, the calls in flight
		synctest.Wait()
		s = e.Snapshot()
		if s.ByState[WorkerCalling] != 3 || s.InFlight != 3 || s.WaitingFor["limit tmdb"] != 1 {
			t.Errorf("snapshot while calling: by state %v, %d in flight, waiting for %v; want 3 calling and in flight, item 3's worker waiting again",
				s.ByState, s.InFlight, s.WaitingFor)
		}
		if _, err := wait(); err != nil {
			t.Fatal(err)
		}
		rows := rowsByItem(t, parseRows(t, out.Bytes()))
		if len(rows) != 8 {
			t.Fatalf("%d rows; want 8", len(rows))
		}
		for item, r := range rows {
			want := 200.0
			if item == "3" {
				want = 400 // sent back after one wait, admitted after a second
			}
			if !r.OK || r.LatencyMS != 2 || r.WaitMS != want {
				t.Errorf("row of item %s: ok %v, latency_ms %v, wait_ms %v; want ok, 2, %v", item, r.OK, r.LatencyMS, r.WaitMS, want)
			}
		}
		for range 8 {
			ev := <-sub.C
			if ev.Latency != 2*time.Millisecond || ev.Wait < 200*time.Millisecond {
				t.Errorf("CallEnd of item %d: latency %v, wait %v; want 2ms, 200ms or more", ev.Index, ev.Latency, ev.Wait)
			}
		}
	})
}

// TestNoWaitNoField: an adapter that says nothing of its start has its latency from the
// engine's admission and no wait_ms in its rows.
func TestNoWaitNoField(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 2}, Adapter: AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
			time.Sleep(5 * time.Millisecond)
			return Outcome{Verdict: OK, Extra: map[string]any{"wait_ms": 7}}, nil
		})}, numbered(3))
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, r := range parseRows(t, out.Bytes()) {
			if r.LatencyMS != 5 || r.WaitMS != 7 {
				t.Errorf("row %+v: want latency_ms 5 and the adapter's own wait_ms 7", r)
			}
		}
		if strings.Count(out.String(), `"wait_ms"`) != 3 {
			t.Errorf("rows %q: want one wait_ms each", out.String())
		}
	})
}

// TestWaitOutsideARun: WaitingFor and CallStarts on a context that is not an engine call's do
// nothing (an adapter used on its own).
func TestWaitOutsideARun(t *testing.T) {
	WaitingFor(context.Background(), "limit x")
	CallStarts(context.Background())
	if _, ok := WorkerOf(context.Background()); ok {
		t.Error("WorkerOf(Background) is ok")
	}
}

// TestRowWaitOnce: a row of a call that waited holds the engine's wait_ms, once, even when the
// adapter sent a field of that name too.
func TestRowWaitOnce(t *testing.T) {
	r := &Result{Item: Item{Line: "a"}, OK: true, Latency: 2 * time.Millisecond, Wait: 230500 * time.Microsecond, Extra: map[string]any{"wait_ms": 9, "file": "f"}}
	got := string(AppendRow(nil, r))
	want := `{"item":"a","ok":true,"attempts":0,"latency_ms":2,"wait_ms":230.5,"at":"0001-01-01T00:00:00.000Z","file":"f"}` + "\n"
	if got != want {
		t.Errorf("AppendRow = %s want %s", got, want)
	}
}
