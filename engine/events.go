package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind uint8

const (
	// CallStart reports that the engine admitted a call (Worker, Index, Attempt, InFlight at
	// admission); the call may still wait for its turn in the adapter (CallEnd's Wait).
	CallStart EventKind = iota + 1
	// CallEnd reports that a call ended (adds Latency, Wait, Status, Verdict, Message).
	CallEnd
	// ControlChange reports that a knob or the run state changed (Change).
	ControlChange
	// HoldStart reports that a server's Retry-After holds all new calls until Until.
	HoldStart
	// Warning reports something the operator should know (Message), e.g. open files too low.
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
	InFlight int   // calls in flight when this call started, itself included (CallStart, CallEnd)
	// Latency is a CallEnd's time from when the call really started to its answer; Wait the
	// time before that, from the engine's admission, waiting for a shared limit or a host's
	// turn ([CallStarts]).
	Latency time.Duration
	Wait    time.Duration
	Status  int
	Verdict Verdict
	// Err is set on CallEnd when no answer was obtained (network error, timeout, canceled).
	Err     bool
	Message string
	// RetryAfter is the wait a CallEnd's answer asked for (Retry-After), 0 if none.
	RetryAfter time.Duration
	// Final is set on a CallEnd whose item got its row (for a batch, its first item's); it is
	// false when the item will be tried again, so a recording can count retries and rows.
	Final  bool
	Until  time.Time
	Change Change
}

// Subscription receives a run's events through a bounded buffer. When the buffer is full the
// engine drops the event and counts it rather than wait: an observer can never slow calls.
type Subscription struct {
	C       <-chan Event
	ch      chan Event
	kinds   uint32 // bit k set: wants EventKind k
	dropped atomic.Int64
	bus     *bus
}

// Dropped returns how many events were dropped because the buffer was full.
func (s *Subscription) Dropped() int64 { return s.dropped.Load() }

// Close stops delivery; C is not closed, so a reader selecting on it simply sees no more.
func (s *Subscription) Close() { s.bus.remove(s) }

// bus fans events out to subscriptions without ever blocking the publisher.
type bus struct {
	mu    sync.Mutex
	subs  atomic.Pointer[[]*Subscription]
	wants atomic.Uint32 // the kinds some subscription wants
}

func kindBits(kinds []EventKind) uint32 {
	if len(kinds) == 0 {
		return ^uint32(0)
	}
	var bits uint32
	for _, k := range kinds {
		bits |= 1 << k
	}
	return bits
}

func (b *bus) subscribe(buffer int, kinds []EventKind) *Subscription {
	ch := make(chan Event, max(buffer, 1))
	s := &Subscription{C: ch, ch: ch, bus: b, kinds: kindBits(kinds)}
	b.mu.Lock()
	defer b.mu.Unlock()
	var next []*Subscription
	if cur := b.subs.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, s)
	b.store(next)
	return s
}

// store publishes a new list of subscriptions. It requires that b.mu is held.
func (b *bus) store(subs []*Subscription) {
	var wants uint32
	for _, s := range subs {
		wants |= s.kinds
	}
	b.subs.Store(&subs)
	b.wants.Store(wants)
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
	b.store(next)
}

// wanted reports whether anybody listens for events of kind k, so that the hot path can skip
// building them.
func (b *bus) wanted(k EventKind) bool { return b.wants.Load()&(1<<k) != 0 }

func (b *bus) publish(ev Event) {
	cur := b.subs.Load()
	if cur == nil {
		return
	}
	for _, s := range *cur {
		if s.kinds&(1<<ev.Kind) == 0 {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			s.dropped.Add(1)
		}
	}
}
