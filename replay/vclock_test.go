package replay

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestVirtualClockFiresTimersInOrderOfTheirTime(t *testing.T) {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	c := NewVirtualClock(start)
	c.Grain = 0
	var mu sync.Mutex
	var got []time.Duration
	var wg sync.WaitGroup
	// Each goroutine sleeps twice, so that timers are made while the clock runs too.
	for _, d := range []time.Duration{3 * time.Hour, time.Second, 90 * time.Minute, time.Millisecond} {
		wg.Go(func() {
			for range 2 {
				if err := c.Sleep(context.Background(), d); err != nil {
					t.Error(err)
				}
				mu.Lock()
				got = append(got, c.Now().Sub(start))
				mu.Unlock()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	began := time.Now()
	if err := c.Run(done); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, time.Second, 2 * time.Second, 90 * time.Minute, 3 * time.Hour, 3 * time.Hour, 6 * time.Hour}
	if !slices.Equal(got, want) {
		t.Fatalf("woke at %v, want %v", got, want)
	}
	if real := time.Since(began); real > 5*time.Second {
		t.Fatalf("six virtual hours took %v of real time", real)
	}
}

func TestVirtualClockStoppedTimerNeverFires(t *testing.T) {
	c := NewVirtualClock(time.Unix(0, 0))
	stopped := c.NewTimer(time.Second)
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	if stopped.Stop() {
		t.Fatal("a second Stop reported true")
	}
	late := c.NewTimer(2 * time.Second)
	done := make(chan struct{})
	go func() {
		<-late.C()
		close(done)
	}()
	if err := c.Run(done); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped.C():
		t.Fatal("a stopped timer fired")
	default:
	}
	if now := c.Now(); now != time.Unix(2, 0) {
		t.Fatalf("clock at %v, want 2s", now)
	}
	if late.Stop() {
		t.Fatal("Stop of a fired timer reported true")
	}
}

func TestVirtualClockZeroTimerFiresAtOnce(t *testing.T) {
	c := NewVirtualClock(time.Unix(0, 0))
	select {
	case <-c.NewTimer(0).C():
	default:
		t.Fatal("a timer of 0 did not fire at once")
	}
}

func TestVirtualClockSaysWhenNothingCanHappen(t *testing.T) {
	c := NewVirtualClock(time.Unix(0, 0))
	c.StuckAfter = 50 * time.Millisecond
	never := make(chan struct{})
	go func() { <-never }() // waits on something no timer will ever bring
	defer close(never)
	if err := c.Run(make(chan struct{})); !errors.Is(err, ErrStuck) {
		t.Fatalf("Run = %v, want ErrStuck", err)
	}
}

func TestVirtualClockSleepEndsWithItsContext(t *testing.T) {
	c := NewVirtualClock(time.Unix(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep = %v, want context.Canceled", err)
	}
}
