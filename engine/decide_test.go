package engine

import (
	"math"
	"strings"
	"testing"
	"time"
)

// Tables for the pure deciders: Backoff, HoldSpread, ParseRate, FormatRate and the names.

func TestBackoff(t *testing.T) {
	check := func(attempt int, retryAfter, maxWait time.Duration, jitter float64, want time.Duration) {
		t.Helper()
		if got := Backoff(attempt, retryAfter, maxWait, jitter); got != want {
			t.Errorf("Backoff(%d, %v, %v, %v) = %v, want %v", attempt, retryAfter, maxWait, jitter, got, want)
		}
	}
	// Exponential with full jitter: uniform in [0, min(maxWait, 250ms·2^(attempt-1))).
	check(1, 0, time.Minute, 0, 0)                                          // jitter 0 waits nothing
	check(1, 0, time.Minute, 0.5, 125*time.Millisecond)                     // half of the first ceiling, 250ms
	check(1, 0, time.Minute, 0.999, 249750*time.Microsecond)                // just under the ceiling
	check(2, 0, time.Minute, 0.5, 250*time.Millisecond)                     // ceiling doubles: 500ms
	check(3, 0, time.Minute, 0.999, 999*time.Millisecond)                   // 1s
	check(8, 0, time.Minute, 0.5, 16*time.Second)                           // 32s, still under the cap
	check(9, 0, time.Minute, 0.5, 30*time.Second)                           // 64s is capped at 60s
	check(1000, 0, time.Minute, 0.999, 59940*time.Millisecond)              // no overflow at huge attempts
	check(1, 0, 100*time.Millisecond, 0.5, 50*time.Millisecond)             // a cap below the base ceiling
	check(0, 0, time.Minute, 0.5, 125*time.Millisecond)                     // attempt 0 counts as the first
	check(3, 0, 0, 0.5, 0)                                                  // no room at all
	check(1, 2*time.Second, time.Minute, 0.5, 2*time.Second)                // Retry-After honoured: a floor over the jitter
	check(5, 2*time.Second, time.Minute, 0, 2*time.Second)                  // whatever the attempt
	check(1, time.Millisecond, time.Minute, 0.999, 249750*time.Microsecond) // a short Retry-After does not shorten the backoff
	check(8, 2*time.Second, time.Minute, 0.5, 16*time.Second)               // a later attempt backs off past it
	check(1, 10*time.Minute, time.Minute, 0.5, time.Minute)                 // Retry-After capped at maxWait
	check(1, 90*time.Second, 30*time.Second, 0.999, 30*time.Second)

	// Whatever the attempt and jitter, the wait is in [0, maxWait).
	for attempt := 1; attempt <= 64; attempt++ {
		for _, j := range []float64{0, 0.25, 0.5, 0.999} {
			if got := Backoff(attempt, 0, time.Minute, j); got < 0 || got >= time.Minute {
				t.Errorf("Backoff(%d, 0, 1m, %v) = %v, want in [0, 1m)", attempt, j, got)
			}
		}
	}
}

func TestHoldSpread(t *testing.T) {
	check := func(hold, want time.Duration) {
		t.Helper()
		if got := HoldSpread(hold); got != want {
			t.Errorf("HoldSpread(%v) = %v, want %v", hold, got, want)
		}
	}
	check(0, 0)                                      // no hold, no spread
	check(100*time.Millisecond, 25*time.Millisecond) // a quarter of the hold
	check(2*time.Second, 500*time.Millisecond)
	check(8*time.Second, 2*time.Second) // a quarter is exactly the cap
	check(time.Minute, 2*time.Second)   // capped at 2s
}

