package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/engine"
)

// GateOptions tune a [Gate]. Zero values pick the defaults shown.
type GateOptions struct {
	// LeaseTTL is how long a call's lease on the global cap lives without renewal: how long
	// the calls of a host that died keep their places. A call running longer than half of it
	// renews its lease, so it may be short. Default: Timeout + 10 s, or 30 s without Timeout.
	LeaseTTL time.Duration
	// Timeout is the engine's call timeout (engine.Config.Timeout), for the default LeaseTTL.
	Timeout time.Duration
	// Poll is how long a call waits when the global cap is full before its item goes back to
	// the engine, to be tried again at once (default 25 ms, jittered).
	Poll time.Duration
	// MaxWait is the longest a call waits in the gate for a Retry-After hold or a rate token
	// before its item goes back to the engine, so that a pause or a drain of the engine
	// reaches it within that (default 250 ms).
	MaxWait time.Duration
	// OutageWait is how long a call waits when Redis cannot be reached before its item goes
	// back to the engine (default 1 s).
	OutageWait time.Duration
	// MaxHold caps a server's Retry-After as shared with every host (default 60 s, the
	// engine's default MaxBackoff).
	MaxHold time.Duration
	// Cost returns what a call of items takes from the global rate (an LLM call costs its
	// tokens). Default: the inner adapter's engine.Coster if it has one, else 1 per call, a
	// batch included, as the engine counts calls. A cost above the burst fails the items.
	Cost func(items []engine.Item) int
	// OnRedisError is told when Redis becomes unavailable (err, once per outage) and when it
	// is back (nil, once it answered without a failure for a second). It is called with a
	// lock held, in order: it must not block.
	OnRedisError func(err error)
}

// Gate holds one host's calls to the job's global limits, shared with every host through
// Redis. Before each call: the shared Retry-After hold, then a lease on the global cap on
// calls in flight, then a token of the global rate (GCRA, redis_rate). After it: the lease is
// released and a 429 with Retry-After holds every host.
//
// A call that may not start waits in the gate a little (Poll, or up to MaxWait for a hold or
// a rate token, OutageWait while Redis is away) and then returns engine.Later(0): the engine
// puts the item back without counting a call or an attempt, and the worker, finding it due,
// comes back with it. Waiting in the gate rather than returning Later(wait) keeps each
// worker on its one item: a worker given Later goes on with fresh input, so under a full
// global cap the workers would pull the input into their retry queue, each item then
// polling Redis (measured, 3 hosts of 16 workers under a cap of 8: 82 scripts per item
// instead of 6, 600 items deferred on a host). Returning to the engine between waits keeps
// pause and drain prompt.
//
// A Gate's own Do never fails an item for Redis: an unavailable Redis makes calls wait, and
// is reported to OnRedisError.
type Gate struct {
	j       *Job
	inner   engine.Adapter
	batcher engine.Batcher
	coster  engine.Coster
	opts    GateOptions
	limiter *redis_rate.Limiter
	id      string
	seq     atomic.Uint64
	calling atomic.Int64

	down  atomic.Bool
	outMu sync.Mutex // orders OnRedisError calls
	// Guarded by outMu:
	outDown  bool
	lastFail time.Time // the last failure of Redis seen
	upAt     time.Time // when the last outage was said to be over

	pendMu    sync.Mutex
	pending   map[string]gatePending // leases to give back once Redis answers
	releasing bool                   // a releaseLoop runs
}

var (
	_ engine.Adapter = (*Gate)(nil)
	_ engine.Resizer = (*Gate)(nil)
	_ engine.Batcher = batchGate{}
)

