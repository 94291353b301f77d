package engine

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestEvents: a subscriber sees a CallStart and a CallEnd for every call and a ControlChange for
// every change; a subscriber that never reads does not slow or block the run, and counts what
// it missed.
func TestEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		run := func(subscribe bool) (Summary, *Subscription, *Subscription) {
			e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 4}, Adapter: sleeper(newRecorder(), 10*time.Millisecond)}, numbered(50))
			var all, stuck *Subscription
			if subscribe {
				all, stuck = e.Subscribe(1000), e.Subscribe(1)
			}
			wait := runAsync(context.Background(), e)
			time.Sleep(55 * time.Millisecond)
			if err := e.SetParallelism(6, "test"); err != nil {
				t.Fatal(err)
			}
			s, err := wait()
			if err != nil || s.OK != 50 {
				t.Fatalf("Run() = ok %d, %v; want 50, nil", s.OK, err)
			}
			return s, all, stuck
		}
		base, _, _ := run(false)
		s, all, stuck := run(true)
		if s.Elapsed != base.Elapsed {
			t.Errorf("run with a stuck subscriber took %v, without %v: want the same", s.Elapsed, base.Elapsed)
		}
		if stuck.Dropped() == 0 {
			t.Error("stuck subscriber: Dropped() = 0, want > 0")
		}
		if all.Dropped() != 0 {
			t.Errorf("reading subscriber: Dropped() = %d, want 0", all.Dropped())
		}

		var starts, ends int64
		var changes []string
		for _, ev := range drainEvents(all) {
			switch ev.Kind {
			case CallStart:
				starts++
				if ev.Attempt != 1 || ev.Items != 1 || ev.InFlight < 1 || ev.InFlight > 6 || ev.Worker < 0 || ev.Worker >= 6 {
					t.Errorf("CallStart %+v: want attempt 1, 1 item, in flight in [1, 6], worker in [0, 6)", ev)
				}
			case CallEnd:
				ends++
				if ev.Latency != 10*time.Millisecond || ev.Verdict != OK || ev.Err {
					t.Errorf("CallEnd %+v: want latency 10ms, verdict ok", ev)
				}
			case ControlChange:
				changes = append(changes, ev.Change.String())
			}
		}
		if starts != s.Calls || ends != s.Calls {
			t.Errorf("events: %d CallStart, %d CallEnd; want %d of each", starts, ends, s.Calls)
		}
		want := []string{"start: parallelism 4, pace 0s, rate unlimited, burst 1 (cli)", "parallelism 4 → 6 (test)", "state running → done (engine)"}
		if strings.Join(changes, "|") != strings.Join(want, "|") {
			t.Errorf("ControlChange events = %q, want %q", changes, want)
		}
	})
}

// TestCallEndVerdicts: CallEnd tells a retry, a final failure and an error without an answer.
func TestCallEndVerdicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newRecorder().adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
			switch it.Line {
			case "retry":
				return Outcome{Verdict: Retry, Status: 503, Message: "503 Service Unavailable"}, nil
			case "fail":
				return Outcome{Verdict: Fail, Status: 400, Message: "400 Bad Request"}, nil
			default:
				return Outcome{}, Permanent(context.DeadlineExceeded)
			}
		})
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 1}, Adapter: a}, "retry\nfail\nerr\n")
		sub := e.Subscribe(100)
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		var got []Event
		for _, ev := range drainEvents(sub) {
			if ev.Kind == CallEnd {
				got = append(got, ev)
			}
		}
		if len(got) != 3 {
			t.Fatalf("%d CallEnd events, want 3", len(got))
		}
		// The event tells the answer's verdict, even when no retry is left (Retries is 0).
		for i, want := range []struct {
			status  int
			verdict Verdict
			err     bool
		}{{503, Retry, false}, {400, Fail, false}, {0, Fail, true}} {
			if ev := got[i]; ev.Status != want.status || ev.Verdict != want.verdict || ev.Err != want.err || ev.Message == "" {
				t.Errorf("CallEnd %d = status %d, verdict %v, err %v, message %q; want %d, %v, %v, a message", i, ev.Status, ev.Verdict, ev.Err, ev.Message, want.status, want.verdict, want.err)
			}
		}
	})
}

// TestSnapshotDuringRun: snapshots taken all through a run are consistent: never more calls in
// flight than the limit, worker states adding up, counts that only grow; after Run the
// snapshot's Done equals the rows written.
func TestSnapshotDuringRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const items, parallelism = 300, 6
		rng := newRand(6)
		a := newRecorder().adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
			time.Sleep(rng.between(5*time.Millisecond, 50*time.Millisecond))
			if rng.Float64() < 0.2 {
				return Outcome{Verdict: Retry, Status: 503, Message: "503 Service Unavailable"}, nil
			}
			return Outcome{Verdict: OK}, nil
		})
		e, out := newTestEngine(t, Config{
			Settings:   Settings{Parallelism: parallelism, Pace: 20 * time.Millisecond, Rate: 150, Burst: 2},
			Retries:    5,
			MaxBackoff: 200 * time.Millisecond,
			Adapter:    a,
		}, numbered(items))
		done := make(chan struct{})
		sampled := make(chan [numWorkerStates]int)
		go func() {
			var seen [numWorkerStates]int
			var prev Snapshot
			for {
				select {
				case <-done:
					sampled <- seen
					return
				case <-time.After(3 * time.Millisecond):
				}
				s := e.Snapshot()
				if s.InFlight > s.Settings.Parallelism || s.InFlight < 0 {
					t.Errorf("Snapshot.InFlight = %d, limit %d", s.InFlight, s.Settings.Parallelism)
				}
				if len(s.Workers) != parallelism {
					t.Errorf("Snapshot has %d workers, want %d", len(s.Workers), parallelism)
				}
				sum := 0
				for st, n := range s.ByState {
					sum += n
					seen[st] += n
				}
				if sum != len(s.Workers) {
					t.Errorf("Snapshot.ByState %v adds up to %d, want %d workers", s.ByState, sum, len(s.Workers))
				}
				if s.Done() < prev.Done() || s.Calls < prev.Calls || s.Read < prev.Read || s.Done() > s.Read || s.Read > items || s.Total != items {
					t.Errorf("Snapshot done %d, calls %d, read %d, total %d after done %d, calls %d, read %d: want growing counts, done ≤ read ≤ total",
						s.Done(), s.Calls, s.Read, s.Total, prev.Done(), prev.Calls, prev.Read)
				}
				prev = s
			}
		}()
		s, err := e.Run(context.Background())
		close(done)
		seen := <-sampled
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range []WorkerState{WorkerCalling, WorkerPacing, WorkerRateWait} {
			if seen[st] == 0 {
				t.Errorf("no snapshot saw a worker %v, want the states of a paced, rated run", st)
			}
		}
		rows := int64(len(parseRows(t, out.Bytes())))
		snap := e.Snapshot()
		if snap.Done() != rows || s.OK+s.Failed != rows || rows != items || snap.State != Done {
			t.Errorf("after Run: Snapshot done %d, Summary ok+failed %d, %d rows, state %v; want %d, done", snap.Done(), s.OK+s.Failed, rows, snap.State, items)
		}
		if snap.Retries != s.Retries || snap.Calls != s.Calls || snap.Errors == 0 {
			t.Errorf("Snapshot retries %d, calls %d, errors %d; want Summary's %d, %d and errors > 0", snap.Retries, snap.Calls, snap.Errors, s.Retries, s.Calls)
		}
	})
}
