package control

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// endingEngine is a job whose counts move and which ends when told.
type endingEngine struct {
	fakeEngine
	mu   sync.Mutex
	snap engine.Snapshot
}

func (e *endingEngine) Snapshot() engine.Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.snap
}

func (e *endingEngine) update(f func(*engine.Snapshot)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(&e.snap)
}

func listenEnding(t *testing.T) (*endingEngine, *Server, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e := &endingEngine{snap: engine.Snapshot{Started: start, At: start, State: engine.Running, Total: 200, OK: 90, Read: 120}}
	path := filepath.Join(dir, "job.sock")
	srv, err := Listen(path, e, "sim · ids.txt")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	return e, srv, path
}

// watch polls r as an attached screen does (4 times a second) until stop is closed.
func watch(r *Remote, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				r.Snapshot()
			}
		}
	}()
	return &wg
}

// TestAttachedScreenSeesTheFinalNumbers: a job that drains and ends removes its socket right
// after its run; an attached screen was left with its last view ("running, ended", 96 ok ·
// 104 not run while the job wrote 98 ok / 102 not run). The job now waits until the screen
// has fetched the view of its end.
func TestAttachedScreenSeesTheFinalNumbers(t *testing.T) {
	e, srv, path := listenEnding(t)
	r, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wg := watch(r, stop)
	time.Sleep(400 * time.Millisecond)
	e.update(func(s *engine.Snapshot) {
		s.State, s.OK, s.Read, s.Ended, s.At = engine.Draining, 98, 98, time.Now(), time.Now()
	})
	began := time.Now()
	if err := srv.Close(); err != nil { // the job's run returned: it closes its socket at once
		t.Fatal(err)
	}
	if waited := time.Since(began); waited > Linger+time.Second {
		t.Errorf("Close waited %v for one screen, want at most about %v", waited, Linger)
	}
	time.Sleep(600 * time.Millisecond) // the screen's next ticks find the socket gone
	close(stop)
	wg.Wait()
	s := r.Snapshot()
	if s.Ended.IsZero() || s.State != engine.Draining || s.OK != 98 || s.Summary().NotRun() != 102 || r.Lost() {
		t.Errorf("the attached screen's last snapshot: %v, ended %v, %d ok, %d not run, lost %v; want the job's end: draining, ended, 98 ok, 102 not run",
			s.State, !s.Ended.IsZero(), s.OK, s.Summary().NotRun(), r.Lost())
	}
}

// TestAttachedScreenKnowsAJobLost: a job that goes away without an end (killed) leaves the
// screen with its last view, which it must not pass off as the job's end.
func TestAttachedScreenKnowsAJobLost(t *testing.T) {
	_, srv, path := listenEnding(t)
	r, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := srv.Close(); err != nil { // not ended: nothing to wait for
		t.Fatal(err)
	}
	if waited := time.Since(began); waited > Linger/2 {
		t.Errorf("Close of a job that has not ended waited %v", waited)
	}
	s := r.Snapshot()
	if s.Ended.IsZero() || !r.Lost() || s.OK != 90 {
		t.Errorf("after the job went: ended %v, lost %v, %d ok; want ended, lost, the last 90 ok", !s.Ended.IsZero(), r.Lost(), s.OK)
	}
}

// TestStatusRatesAreTheScreens: ctl get's rates are the screen's (probes.Measure), with
// their window, not a computation of their own.
func TestStatusRatesAreTheScreens(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	now := start.Add(30*time.Second + 400*time.Millisecond)
	s := engine.Snapshot{At: now, Started: start, State: engine.Running, Settings: engine.Settings{Rate: 14, Burst: 1},
		Changes: []engine.Change{{At: start.Add(27*time.Second + 500*time.Millisecond), Origin: "tui", Knob: "rate", From: "24/s", To: "14/s"}}}
	var pts []probes.Point
	for sec := 20; sec < 30; sec++ {
		n := int64(22)
		if sec >= 28 {
			n = 14
		}
		pts = append(pts, probes.Point{At: start.Add(time.Duration(sec) * time.Second), Calls: n, TooMany: n / 7})
	}
	st := statusOf("t", 1, s, pts, true)
	f := probes.Measure(s, pts)
	if st.RateWindow != "last 2s" || st.CallsPerSecond != 14 || st.RateWindow != f.Window() || st.CallsPerSecond != f.CallsPerSecond() || st.TooManyShare != f.TooManyShare() {
		t.Errorf("status: %.1f calls/s, %.3f 429s over %q; the screen's %.1f, %.3f over %q", st.CallsPerSecond, st.TooManyShare, st.RateWindow,
			f.CallsPerSecond(), f.TooManyShare(), f.Window())
	}
	if st := statusOf("t", 1, s, nil, false); st.RateWindow != "" {
		t.Errorf("a job without statistics says its rates are %q", st.RateWindow)
	}
}