// Gate wraps inner in the job's global limits. Give the engine [Gate.Adapter], which batches
// when inner does.
func (j *Job) Gate(inner engine.Adapter, opts GateOptions) *Gate {
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 30 * time.Second
		if opts.Timeout > 0 {
			opts.LeaseTTL = opts.Timeout + 10*time.Second
		}
	}
	// Renewal runs at half the TTL and needs a round trip or two: below this a lease could
	// lapse under a live call.
	opts.LeaseTTL = max(opts.LeaseTTL, 100*time.Millisecond)
	if opts.Poll <= 0 {
		opts.Poll = 25 * time.Millisecond
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 250 * time.Millisecond
	}
	if opts.OutageWait <= 0 {
		opts.OutageWait = time.Second
	}
	if opts.MaxHold <= 0 {
		opts.MaxHold = 60 * time.Second
	}
	g := &Gate{
		j: j, inner: inner, opts: opts,
		limiter: redis_rate.NewLimiter(j.rdb),
		id:      strconv.FormatUint(rand.Uint64(), 36),
	}
	g.batcher, _ = inner.(engine.Batcher)
	g.coster, _ = inner.(engine.Coster)
	return g
}

// Adapter is the gate as the engine should see it: g itself, or, when the inner adapter is
// an engine.Batcher, g with DoBatch, so that a chunk takes one lease and one call.
func (g *Gate) Adapter() engine.Adapter {
	if g.batcher != nil {
		return batchGate{g}
	}
	return g
}

// batchGate is a Gate over a batching adapter. It is a type of its own because the engine
// batches whenever its adapter has DoBatch.
type batchGate struct{ *Gate }

// DoBatch admits a chunk as one call, its cost as for Do, then calls the inner DoBatch.
func (b batchGate) DoBatch(ctx context.Context, items []engine.Item) ([]engine.Outcome, error) {
	return admitBatch(ctx, items, b.admit, b.batcher, b.holdOf, b.finish)
}

// admitBatch admits a chunk as one call through admit, calls the inner DoBatch, and ends the
// call with the longest hold its answers ask for: the Gate and the LimitGate batch alike.
func admitBatch[L any](ctx context.Context, items []engine.Item,
	admit func(context.Context, []engine.Item) (L, error), inner engine.Batcher,
	holdOf func(engine.Outcome) time.Duration, finish func(context.Context, L, time.Duration)) ([]engine.Outcome, error) {
	l, err := admit(ctx, items)
	if err != nil {
		return nil, err
	}
	engine.CallStarts(ctx) // the wait in the gate is the row's wait_ms, not latency
	outs, err := inner.DoBatch(ctx, items)
	var hold time.Duration
	if err == nil {
		for _, o := range outs {
			hold = max(hold, holdOf(o))
		}
	}
	finish(ctx, l, hold)
	return outs, err
}

// Do admits one call under the job's limits, then calls the inner adapter.
func (g *Gate) Do(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	return admitOne(ctx, it, g.admit, g.inner, g.holdOf, g.finish)
}

// admitOne is admitBatch for one item: admit, call, end with the hold the answer asks for.
func admitOne[L any](ctx context.Context, it engine.Item,
	admit func(context.Context, []engine.Item) (L, error), inner engine.Adapter,
	holdOf func(engine.Outcome) time.Duration, finish func(context.Context, L, time.Duration)) (engine.Outcome, error) {
	l, err := admit(ctx, []engine.Item{it})
	if err != nil {
		return engine.Outcome{}, err
	}
	engine.CallStarts(ctx) // the wait in the gate is the row's wait_ms, not latency
	out, err := inner.Do(ctx, it)
	var hold time.Duration
	if err == nil {
		hold = holdOf(out)
	}
	finish(ctx, l, hold)
	return out, err
}

// Resize passes the engine's parallelism on to the inner adapter if it holds a resource per
// worker: that is this host's business, not the job's.
func (g *Gate) Resize(parallelism int) {
	if r, ok := g.inner.(engine.Resizer); ok {
		r.Resize(parallelism)
	}
}

// LocalInFlight is the number of this gate's calls in flight (holding a lease). The engine's
// own count also includes its calls waiting in the gate.
func (g *Gate) LocalInFlight() int { return int(g.calling.Load()) }

// InFlight returns the number of calls in flight across every host: the live leases.
func (g *Gate) InFlight(ctx context.Context) (int, error) {
	n, err := gateCountScript.Run(ctx, g.j.rdb, []string{g.j.Key("leases")}).Int()
	if err != nil {
		return 0, redisFailure(ctx, err)
	}
	return n, nil
}

