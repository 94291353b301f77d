package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind uint8

const (
	// CallStart: a call began (Worker, Index, Attempt, InFlight at start).
	CallStart EventKind = iota + 1
	// CallEnd: a call ended (adds Latency, Status, Verdict, Message).
	CallEnd
	// ControlChange: a knob or the run state changed (Change).
	ControlChange
	// HoldStart: a server's Retry-After holds all new calls until Until.
	HoldStart
	// Warning: something the operator should know (Message), e.g. open files too low.
	Warning
)

// Event is one thing that happened in a run. Events are values; an observer may keep them.
type Event struct {
	Kind     EventKind
	At       time.Time
	Worker   int
	Index    int64 // item index; for a batch, its first item
	Items    int   // items in the call (1 unless the adapter batches)
	Attempt  int   // 1 for the first attempt
	InFlight int   // calls in flight when this call started, itself included
	Latency  time.Duration
	Status   int
	Verdict  Verdict
	// Err is set on CallEnd when no answer was obtained (network error, timeout, canceled).
	Err     bool
	Message string
	// RetryAfter is the wait a CallEnd's answer asked for (Retry-After), 0 if none.
	RetryAfter time.Duration
	Until      time.Time
	Change     Change
}

// Subscription receives a run's events through a bounded buffer. When the buffer is full the
// engine drops the event and counts it rather than wait: an observer can never slow calls.
type Subscription struct {
	C       <-chan Event
	ch      chan Event
	dropped atomic.Int64
	bus     *bus
}

// Dropped returns how many events were dropped because the buffer was full.
func (s *Subscription) Dropped() int64 { return s.dropped.Load() }

// Close stops delivery; C is not closed, so a reader selecting on it simply sees no more.
func (s *Subscription) Close() { s.bus.remove(s) }

// bus fans events out to subscriptions without ever blocking the publisher.
type bus struct {
	mu   sync.Mutex
	subs atomic.Pointer[[]*Subscription]
}

func (b *bus) subscribe(buffer int) *Subscription {
	ch := make(chan Event, max(buffer, 1))
	s := &Subscription{C: ch, ch: ch, bus: b}
	b.mu.Lock()
	defer b.mu.Unlock()
	var next []*Subscription
	if cur := b.subs.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, s)
	b.subs.Store(&next)
	return s
}

func (b *bus) remove(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.subs.Load()
	if cur == nil {
		return
	}
	next := make([]*Subscription, 0, len(*cur))
	for _, x := range *cur {
		if x != s {
			next = append(next, x)
		}
	}
	b.subs.Store(&next)
}

// active reports whether anybody listens, so the hot path can skip building events.
func (b *bus) active() bool {
	cur := b.subs.Load()
	return cur != nil && len(*cur) > 0
}

func (b *bus) publish(ev Event) {
	cur := b.subs.Load()
	if cur == nil {
		return
	}
	for _, s := range *cur {
		select {
		case s.ch <- ev:
		default:
			s.dropped.Add(1)
		}
	}
}
