package cluster

import (
	"sync"
	"sync/atomic"
	"time"
)

// outageQuiet is how long Redis must have answered every call before an outage is told over.
// Just after an outage some calls still fail (a connection pool dials again, calls begun
// during the outage end late) while others succeed: without it the outage would be told over
// and again.
const outageQuiet = time.Second

// Outage tells when Redis stops answering and when it answers again: once per outage, in
// order. The parts of a job that talk to Redis (the gate, the work list, the rows, the
// collector) report what each of their operations got; given one Outage, an outage they all
// see is told once, however many of them fail through it.
//
// An outage starts with the first failure of an operation begun after the last outage ended
// (an operation begun during it that fails late is part of it), and ends a second after its
// last failure if an operation succeeded since (else on the next success). Report is safe
// for concurrent use and waits on nothing but the Outage's own lock; a success while Redis
// answers costs an atomic load.
type Outage struct {
	tell  func(error)
	quiet time.Duration
	down  atomic.Bool // out, for Report's lock-free path

	mu       sync.Mutex
	out      bool        // an outage was told and its end not yet
	lastFail time.Time   // the last failure reported
	lastOK   time.Time   // the last success reported while out
	upAt     time.Time   // when the last outage was told over
	settling *time.Timer // set while a success waits out the quiet period
	closed   bool        // Close was called: nothing more is told
}

// NewOutage returns an Outage that calls tell with the error that started an outage, then
// with nil when it is over. tell is called with the Outage's lock held, so that its calls
// come in order: it must not block (start anything slow on a goroutine of its own).
func NewOutage(tell func(error)) *Outage {
	return &Outage{tell: tell, quiet: outageQuiet}
}

// Report records how an operation begun at start ended: err is nil when Redis answered, or
// why it could not. A nil Outage takes reports and tells nothing.
func (o *Outage) Report(err error, start time.Time) {
	if o == nil || err == nil && !o.down.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	now := time.Now()
	switch {
	case err != nil:
		o.lastFail = now
		if o.out || start.Before(o.upAt) {
			return
		}
		o.out = true
		o.down.Store(true)
		if o.tell != nil {
			o.tell(err)
		}
	case !o.out:
	case now.Sub(o.lastFail) < o.quiet:
		// Redis answers, but too soon to say: said once the quiet period is over unless
		// something fails by then, even if no operation comes to report it.
		o.lastOK = now
		if o.settling == nil {
			o.settling = time.AfterFunc(o.lastFail.Add(o.quiet).Sub(now), o.settle)
		}
	default:
		o.back(now)
	}
}

// settle ends the outage once the quiet period after the last failure is over, if Redis
// answered since: a job whose operations stopped (it ended, or waits) hears it is back too.
func (o *Outage) settle() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.settling = nil
	now := time.Now()
	switch {
	case o.closed, !o.out || o.lastOK.Before(o.lastFail):
		// Over already, or nothing answered since the last failure: the next success looks again.
	case now.Sub(o.lastFail) < o.quiet:
		o.settling = time.AfterFunc(o.lastFail.Add(o.quiet).Sub(now), o.settle)
	default:
		o.back(now)
	}
}

// back tells the outage over; o.mu is held.
func (o *Outage) back(now time.Time) {
	o.out = false
	o.upAt = now
	o.down.Store(false)
	if o.settling != nil {
		o.settling.Stop()
		o.settling = nil
	}
	if o.tell != nil {
		o.tell(nil)
	}
}

// Close ends the Outage's telling: once a run has ended and said its summary, a quiet
// second that ends after it must not print "redis is back" under it. Close is safe to call
// more than once and on a nil Outage.
func (o *Outage) Close() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.settling != nil {
		o.settling.Stop()
		o.settling = nil
	}
}
