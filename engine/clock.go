package engine

import "time"

// Clock is the engine's source of time. The engine reads time only through it, so that a run
// can be driven by a virtual clock (what-if replay) as well as by the wall clock.
type Clock interface {
	// Now returns the current instant.
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer from a [Clock].
type Timer interface {
	// C returns the channel on which the timer delivers its instant.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it stopped it.
	Stop() bool
}

// WallClock is the [Clock] of the real world (and of a testing/synctest bubble).
type WallClock struct{}

// Now returns time.Now().
func (WallClock) Now() time.Time { return time.Now() }

// NewTimer returns a [time.Timer] as a [Timer].
func (WallClock) NewTimer(d time.Duration) Timer { return wallTimer{time.NewTimer(d)} }

type wallTimer struct{ t *time.Timer }

func (w wallTimer) C() <-chan time.Time { return w.t.C }
func (w wallTimer) Stop() bool          { return w.t.Stop() }
