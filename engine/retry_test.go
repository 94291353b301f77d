package engine

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// TestRetryAfterHold: a 429 with Retry-After makes that item wait what the server asked, and
// holds every worker for the same time: no call starts during the hold, and after it the
// workers come back spread over at most HoldSpread of the hold. A Retry-After above MaxBackoff
// is capped at MaxBackoff, for the item and for the hold.
func TestRetryAfterHold(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter time.Duration
		maxBackoff time.Duration
		hold       time.Duration // what the test expects
	}{
		{"honoured", 2 * time.Second, time.Minute, 2 * time.Second},
		{"capped", 10 * time.Minute, 5 * time.Second, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const workers = 8
				rec := newRecorder()
				// Item 0 ends first, at +100ms, with the 429; the other first calls end 1..7 ms later,
				// so that no call ends in the same instant as the 429.
				a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
					if it.Index == 0 && c.attempt == 1 {
						time.Sleep(100 * time.Millisecond)
						return Outcome{Verdict: Retry, Status: 429, Message: "429 Too Many Requests", RetryAfter: tc.retryAfter}, nil
					}
					time.Sleep(100*time.Millisecond + time.Duration(1+it.Index%7)*time.Millisecond)
					return Outcome{Verdict: OK, Status: 200}, nil
				})
				e, out := newTestEngine(t, Config{
					Settings:   Settings{Parallelism: workers},
					Retries:    3,
					MaxBackoff: tc.maxBackoff,
					Adapter:    a,
					Jitter:     newRand(5).Float64,
				}, numbered(100))
				sub := e.Subscribe(1024)
				t0 := time.Now()
				wait := runAsync(context.Background(), e)

				tooMany := t0.Add(100 * time.Millisecond)
				until := tooMany.Add(tc.hold)
				time.Sleep(100*time.Millisecond + tc.hold/2)
				snap := e.Snapshot()
				if !snap.HoldUntil.Equal(until) {
					t.Errorf("Snapshot.HoldUntil = +%v, want +%v", snap.HoldUntil.Sub(t0), until.Sub(t0))
				}
				if snap.ByState[WorkerHeld] != workers || snap.InFlight != 0 {
					t.Errorf("Snapshot during the hold: %d held, %d in flight; want %d, 0 (by state %v)", snap.ByState[WorkerHeld], snap.InFlight, workers, snap.ByState)
				}

				s, err := wait()
				if err != nil || s.OK != 100 || s.TooMany != 1 {
					t.Fatalf("Run() = ok %d, 429s %d, %v; want 100, 1, nil", s.OK, s.TooMany, err)
				}
				var after []time.Time // starts from the 429 on
				for _, c := range rec.snapshot() {
					if c.item == "0" && c.attempt == 2 {
						if d := c.at.Sub(tooMany); d < tc.hold || d > tc.hold+HoldSpread(tc.hold) {
							t.Errorf("item 0 retried %v after its 429, want in [%v, %v]", d, tc.hold, tc.hold+HoldSpread(tc.hold))
						}
					}
					if c.at.Before(tooMany) {
						continue
					}
					if c.at.Before(until) {
						t.Errorf("item %s started %v after the 429, during the %v hold", c.item, c.at.Sub(tooMany), tc.hold)
					}
					after = append(after, c.at)
				}
				// Each worker's first start after the hold lies in [until, until+spread], and they
				// do not all come back in the same instant.
				spread := HoldSpread(tc.hold)
				distinct := map[time.Time]bool{}
				for _, at := range after[:workers] {
					if at.Before(until) || at.After(until.Add(spread)) {
						t.Errorf("a worker came back at +%v after the hold's end, want within [0, %v]", at.Sub(until), spread)
					}
					distinct[at] = true
				}
				if len(distinct) < 2 {
					t.Errorf("all %d workers came back at the same instant after the hold, want them spread", workers)
				}
				r := rowsByItem(t, parseRows(t, out.Bytes()))["0"]
				if !r.OK || r.Attempts != 2 || r.RetryAfterMS != tc.retryAfter.Milliseconds() {
					t.Errorf("item 0 row = %+v, want ok after 2 attempts with retry_after_ms %d", r, tc.retryAfter.Milliseconds())
				}
				var held bool
				for _, ev := range drainEvents(sub) {
					if ev.Kind == HoldStart {
						held = true
						if !ev.Until.Equal(until) || !ev.At.Equal(tooMany) {
							t.Errorf("HoldStart at +%v until +%v, want +%v until +%v", ev.At.Sub(t0), ev.Until.Sub(t0), tooMany.Sub(t0), until.Sub(t0))
						}
					}
				}
				if !held {
					t.Error("no HoldStart event")
				}
			})
		})
	}
}