// The admission script's answers.
const (
	gateAdmitted = iota
	gateHeld
	gateFull
	gateNoSettings
)

// gateAcquireScript is the gate's one round trip before a call: the Retry-After hold, then a
// lease on the global cap, read from the settings hash here so that a changed cap counts from
// the next call. Expired leases (a dead host's) are dropped first. Times are Redis's own, so
// that the hosts' clocks do not matter. It answers the rate settings too: the gate needs no
// cache of its own, and a change of rate counts from the next call.
//
// KEYS: leases (sorted set, score = expiry in ms), settings, hold. ARGV: member, ttl in ms.
// Answer: {status, pttl of the hold | leases held, rate, burst, rate_gen}.
var gateAcquireScript = redis.NewScript(`
local hold = redis.call('PTTL', KEYS[3])
if hold > 0 then return {1, hold} end
local s = redis.call('HMGET', KEYS[2], 'parallelism', 'rate', 'burst', 'rate_gen')
local cap = tonumber(s[1])
if not cap then return {3, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= cap then return {2, n} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return {0, n + 1, s[2] or '0', s[3] or '1', s[4] or '0'}
`)

// gateReleaseScript gives a lease back and, for a 429 with Retry-After, holds every host:
// the hold is only ever lengthened, never shortened, whichever host set it.
//
// KEYS: leases, hold. ARGV: hold in ms (0 for none), this host, then the leases' members.
var gateReleaseScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], unpack(ARGV, 3))
local want = tonumber(ARGV[1])
if want > 0 and redis.call('PTTL', KEYS[2]) < want then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', want)
end
return 0
`)

// gateRenewScript pushes back the expiry of a lease still held (XX: a lease already released
// or expired is not brought back).
var gateRenewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
`)

