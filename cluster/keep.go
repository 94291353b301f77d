package cluster

import (
	"sync"
	"sync/atomic"
	"time"
)

// Kept leases. A host whose calls end fast (a target that answers in a millisecond) would pay
// Redis a round trip to give each call's lease back and another to take one for the next
// call, and would spend more on the trips than on the calls. While nobody else wants the
// limits' slots and no limit meters the calls (no rate, no tpm), Redis says so with the lease
// (the acquire script's keep), and the host may hand the lease of an ended call to its next
// call without asking again, for keepFor after Redis admitted it. Redis then judges every
// lease again at least that often: another host's or job's wish for a slot, a removed limit
// or a lowered cap reaches the host within keepFor; a hold (another sharer's 429) and a
// change of a limit are announced on its channel and end the keeping at once. The calls
// started on kept leases are counted in Redis with the next trip.

// keepFor is how long after Redis admitted a lease the host may hand it from call to call.
const keepFor = 50 * time.Millisecond

// keepIdle is how long a kept lease waits for the host's next call before it goes back: a
// pause, a drain, a lowered parallelism or the job's end give their places back at once.
const keepIdle = 5 * time.Millisecond

// keptLeases are a gate's leases of ended calls, waiting for the host's next call.
type keptLeases struct {
	mu    sync.Mutex
	free  []keptLease
	timer *time.Timer // the next sweep; nil when none is due
	// gen counts the events after which no lease admitted before may be kept (a hold, a
	// change of a limit, the gate's close): a lease keeps the gen it was admitted in.
	gen atomic.Uint64
	// calls counts the calls started on kept leases, not yet counted in Redis; taken counts
	// them all.
	calls, taken atomic.Int64
}

// keptLease is a kept lease and since when it waits.
type keptLease struct {
	l     *limitLease
	since time.Time
}

// keepable says whether l may still go to another call: Redis allowed it, it is within
// keepFor of its admission, and nothing since (a hold, a change) took that away.
func (g *Gate) keepable(l *limitLease, now time.Time) bool {
	return now.Before(l.keepUntil) && l.gen == g.kept.gen.Load()
}

// takeKept returns a kept lease for a call about to start, or nil when there is none: the
// call then asks Redis.
func (g *Gate) takeKept() *limitLease {
	k := &g.kept
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	// The newest only (the oldest are the first to go back): one that may no longer be kept
	// is left to the sweep, and the call asks Redis.
	n := len(k.free)
	if n == 0 || !g.keepable(k.free[n-1].l, now) {
		return nil
	}
	l := k.free[n-1].l
	k.free[n-1] = keptLease{}
	k.free = k.free[:n-1]
	k.calls.Add(1)
	k.taken.Add(1)
	g.calling.Add(1)
	return l
}

// keep keeps the lease of an ended call for the next, and reports whether it did; a lease it
// does not keep is the caller's to give back. A call of this host that waits for a slot is
// woken to take it.
func (g *Gate) keep(l *limitLease) bool {
	now := time.Now()
	if !g.keepable(l, now) {
		return false
	}
	k := &g.kept
	k.mu.Lock()
	k.free = append(k.free, keptLease{l: l, since: now})
	if k.timer == nil {
		k.timer = time.AfterFunc(keepIdle, g.sweep)
	}
	k.mu.Unlock()
	for i := range g.waiters {
		g.waiters[i].wakeSlot()
	}
	return true
}

// sweep gives back the kept leases that waited keepIdle or may no longer be kept, in one
// trip, and sets the next sweep for the others.
func (g *Gate) sweep() {
	k := &g.kept
	now := time.Now()
	var back []*limitLease
	k.mu.Lock()
	stay := k.free[:0]
	for _, e := range k.free {
		if now.Sub(e.since) >= keepIdle || !g.keepable(e.l, now) {
			back = append(back, e.l)
		} else {
			stay = append(stay, e)
		}
	}
	clear(k.free[len(stay):])
	k.free = stay
	k.timer = nil
	if len(stay) > 0 {
		k.timer = time.AfterFunc(stay[0].since.Add(keepIdle).Sub(now), g.sweep)
	}
	k.mu.Unlock()
	g.giveBack(back, 0)
}

// dropKept ends the keeping of every lease admitted so far and gives back those kept: after a
// hold, a change of a limit, and when the gate closes.
func (g *Gate) dropKept() {
	g.kept.gen.Add(1)
	g.sweep()
}

// giveBack releases leases (and sets hold) with the next trip; those it cannot give back now
// go back once Redis answers.
func (g *Gate) giveBack(ls []*limitLease, hold time.Duration) {
	if len(ls) == 0 {
		return
	}
	members := make([]string, len(ls))
	for i, l := range ls {
		l.stop()
		members[i] = l.member
	}
	start := time.Now()
	if err := g.round.release(members, hold); err != nil {
		g.out.Report(err, start)
		for _, m := range members {
			g.releaseLater(m, hold, start)
		}
	}
}
