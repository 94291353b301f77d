package replay

import (
	"container/heap"
	"context"
	"errors"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// VirtualClock is an [engine.Clock] whose time moves only when every goroutine of the process
// is blocked: then it jumps to the earliest pending timer and fires it. An engine driven by
// it runs an hour-long job in the time its code takes, with the same decisions it would make
// in real time.
//
// It knows that everything is blocked the way testing/synctest does, from the scheduler: with
// one P (GOMAXPROCS 1, set by [VirtualClock.Run]) the goroutine running Run is the only one
// running, so an empty run queue means every other goroutine waits on a channel, a lock or a
// virtual timer. Goroutines that wait on real time or I/O do not belong in a virtual run.
type VirtualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers timerHeap
	seq    uint64
	// Grain merges timers due within it into one step: a coarser clock is much faster and a
	// microsecond changes no prediction.
	Grain time.Duration
	// StuckAfter is how long, in real time, Run waits with nothing pending before it gives up.
	StuckAfter time.Duration
}

// NewVirtualClock returns a virtual clock that reads start.
func NewVirtualClock(start time.Time) *VirtualClock {
	return &VirtualClock{now: start, Grain: 100 * time.Microsecond, StuckAfter: 2 * time.Second}
}

// Now returns the virtual time.
func (c *VirtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires when the virtual time has moved on by d.
func (c *VirtualClock) NewTimer(d time.Duration) engine.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &vtimer{c: c, ch: make(chan time.Time, 1), when: c.now.Add(d), index: -1}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.seq++
	t.seq = c.seq
	heap.Push(&c.timers, t)
	return t
}

// Sleep waits for d of virtual time, or until ctx ends.
func (c *VirtualClock) Sleep(ctx context.Context, d time.Duration) error {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrStuck says every goroutine waited and no timer was pending: nothing could ever happen.
var ErrStuck = errors.New("replay: the virtual run is stuck: everything waits and no timer is pending")

// Run moves the virtual time until done is closed, or returns ErrStuck when nothing can move
// any more. It sets GOMAXPROCS to 1 while it runs (see [VirtualClock]).
func (c *VirtualClock) Run(done <-chan struct{}) error {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	idle := newIdleProbe()
	var stuckSince time.Time
	for {
		select {
		case <-done:
			return nil
		default:
		}
		runtime.Gosched()
		if !idle.everythingWaits() {
			stuckSince = time.Time{}
			continue
		}
		if c.advance() {
			stuckSince = time.Time{}
			continue
		}
		// Nothing pending. The run may be about to close done; give it real time to do so, then
		// call it stuck.
		if stuckSince.IsZero() {
			stuckSince = time.Now()
		} else if time.Since(stuckSince) > c.StuckAfter {
			return ErrStuck
		}
		time.Sleep(time.Millisecond)
	}
}

// advance jumps to the earliest pending timer and fires it with every timer due within the
// grain after it; it reports false when no timer is pending.
func (c *VirtualClock) advance() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return false
	}
	first := c.timers[0].when
	if first.After(c.now) {
		c.now = first
	}
	limit := c.now.Add(c.Grain)
	for len(c.timers) > 0 && !c.timers[0].when.After(limit) {
		t := heap.Pop(&c.timers).(*vtimer)
		if t.when.After(c.now) {
			c.now = t.when
		}
		t.ch <- c.now // buffered and fired once: never blocks
	}
	return true
}

// idleProbe reads the scheduler's run queue.
type idleProbe struct{ samples []metrics.Sample }

func newIdleProbe() *idleProbe {
	return &idleProbe{samples: []metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}}
}

// everythingWaits reports whether no goroutine is ready to run but the caller.
func (p *idleProbe) everythingWaits() bool {
	metrics.Read(p.samples)
	return p.samples[0].Value.Kind() == metrics.KindUint64 && p.samples[0].Value.Uint64() == 0
}

type vtimer struct {
	c     *VirtualClock
	ch    chan time.Time
	when  time.Time
	seq   uint64
	index int // in the heap; -1 when fired or stopped
}

func (t *vtimer) C() <-chan time.Time { return t.ch }

func (t *vtimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.c.timers, t.index)
	return true
}

// timerHeap orders timers by when, then by creation.
type timerHeap []*vtimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].when.Equal(h[j].when) {
		return h[i].seq < h[j].seq
	}
	return h[i].when.Before(h[j].when)
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*vtimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
