package engine

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestETAStandsStillWhilePaused: the ETA of a paused run does not grow with the pause (it
// did: elapsed time over rows done, while no row could come), and after the resume it goes on
// from where it stood, the pause left out of the time per row.
func TestETAStandsStillWhilePaused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 2}, Adapter: sleeper(rec, 100*time.Millisecond)}, numbered(200))
		wait := runAsync(context.Background(), e)
		time.Sleep(2 * time.Second)
		e.Pause("test")
		time.Sleep(time.Second) // the calls in flight finish
		before, ok := e.Snapshot().ETA()
		if !ok {
			t.Fatal("no ETA 3s into a run of 200 rows")
		}
		time.Sleep(time.Minute)
		s := e.Snapshot()
		after, _ := s.ETA()
		if after != before {
			t.Errorf("ETA after a minute paused = %v, want %v as before it (paused %v)", after, before, s.Paused)
		}
		if s.Paused != time.Minute+time.Second {
			t.Errorf("Snapshot.Paused = %v, want 1m1s", s.Paused)
		}
		e.Resume("test")
		time.Sleep(time.Second)
		if s := e.Snapshot(); s.Paused != time.Minute+time.Second {
			t.Errorf("Snapshot.Paused after the resume = %v, want 1m1s, the pause closed", s.Paused)
		}
		if _, err := wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSummaryIsTheFinalSnapshots: what Run returns is the final snapshot's summary, so a
// screen that draws the end from a snapshot says the summary's numbers.
func TestSummaryIsTheFinalSnapshots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 3}, Adapter: sleeper(rec, 100*time.Millisecond)}, numbered(100))
		wait := runAsync(context.Background(), e)
		time.Sleep(time.Second)
		e.Drain("test")
		sum, err := wait()
		if err != nil {
			t.Fatal(err)
		}
		snap := e.Snapshot()
		final := snap.Summary()
		if final.OK != sum.OK || final.Failed != sum.Failed || final.NotRun() != sum.NotRun() || final.Calls != sum.Calls ||
			final.TooMany != sum.TooMany || final.Elapsed != sum.Elapsed || final.State != sum.State || final.Lost != sum.Lost {
			t.Errorf("final snapshot's summary %+v, Run's %+v", final, sum)
		}
		if sum.State != Draining || sum.OK == 0 || sum.OK+sum.NotRun() != 100 {
			t.Errorf("drained run: %s, %d ok, %d not run; want drained, ok + not run = 100", sum.Ended(), sum.OK, sum.NotRun())
		}
	})
}
