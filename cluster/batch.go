package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// gateTrips coalesces a gate's round trips to Redis. A host with 32 calls in flight against a
// target that answers at once would otherwise pay two script calls a call — one to acquire,
// one to release — and Redis, the network and this process's own CPU would spend more on
// them than on the calls. Instead, while trips are out (tripsOut at most), the acquisitions
// and releases that come queue up, and the next trip takes them all: one script that gives
// back every lease that came back (with the longest hold they asked for), then judges every
// call that asks, each in turn as if it had come alone. A request that comes while a trip may
// still go out goes at once: when load is low nothing waits for company, and under load a
// call waits at most for a trip out to come back.
//
// Releases go before acquisitions in a trip, so that a slot freed by one call is there for
// the next. A trip's answer goes to each request; a failed trip fails each, and each then
// does what a failed round trip of its own would (an acquisition waits out the outage, a
// release is given back later).
type gateTrips struct {
	g *Gate
	// rdb carries the trips: a client of the gate's Redis that does not retry a command
	// itself. The gate waits out an outage itself (OutageWait), and one trip carries every
	// call of the host: a trip retried inside the client through a short cut would hold them
	// all, and the cut would go unreported. After close, the gate's own client.
	rdb     *redis.Client
	mu      sync.Mutex
	acq     []*acquireReq
	rel     []*releaseReq
	senders int // goroutines that send trips until nothing is queued
	out     int // trips out
}

// The most requests a trip carries: Redis runs a script alone, so an acquire script of
// thousands of calls would hold every other client of Redis back; a batch of releases is
// cheap per lease.
const (
	maxTripAcquires = 128
	maxTripReleases = 1000
)

// tripsOut is how many trips may be out at once: a request that comes while every one is out
// waits for the next. More than one, so that a call's release or acquisition need not wait
// behind another call's trip for Redis to run it: a slot between a call's release and its
// next acquisition is one another job may take.
const tripsOut = 2

// tripTimeout bounds one trip, as a single release always was: a trip that takes longer
// fails each of its requests, which then wait out an outage.
const tripTimeout = 3 * time.Second

// acquireReq is one call's acquisition: its lease's member, its tokens and what it takes
// from each limit's rate; the answer is the acquire script's for it.
type acquireReq struct {
	member string
	tokens int
	costs  []int
	res    []any
	err    error
	done   chan struct{}
}

// releaseReq is one call's release (or the kept leases' that go back together): the leases'
// members and the hold the call's answer asks for.
type releaseReq struct {
	members []string
	hold    time.Duration
	err     error
	done    chan struct{}
}

// open makes the trips' client, like rdb but for its retries.
func (t *gateTrips) open(rdb *redis.Client) {
	opt := *rdb.Options()
	opt.MaxRetries = -1 // none
	t.rdb = redis.NewClient(&opt)
}

// close closes the trips' client once no trip is out (at most a trip's timeout): the calls
// that end after the gate closed give their leases back through the gate's own client.
func (t *gateTrips) close() {
	t.mu.Lock()
	own := t.rdb
	t.rdb = t.g.rdb
	t.mu.Unlock()
	for deadline := time.Now().Add(tripTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		t.mu.Lock()
		idle := t.out == 0
		t.mu.Unlock()
		if idle {
			break
		}
	}
	_ = own.Close() // its connections only; nothing was pending on them
}