// TestTimeout: a call that does not return before the per-call timeout fails with "timeout
// after …", is retried, and its attempts are counted.
func TestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
			<-ctx.Done()
			return Outcome{}, ctx.Err()
		})
		e, out := newTestEngine(t, Config{
			Settings:   Settings{Parallelism: 3},
			Retries:    2,
			MaxBackoff: 100 * time.Millisecond,
			Timeout:    2 * time.Second,
			Adapter:    a,
		}, numbered(3))
		s, err := e.Run(context.Background())
		if err != nil || s.Failed != 3 || s.Calls != 9 || s.Retries != 6 {
			t.Fatalf("Run() = failed %d, calls %d, retries %d, %v; want 3, 9, 6, nil", s.Failed, s.Calls, s.Retries, err)
		}
		for key, r := range rowsByItem(t, parseRows(t, out.Bytes())) {
			if r.OK || r.Attempts != 3 || r.Error != "timeout after 2s after 3 attempts" || r.LatencyMS != 2000 {
				t.Errorf("item %s row = %+v, want failed, 3 attempts, error %q, latency 2000ms", key, r, "timeout after 2s after 3 attempts")
			}
			if rec.per[key] != 3 {
				t.Errorf("item %s: adapter called %d times, want 3", key, rec.per[key])
			}
		}
	})
}

// TestBackoffReleasesSlot: an item waiting out its backoff does not hold a parallelism slot:
// with parallelism 1 the next items run meanwhile, and the retry runs once it is due.
func TestBackoffReleasesSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
			time.Sleep(10 * time.Millisecond)
			if it.Index == 0 && c.attempt == 1 {
				return Outcome{Verdict: Retry, Status: 503, Message: "503 Service Unavailable"}, nil
			}
			return Outcome{Verdict: OK, Status: 200}, nil
		})
		e, _ := newTestEngine(t, Config{
			Settings: Settings{Parallelism: 1},
			Retries:  1,
			Adapter:  a,
			Jitter:   func() float64 { return 0.999 }, // a backoff of 249.75ms after the first attempt
		}, numbered(50))
		t0 := time.Now()
		s, err := e.Run(context.Background())
		if err != nil || s.OK != 50 {
			t.Fatalf("Run() = ok %d, %v; want 50, nil", s.OK, err)
		}
		calls := rec.snapshot()
		if calls[1].item != "1" || !calls[1].at.Equal(t0.Add(10*time.Millisecond)) {
			t.Errorf("second call = item %s at +%v, want item 1 at +10ms (while item 0 backs off)", calls[1].item, calls[1].at.Sub(t0))
		}
		for _, c := range calls {
			if c.item == "0" && c.attempt == 2 {
				if d := c.at.Sub(t0); d < 259750*time.Microsecond || d > 270*time.Millisecond {
					t.Errorf("item 0 retried at +%v, want at +260ms: due at +259.75ms, then the next free slot", d)
				}
			}
		}
	})
}

// TestFinalAnswersFailAtOnce: a final answer (Fail verdict) and a Permanent error are not
// retried; a permanent error after a retry says how many attempts were made.
func TestFinalAnswersFailAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
			switch {
			case it.Line == "404":
				return Outcome{Verdict: Fail, Status: 404, Message: "404 Not Found"}, nil
			case it.Line == "perm":
				return Outcome{}, Permanent(errors.New("template: no field .x"))
			case c.attempt == 1:
				return Outcome{Verdict: Retry, Status: 500, Message: "500 Internal Server Error"}, nil
			default:
				return Outcome{}, Permanent(errors.New("template: no field .y"))
			}
		})
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 2}, Retries: 5, Adapter: a}, "404\nperm\nlater\n")
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		rows := rowsByItem(t, parseRows(t, out.Bytes()))
		for _, want := range []struct {
			item, err      string
			status, called int
		}{
			{"404", "404 Not Found", 404, 1},
			{"perm", "template: no field .x", 0, 1},
			{"later", "template: no field .y after 2 attempts", 0, 2},
		} {
			r := rows[want.item]
			if r.OK || r.Error != want.err || r.Status != want.status || r.Attempts != want.called || rec.per[want.item] != want.called {
				t.Errorf("item %s row = %+v, %d calls; want error %q, status %d, %d attempts and calls",
					want.item, r, rec.per[want.item], want.err, want.status, want.called)
			}
		}
	})
}

// TestRetriesExhaustedKeepLastAnswer: each retry waits at least as Backoff allows; the row
// keeps the last answer's status and message.
func TestRetriesExhaustedKeepLastAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
			return Outcome{Verdict: Retry, Status: 500 + c.attempt, Message: strconv.Itoa(500+c.attempt) + " error"}, nil
		})
		e, out := newTestEngine(t, Config{
			Settings: Settings{Parallelism: 1},
			Retries:  3,
			Adapter:  a,
			Jitter:   func() float64 { return 0.5 },
		}, "x\n")
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		calls := rec.snapshot()
		for i := 1; i < len(calls); i++ {
			if got, want := calls[i].at.Sub(calls[i-1].at), Backoff(i, 0, 60*time.Second, 0.5); got != want {
				t.Errorf("wait before attempt %d = %v, want Backoff(%d, 0, 60s, 0.5) = %v", i+1, got, i, want)
			}
		}
		r := parseRows(t, out.Bytes())[0]
		if want := "504 error after 4 attempts"; r.Error != want || r.Status != 504 || r.Attempts != 4 {
			t.Errorf("row = %+v, want status 504, error %q, 4 attempts", r, want)
		}
	})
}