func TestParseRate(t *testing.T) {
	check := func(in string, want float64) {
		t.Helper()
		got, err := ParseRate(in)
		if err != nil || math.Abs(got-want) > 1e-12 {
			t.Errorf("ParseRate(%q) = %v, %v, want %v, nil", in, got, err, want)
		}
	}
	check("50", 50)
	check("50/s", 50)
	check("3000/m", 50)
	check("1000/h", 1000.0/3600)
	check("2.5/s", 2.5)
	check(" 50 / s ", 50)
	check("1/min", 1.0/60)
	check("10/sec", 10)
	check("5/second", 5)
	check("60/minute", 1)
	check("7/hour", 7.0/3600)
	check("1e3", 1000)
	check("0", 0)         // no cap
	check("0/s", 0)       // no cap
	check("", 0)          // no cap
	check("unlimited", 0) // no cap
	check("none", 0)      // no cap

	for _, bad := range []string{"abc", "-5", "-5/s", "5/d", "5/", "/s", "5//s", "NaN", "Inf", "1e10", "fast", "50 per second"} {
		if got, err := ParseRate(bad); err == nil || !strings.HasPrefix(err.Error(), "engine: rate ") || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseRate(%q) = %v, %v, want an error starting \"engine: rate \" quoting the input", bad, got, err)
		}
	}
}

func TestFormatRate(t *testing.T) {
	check := func(perSecond float64, want string) {
		t.Helper()
		if got := FormatRate(perSecond); got != want {
			t.Errorf("FormatRate(%v) = %q, want %q", perSecond, got, want)
		}
	}
	check(0, "unlimited")
	check(-1, "unlimited")
	check(50, "50/s")
	check(1, "1/s")
	check(2.5, "2.5/s")
	check(0.5, "30/m")             // below 1/s: per minute
	check(1.0/60, "1/m")           //
	check(1000.0/3600, "16.667/m") // three decimals at most
	check(1.0/3600, "1/h")         // below 1/m: per hour
	check(2.0/3600, "2/h")

	// What FormatRate writes, ParseRate reads back (to the rounding of three decimals).
	for _, r := range []float64{1000, 50, 2.5, 1, 0.5, 1.0 / 60, 1000.0 / 3600, 1.0 / 3600, 5.0 / 3600} {
		back, err := ParseRate(FormatRate(r))
		if err != nil || math.Abs(back-r) > r*1e-4 {
			t.Errorf("ParseRate(FormatRate(%v) = %q) = %v, %v, want %v", r, FormatRate(r), back, err, r)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Running.String(), "running"},
		{Paused.String(), "paused"},
		{Draining.String(), "draining"},
		{Stopping.String(), "stopping"},
		{Done.String(), "done"},
		{WorkerIdle.String(), "idle"},
		{WorkerPacing.String(), "pacing"},
		{WorkerRateWait.String(), "rate-wait"},
		{WorkerHeld.String(), "held"},
		{WorkerCalling.String(), "calling"},
		{WorkerOff.String(), "off"},
		{WorkerWaiting.String(), "waiting"},
		{OK.String(), "ok"},
		{Retry.String(), "retry"},
		{Fail.String(), "fail"},
		{Change{Origin: "tui", Knob: "parallelism", From: "16", To: "24"}.String(), "parallelism 16 → 24 (tui)"},
	} {
		if tc.got != tc.want {
			t.Errorf("String() = %q, want %q", tc.got, tc.want)
		}
	}
}

func TestSnapshotETA(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		s      Snapshot
		want   time.Duration
		wantOK bool
	}{
		{Snapshot{Started: t0, At: t0.Add(time.Minute), Total: 400, OK: 90, Failed: 10}, 3 * time.Minute, true}, // 100 rows a minute, 300 to go
		{Snapshot{Started: t0, At: t0.Add(time.Minute), Total: -1, OK: 100}, 0, false},                          // unknown total
		{Snapshot{Started: t0, At: t0.Add(time.Minute), Total: 400}, 0, false},                                  // no row yet
		{Snapshot{Started: t0, At: t0.Add(time.Minute), Total: 100, OK: 100}, 0, false},                         // all done
		{Snapshot{Started: t0, At: t0.Add(time.Minute), Ended: t0.Add(time.Minute), Total: 400, OK: 100}, 0, false},
	} {
		if got, ok := tc.s.ETA(); got != tc.want || ok != tc.wantOK {
			t.Errorf("ETA() of %d/%d rows after %v = %v, %v; want %v, %v", tc.s.Done(), tc.s.Total, tc.s.At.Sub(tc.s.Started), got, ok, tc.want, tc.wantOK)
		}
	}
}