// acquire sends r with the next trip and returns its answer, or ctx's error if ctx ends
// first: the acquisition may still be made, so the caller gives the lease back as for any
// failed acquisition. A caller that makes the trip itself (see go1) waits for it, at most
// tripTimeout, whatever ctx says.
func (t *gateTrips) acquire(ctx context.Context, r *acquireReq) ([]any, error) {
	r.done = make(chan struct{})
	t.mu.Lock()
	t.acq = append(t.acq, r)
	t.go1()
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// release sends the release of members with the next trip and returns once it was made (or
// failed): when a call's Do returns, its place in the limits is free.
func (t *gateTrips) release(members []string, hold time.Duration) error {
	r := &releaseReq{members: members, hold: hold, done: make(chan struct{})}
	t.mu.Lock()
	t.rel = append(t.rel, r)
	t.go1()
	<-r.done
	return r.err
}

// go1 sends what is queued, itself, if every sender is in a trip and another trip may go out:
// the caller's own goroutine makes the trip, so that a call that comes alone pays its round
// trip and nothing more. Once back, if more came meanwhile, a goroutine goes on sending in
// its place. Otherwise a sender that is out will take what is queued. t.mu is held; go1
// unlocks it.
func (t *gateTrips) go1() {
	if t.senders != t.out || t.senders >= tripsOut {
		t.mu.Unlock()
		return
	}
	t.senders++
	t.trip() // unlocks
	t.mu.Lock()
	if len(t.acq) == 0 && len(t.rel) == 0 {
		t.senders--
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	go t.run()
}

// run sends trips until nothing is queued. A sender lives while there is something to send,
// so that an idle gate (or one closed with calls still ending) holds none and needs no
// stopping.
func (t *gateTrips) run() {
	for {
		t.mu.Lock()
		if len(t.acq) == 0 && len(t.rel) == 0 {
			t.senders--
			t.mu.Unlock()
			return
		}
		t.trip()
	}
}

// trip takes what is queued and sends it; t.mu is held, and unlocked on return.
func (t *gateTrips) trip() {
	acq := take(&t.acq, maxTripAcquires)
	rel := take(&t.rel, maxTripReleases)
	rdb := t.rdb
	t.out++
	t.mu.Unlock()
	t.send(rdb, acq, rel)
	t.mu.Lock()
	t.out--
	t.mu.Unlock()
}

// take removes up to n requests from the head of q and returns them.
func take[T any](q *[]T, n int) []T {
	n = min(n, len(*q))
	out := make([]T, n)
	copy(out, *q)
	rest := copy(*q, (*q)[n:])
	clear((*q)[rest:])
	*q = (*q)[:rest]
	return out
}

// send makes one trip: one acquire script that first gives back the leases of rel, then
// judges each call of acq (the release script when there is none). One script rather than a
// pipeline of two: one command for Redis to run, and a trip that fails, fails at once for all.
func (t *gateTrips) send(rdb *redis.Client, acq []*acquireReq, rel []*releaseReq) {
	g := t.g
	ctx, cancel := context.WithTimeout(context.Background(), tripTimeout)
	defer cancel()
	var res []any
	var err error
	// The calls started on kept leases since the last trip are counted with this one (or,
	// if it fails, with the next).
	calls := g.kept.calls.Swap(0)
	if len(acq) == 0 {
		// Releases alone: the release script, which does only that, costs Redis less.
		var members []string
		var hold time.Duration
		for _, r := range rel {
			members, hold = append(members, r.members...), max(hold, r.hold)
		}
		err = limitReleaseScript.Run(ctx, rdb, g.relKeys, g.releaseArgs(members, hold, calls)...).Err()
	} else {
		res, err = limitAcquireScript.Run(ctx, rdb, g.acqKeys, g.tripArgs(acq, rel, calls)...).Slice()
	}
	if err == nil && len(res) != len(acq) {
		err = fmt.Errorf("cluster: %d answers of the limits for %d calls", len(res), len(acq))
	}
	if err != nil {
		err = redisFailure(ctx, err)
		g.kept.calls.Add(calls)
	}
	for _, r := range rel {
		r.err = err
		close(r.done)
	}
	for i, r := range acq {
		r.err = err
		if err == nil {
			r.res, _ = res[i].([]any)
		}
		close(r.done)
	}
}

// tripArgs is the acquire script's ARGV for a trip: the leases of rel to give back, with the
// longest hold they asked for, the calls started on kept leases, and the calls of acq.
func (g *Gate) tripArgs(acq []*acquireReq, rel []*releaseReq, calls int64) []any {
	var hold time.Duration
	var members []string
	for _, r := range rel {
		hold = max(hold, r.hold)
		members = append(members, r.members...)
	}
	args := make([]any, 0, 7+4*len(g.limits)+len(members)+len(acq)*(2+len(g.limits)))
	args = append(args, limitStarveWindow.Milliseconds(), len(acq), len(members), hold.Milliseconds(), g.host, calls, limitAhead.Milliseconds())
	for i, u := range g.perLimit {
		args = append(args, u[0], u[1], u[2], g.waiters[i].count())
	}
	for _, m := range members {
		args = append(args, m)
	}
	for _, r := range acq {
		args = append(args, r.member, r.tokens)
		for _, c := range r.costs {
			args = append(args, c)
		}
	}
	return args
}

// releaseArgs is the release script's ARGV for members, with hold, and the calls started on
// kept leases to count.
func (g *Gate) releaseArgs(members []string, hold time.Duration, calls int64) []any {
	args := make([]any, 0, 5+len(g.limits)+len(members))
	args = append(args, hold.Milliseconds(), g.host, limitStarveWindow.Milliseconds(), len(g.limits), calls)
	for _, u := range g.limits {
		args = append(args, u.sharer)
	}
	for _, m := range members {
		args = append(args, m)
	}
	return args
}