// gateCountScript counts the live leases without changing anything.
var gateCountScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
`)

// admit lets a call of items start, holding a lease, or returns the error Do returns: a Later
// after a short wait, or a Permanent one for a cost the rate can never grant.
func (g *Gate) admit(ctx context.Context, items []engine.Item) (*gateLease, error) {
	j := g.j
	member := j.host + "|" + g.id + "|" + strconv.FormatUint(g.seq.Add(1), 36)
	ttl := g.opts.LeaseTTL
	start := time.Now()
	res, err := gateAcquireScript.Run(ctx, j.rdb, []string{j.Key("leases"), j.Key("settings"), j.Key("hold")},
		member, ttl.Milliseconds()).Slice()
	if err != nil {
		g.releaseLater(member, 0, start)
		return nil, g.outageWait(ctx, err, start)
	}
	status, v := gateInt(res, 0), gateInt(res, 1)
	switch status {
	case gateHeld:
		d := time.Duration(v) * time.Millisecond
		// Past the hold by a random part of its spread, as the engine does, so that the hosts
		// do not come back in one instant.
		return nil, g.wait(ctx, min(d+time.Duration(rand.Float64()*float64(engine.HoldSpread(d))), g.opts.MaxWait))
	case gateFull:
		return nil, g.wait(ctx, time.Duration(float64(g.opts.Poll)*(0.5+rand.Float64())))
	case gateNoSettings:
		return nil, g.outageWait(ctx, ErrNoSettings, start)
	case gateAdmitted:
	default:
		return nil, g.outageWait(ctx, fmt.Errorf("cluster: unexpected admission answer %v", res), start)
	}
	g.report(nil, start)
	rate, _ := strconv.ParseFloat(gateString(res, 2), 64)
	burst, _ := strconv.Atoi(gateString(res, 3))
	gen := gateString(res, 4)
	if rate > 0 {
		cost := g.cost(items)
		if cost > max(burst, 1) {
			g.release(ctx, member, 0)
			return nil, engine.Permanent(fmt.Errorf("cluster: a call costing %d exceeds the job's burst %d: it can never be allowed", cost, burst))
		}
		if cost > 0 {
			// The key is named after rate_gen: a changed rate or burst starts from a fresh
			// bucket on every host at its next call, while a call admitted under the old
			// limit (one round trip ago) cannot push the new bucket's time ahead.
			r, err := g.limiter.AllowN(ctx, j.Key("rate")+":"+gen, gcraLimit(rate, burst), cost)
			if err != nil {
				g.release(ctx, member, 0)
				return nil, g.outageWait(ctx, err, start)
			}
			if r.Allowed == 0 {
				g.release(ctx, member, 0)
				// A little past the token's time: waiters of several hosts then do not all
				// ask in the same millisecond.
				return nil, g.wait(ctx, min(time.Duration(float64(r.RetryAfter)*(1+0.2*rand.Float64())), g.opts.MaxWait))
			}
		}
	}
	g.calling.Add(1)
	l := &gateLease{g: g, member: member}
	l.mu.Lock()
	l.timer = time.AfterFunc(ttl/2, l.renew)
	l.mu.Unlock()
	return l, nil
}

// finish ends a call: stops the lease's renewal, releases it and sets the hold.
func (g *Gate) finish(ctx context.Context, l *gateLease, hold time.Duration) {
	g.calling.Add(-1)
	l.stop()
	g.release(ctx, l.member, hold)
}

// release gives a lease back, on a context of its own: the call's may be over (a timeout, a
// stop), and a lease not given back holds a place until it expires. A release that fails
// (Redis away) is left to releaseLater.
func (g *Gate) release(ctx context.Context, member string, hold time.Duration) {
	start := time.Now()
	err := g.releaseOnce(context.WithoutCancel(ctx), []string{member}, hold)
	if err != nil {
		g.report(err, start)
		g.releaseLater(member, hold, start)
	}
}

// releaseLater keeps trying to give back a lease, in the background, until Redis answers or
// the lease would have expired anyway: the places of calls that ended during an outage are
// then free as soon as Redis is back, not a LeaseTTL later. It also takes the leases whose
// acquisition failed, as Redis may have granted one whose answer was lost. One goroutine
// gives back every such lease in one round trip, so that an outage does not grow a crowd
// of retrying goroutines.
func (g *Gate) releaseLater(member string, hold time.Duration, since time.Time) {
	g.pendMu.Lock()
	defer g.pendMu.Unlock()
	if g.pending == nil {
		g.pending = map[string]gatePending{}
	}
	g.pending[member] = gatePending{hold: hold, since: since}
	if !g.releasing {
		g.releasing = true
		go g.releaseLoop()
	}
}

type gatePending struct {
	hold  time.Duration
	since time.Time
}

func (g *Gate) releaseLoop() {
	for {
		time.Sleep(min(g.opts.OutageWait, g.opts.LeaseTTL/4))
		var members []string
		var hold time.Duration
		g.pendMu.Lock()
		for m, p := range g.pending {
			if time.Since(p.since) >= g.opts.LeaseTTL {
				delete(g.pending, m) // expired by now
				continue
			}
			members = append(members, m)
			// A hold set late is shortened by the time lost, so that it ends when it should.
			hold = max(hold, p.hold-time.Since(p.since))
		}
		if len(members) == 0 {
			g.releasing = false
			g.pendMu.Unlock()
			return
		}
		g.pendMu.Unlock()
		start := time.Now()
		if err := g.releaseOnce(context.Background(), members, hold); err != nil {
			g.report(err, start)
			continue
		}
		g.report(nil, start)
		g.pendMu.Lock()
		for _, m := range members {
			delete(g.pending, m)
		}
		g.pendMu.Unlock()
	}
}

// releaseOnce gives back leases and sets the hold, in round trips of up to 1,000 leases.
func (g *Gate) releaseOnce(ctx context.Context, members []string, hold time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for len(members) > 0 {
		n := min(len(members), 1000)
		args := []any{hold.Milliseconds(), g.j.host}
		for _, m := range members[:n] {
			args = append(args, m)
		}
		err := gateReleaseScript.Run(ctx, g.j.rdb, []string{g.j.Key("leases"), g.j.Key("hold")}, args...).Err()
		if err != nil {
			return redisFailure(ctx, err)
		}
		members = members[n:]
	}
	return nil
}

// holdOf is the hold every host should keep after out: the engine's rule for a shared
// Retry-After, capped by MaxHold.
func (g *Gate) holdOf(out engine.Outcome) time.Duration {
	if out.Status == 429 && out.RetryAfter > 0 && !out.LocalRetryAfter {
		return min(out.RetryAfter, g.opts.MaxHold)
	}
	return 0
}

func (g *Gate) cost(items []engine.Item) int {
	switch {
	case g.opts.Cost != nil:
		return g.opts.Cost(items)
	case g.coster != nil:
		return g.coster.Cost(items)
	}
	return 1
}

// wait sleeps d, or until ctx ends, then gives the item back to the engine to come back at
// once: see Gate.
func (g *Gate) wait(ctx context.Context, d time.Duration) error {
	if d > 0 {
		engine.WaitingFor(ctx, "job "+g.j.name)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return engine.Later(0)
}

// outageWait handles a failure of Redis before a call, in an operation begun at start: the
// item is not failed, it waits. The end of ctx (a stop, a timeout) is no outage.
func (g *Gate) outageWait(ctx context.Context, err error, start time.Time) error {
	if ctx.Err() != nil {
		return engine.Later(0)
	}
	if errors.Is(err, ErrNoSettings) {
		g.report(err, start)
	} else {
		g.report(redisFailure(ctx, err), start)
	}
	return g.wait(ctx, g.opts.OutageWait)
}

// gateQuiet is how long Redis must have answered every call before the gate says it is back.
// Just after an outage some calls still fail (a connection pool dials again, calls begun
// during the outage end late) while others succeed: without it the gate would report the
// outage over and again.
const gateQuiet = time.Second

// report tells OnRedisError that an operation begun at start failed (err) or succeeded
// (nil). It reports an outage once, when an operation begun after the last one ended fails,
// and its end once Redis has answered without failure for gateQuiet.
func (g *Gate) report(err error, start time.Time) {
	if err == nil && !g.down.Load() {
		return // the common case: no lock
	}
	g.outMu.Lock()
	defer g.outMu.Unlock()
	now := time.Now()
	switch {
	case err != nil:
		g.lastFail = now
		if g.outDown || start.Before(g.upAt) {
			return
		}
		g.outDown = true
	case g.outDown && now.Sub(g.lastFail) >= gateQuiet:
		g.outDown = false
		g.upAt = now
	default:
		return
	}
	g.down.Store(g.outDown)
	if g.opts.OnRedisError != nil {
		g.opts.OnRedisError(err)
	}
}

// gateLease is a call's place in the global cap, renewed at half its TTL while the call runs.
type gateLease struct {
	g      *Gate
	member string
	mu     sync.Mutex
	timer  *time.Timer
	done   bool
}

func (l *gateLease) renew() {
	ttl := l.g.opts.LeaseTTL
	ctx, cancel := context.WithTimeout(context.Background(), ttl/2)
	defer cancel()
	start := time.Now()
	err := gateRenewScript.Run(ctx, l.g.j.rdb, []string{l.g.j.Key("leases")}, l.member, ttl.Milliseconds()).Err()
	next := ttl / 2
	if err != nil {
		l.g.report(redisFailure(ctx, err), start)
		next = ttl / 8 // try again before the lease lapses
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.timer = time.AfterFunc(next, l.renew)
	}
}

func (l *gateLease) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
	l.timer.Stop()
}

// gcraLimit expresses calls per second as redis_rate's limit: only period/rate matters to
// GCRA (the interval between two calls), so a fractional rate becomes one call per period.
func gcraLimit(perSecond float64, burst int) redis_rate.Limit {
	if perSecond >= 1 && perSecond == math.Trunc(perSecond) && perSecond <= math.MaxInt32 {
		return redis_rate.Limit{Rate: int(perSecond), Burst: burst, Period: time.Second}
	}
	return redis_rate.Limit{Rate: 1, Burst: burst, Period: max(time.Duration(float64(time.Second)/perSecond), 1)}
}

func gateInt(res []any, i int) int64 {
	if i < len(res) {
		if v, ok := res[i].(int64); ok {
			return v
		}
	}
	return -1
}

func gateString(res []any, i int) string {
	if i < len(res) {
		if v, ok := res[i].(string); ok {
			return v
		}
	}
	return ""
}
