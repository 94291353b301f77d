package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/engine"
)

// limitNow is the scripts' clock: Redis's, in ms since 2023-11-14 (1,700,000,000 s after the
// Unix epoch), with fractions: near enough to now that a double keeps the
// microseconds, and the same in every script so that their times compare.
const limitNow = `
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000 + tonumber(t[2]) / 1000
`

// limitDropExpired drops the expired leases of a limit (a dead job's) and counts them off
// their jobs. It expects now, and leases and state naming the keys.
const limitDropExpired = `
for _, m in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now)) do
  local owner = string.match(m, '^(.*)|')
  if owner and redis.call('HINCRBY', state, 'h:' .. owner, -1) < 0 then
    redis.call('HSET', state, 'h:' .. owner, 0)
  end
end
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
`

// The one lease gate. A [Gate] holds a host's calls to limits kept in Redis: the job's own
// global cap and rate (see [Job.Gate]) and the named limits shared by jobs (see [Limits.Use])
// are the same thing to it, a limit with fair shares between its sharers. The sharers of the
// job's own limit are the job's live hosts; those of a named limit are the jobs that use it
// (the hosts of one job across hosts sharing one share). Either way each live sharer has its
// share, its weight over the weights alive, and the shares are work-conserving: what one
// sharer does not use flows to those that want it (see the notes on fair sharing in limit.go).

// LimitUse names a limit a job takes from, with the job's weight in its fair share (1 by
// default: two jobs of weight 2 and 1 share 2:1 when both want more than the limit).
type LimitUse struct {
	Name   string
	Weight float64
}

// The rules of a limit's name and of a weight, as errors say them.
const (
	limitNameRule   = "a limit's name is letters, digits, '-', '_' or '.' (1 to 64)"
	limitWeightRule = "the weight after ':' must be a number above 0, at most 1000 (tmdb:2 takes twice the share of tmdb:1)"
)

// Check holds u to the rules of a use: a valid name, a weight above 0 and at most 1000 (0
// stands for the default, 1). [Limits.Use] checks its uses with it, and [ParseLimitUses]
// by the same rules.
func (u LimitUse) Check() error {
	if err := checkLimitName(u.Name); err != nil {
		return err
	}
	if !validWeight(u.Weight) && u.Weight != 0 {
		return fmt.Errorf("cluster: limit %s: weight %v: %s", u.Name, u.Weight, limitWeightRule)
	}
	return nil
}

func validWeight(w float64) bool { return w > 0 && w <= 1000 && !math.IsNaN(w) && !math.IsInf(w, 0) }

// LimitUseError says which value of --limit is wrong, and why.
type LimitUseError struct {
	// Value is the value as given (NAME or NAME:WEIGHT); "" when none was given.
	Value string
	// Reason says what is wrong with it, for people.
	Reason string
}

// Error is "limit VALUE: REASON".
func (e *LimitUseError) Error() string { return "limit " + e.Value + ": " + e.Reason }

// ParseLimitUses reads NAME or NAME:WEIGHT values (the --limit flag), each name once: the one
// place, with [LimitUse.Check], for the rules of a limit's name and weight. Its errors are
// [*LimitUseError]s.
func ParseLimitUses(vals []string) ([]LimitUse, error) {
	var uses []LimitUse
	seen := map[string]bool{}
	for _, v := range vals {
		name, w, hasWeight := strings.Cut(v, ":")
		u := LimitUse{Name: name, Weight: 1}
		if hasWeight {
			var err error
			if u.Weight, err = strconv.ParseFloat(w, 64); err != nil || !validWeight(u.Weight) {
				return nil, &LimitUseError{Value: v, Reason: limitWeightRule}
			}
		}
		if !ValidName(name) {
			return nil, &LimitUseError{Value: v, Reason: limitNameRule}
		}
		if seen[name] {
			return nil, &LimitUseError{Value: v, Reason: "limit " + name + " is named twice"}
		}
		seen[name] = true
		uses = append(uses, u)
	}
	if len(uses) == 0 {
		return nil, &LimitUseError{Reason: "no limit named"}
	}
	return uses, nil
}

// Tokener is an optional interface of adapters whose calls spend tokens of a provider's
// tokens-per-minute limit (an LLM): Tokens is the estimate a call of items takes from a
// shared limit's tpm before it is made.
type Tokener interface {
	Tokens(items []engine.Item) int
}

// GateOptions tune a [Gate]. Zero values pick the defaults shown.
type GateOptions struct {
	// Job names this job in the named limits: its share, its leases, its line in `limit ls`.
	// Default: hostname/pid/random. Processes that give the same Job share one share (the
	// hosts of one job across hosts). The job's own limit ([Job.Gate]) ignores it: its
	// sharers are the job's hosts.
	Job string
	// Host and Label describe the job in `limit ls` (default: hostname/pid, "").
	Host, Label string
	// Lease is how long a call's lease on the job's own limit lives without renewal: how long
	// the calls of a host that died keep their places (default DefaultLimitLease). Calls that
	// run longer renew their leases at half of it. A named limit has a lease of its own.
	Lease time.Duration
	// Poll is how often a call waiting for a slot asks again when no wake-up can reach it
	// (the limit's channel is not subscribed yet, or again) (default 25 ms, jittered).
	// Subscribed, a released slot wakes one waiting call at once.
	Poll time.Duration
	// MaxWait is the longest a call waits in the gate — for a slot, a hold or a token — before
	// its item goes back to the engine, so that a pause or a drain reaches it (default 250 ms).
	MaxWait time.Duration
	// OutageWait is how long a call waits when Redis cannot be reached (default 1 s).
	OutageWait time.Duration
	// MaxHold caps a target's Retry-After as shared with the other hosts and jobs (default
	// 60 s, the engine's default MaxBackoff).
	MaxHold time.Duration
	// Tokens returns the tokens a call of items takes from a limit's tpm. Default: the inner
	// adapter's [Tokener], else its engine.Coster; without either a tpm does not apply to
	// this job's calls (see [Gate.CountsTokens]).
	Tokens func(items []engine.Item) int
	// Cost returns what a call of items takes from the job's own rate (an LLM call costs its
	// tokens). Default: the inner adapter's engine.Coster if it has one, else 1 per call, a
	// batch included, as the engine counts calls. A cost above the burst fails the items.
	// A named limit's rate counts calls.
	Cost func(items []engine.Item) int
	// Outage, when set, is told when the limits become unavailable — Redis cannot be reached,
	// a limit was removed (errors.Is ErrNoLimit) or the job has no settings (ErrNoSettings) —
	// and when they are back. Shared with the job's Source and collector, an outage they all
	// see is told once.
	Outage *Outage
	// OnChange is told of each `limit set` or `limit rm` of a named limit in use, from the
	// limit's channel. It must not block.
	OnChange func(name, by string, changes []LimitChange)
}

// gateLimit is one limit a gate takes from: where its keys are, who shares it, and how.
type gateLimit struct {
	name   string                   // the named limit's name; "" for the job's own
	key    func(part string) string // conf, leases, hold, gcra, state, want, jobs, changes
	sharer string                   // this process's sharer: the job (named) or the host (own)
	weight float64
	lease  time.Duration // when the conf names none
	// cost says a call takes its cost from the rate (the job's own), not 1 (a named limit).
	cost bool
	// read reads the limit's settings: ErrNoLimit or ErrNoSettings when it is gone.
	read func(context.Context) (LimitConfig, error)
	// gone is the error for a limit whose conf is missing.
	gone func() error
}

// what names the limit as a waiting worker's state says it: "limit tmdb", or for the job's
// own (its cap and rate across hosts) the part that refused the call (status, the acquire
// script's answer): "the job's rate" or "the job's cap".
func (l gateLimit) what(status int) string {
	switch {
	case l.name != "":
		return "limit " + l.name
	case status >= limitRate && status <= limitTPMShare:
		return "the job's rate"
	default:
		return "the job's cap"
	}
}

// Gate holds one host's calls to its limits. Before each call, one script takes from every
// limit: the hold, a lease, a token of the rate, the tokens of the tpm, each within this
// sharer's fair share when other sharers want more. After the call the leases are released,
// and a 429 with Retry-After (or a spent quota) holds every sharer of the limits: every
// host of the job, every job of a named limit.
//
// A call that may not start waits in the gate — for a slot until a release wakes it (the
// limit's channel says "free"), for a token until it is due, taking turns with this host's
// other waiters, for a hold until it ends — asking again after each wait, for at most
// MaxWait in all; then it returns engine.Later(0): the engine puts the item back without
// counting a call or an attempt, and the worker, finding it due, comes back with it. Waiting
// in the gate rather than returning Later(wait) keeps each worker on its one item: a worker
// given Later goes on with fresh input, so under a full cap the workers would pull the input
// into their retry queue, each item then polling Redis. Returning to the engine between
// waits keeps pause and drain prompt.
//
// An unavailable Redis, a removed limit or a job without settings makes calls wait: the gate
// never lets a call through without its limits, and never fails an item for Redis.
type Gate struct {
	rdb     *redis.Client
	inner   engine.Adapter
	batcher engine.Batcher
	coster  engine.Coster
	tokens  func([]engine.Item) int
	cost    func([]engine.Item) int
	opts    GateOptions
	limits  []gateLimit
	host    string
	id      string // in every lease's member, unique to this gate

	acqKeys, relKeys, renKeys []string
	perLimit                  [][]any // the acquire script's ARGV of each limit, waiters last

	seq     atomic.Uint64
	calling atomic.Int64
	trips   atomic.Int64 // acquisitions asked of Redis, admitted or not
	round   gateTrips    // the round trips that carry them, and the releases
	kept    keptLeases   // leases of ended calls, for this host's next calls

	cfgMu sync.Mutex
	cfg   []LimitConfig // as last heard: at the start, at each (re)subscription and change

	waiters    []limitWaiters
	blocked    []atomic.Int64 // per limit: this host's calls in the gate whose last refusal was that limit's
	binds      []bindCounter
	subscribed atomic.Bool

	out *Outage // nil: outages are waited out untold

	pendMu    sync.Mutex
	pending   map[string]gatePending
	releasing bool

	cancel    context.CancelFunc
	done      sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ engine.Adapter = (*Gate)(nil)
	_ engine.Resizer = (*Gate)(nil)
	_ engine.Batcher = gateBatch{}
	_ engine.Coster  = gateCost{}
)

// Use puts inner behind the named limits uses. It checks that each exists (ErrNoLimit
// otherwise), joins them as a job (a first heartbeat, so that the shares count this job from
// its first call) and starts the heartbeats and the subscription to the limits' channels,
// which run until Close. Give the engine [Gate.Adapter].
func (l *Limits) Use(ctx context.Context, inner engine.Adapter, uses []LimitUse, opts GateOptions) (*Gate, error) {
	if len(uses) == 0 {
		return nil, errors.New("cluster: no limit to use")
	}
	hn, _ := os.Hostname()
	if opts.Host == "" {
		opts.Host = hn + "/" + strconv.Itoa(os.Getpid())
	}
	if opts.Job == "" {
		opts.Job = opts.Host + "/" + strconv.FormatUint(rand.Uint64()%(36*36*36*36), 36)
	}
	if strings.Contains(opts.Job, "|") {
		return nil, fmt.Errorf("cluster: job name %q: '|' is not allowed", opts.Job)
	}
	seen := map[string]bool{}
	var limits []gateLimit
	for _, u := range uses {
		if err := u.Check(); err != nil {
			return nil, err
		}
		if seen[u.Name] {
			return nil, fmt.Errorf("cluster: limit %s named twice", u.Name)
		}
		seen[u.Name] = true
		if u.Weight == 0 {
			u.Weight = 1
		}
		limits = append(limits, gateLimit{
			name: u.Name, key: func(part string) string { return LimitKey(u.Name, part) },
			sharer: opts.Job, weight: u.Weight, lease: DefaultLimitLease,
			read: func(ctx context.Context) (LimitConfig, error) { return l.config(ctx, u.Name) },
			gone: func() error { return &NoLimitError{Name: u.Name} },
		})
	}
	return newGate(ctx, l.rdb, inner, limits, opts)
}

// Gate puts inner behind the job's own limit: its global cap on calls in flight and its
// global rate and burst, read from the job's settings hash (the one home of the job's knobs:
// `ctl set`, a screen or --auto on any host changes them there, and every host's gate counts
// them from its next call). Each live host of the job is a sharer of weight 1, so each has
// its fair share of the cap and of the rate while the others want more, and what one does
// not use flows to those that do. It joins the job's limit (a first heartbeat) and runs its
// heartbeats and subscription until Close. Give the engine [Gate.Adapter].
func (j *Job) Gate(ctx context.Context, inner engine.Adapter, opts GateOptions) (*Gate, error) {
	if opts.Host == "" {
		opts.Host = j.host
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLimitLease
	}
	// Renewal runs at half the lease and needs a round trip or two: below this a lease could
	// lapse under a live call.
	opts.Lease = max(opts.Lease, 100*time.Millisecond)
	own := gateLimit{
		key: j.gateKey, sharer: j.host, weight: 1, lease: opts.Lease, cost: true,
		read: func(ctx context.Context) (LimitConfig, error) {
			h, err := j.rdb.HGetAll(ctx, j.Key("settings")).Result()
			if err != nil {
				return LimitConfig{}, redisFailure(ctx, err)
			}
			if h[fieldParallelism] == "" {
				return LimitConfig{}, ErrNoSettings
			}
			c := parseLimitConfig(h)
			if h["lease"] == "" {
				c.Lease = opts.Lease
			}
			return c, nil
		},
		gone: func() error { return ErrNoSettings },
	}
	return newGate(ctx, j.rdb, inner, []gateLimit{own}, opts)
}

// gateKey names the keys of the job's own limit: its conf is the job's settings hash, its
// channel the job's changes channel (a `ctl set` wakes the waiting calls), the rest are the
// job's gate:PART keys.
func (j *Job) gateKey(part string) string {
	switch part {
	case "conf":
		return j.Key("settings")
	case "changes":
		return j.Key("changes")
	}
	return j.Key("gate:" + part)
}

// InFlight returns the number of the job's calls in flight across every host: the live
// leases of its own limit.
func (j *Job) InFlight(ctx context.Context) (int, error) {
	n, err := gateCountScript.Run(ctx, j.rdb, []string{j.gateKey("leases")}).Int()
	if err != nil {
		return 0, redisFailure(ctx, err)
	}
	return n, nil
}

// gateCountScript counts the live leases of a limit without changing anything.
var gateCountScript = redis.NewScript(limitNow + `
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
`)

// newGate puts inner behind limits: it reads each limit (its error when one is gone), joins
// them with a first heartbeat and starts the heartbeats and the subscription.
func newGate(ctx context.Context, rdb *redis.Client, inner engine.Adapter, limits []gateLimit, opts GateOptions) (*Gate, error) {
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
		rdb: rdb, inner: inner, opts: opts, out: opts.Outage, limits: limits, host: opts.Host, id: strconv.FormatUint(rand.Uint64(), 36),
		cfg: make([]LimitConfig, len(limits)), waiters: make([]limitWaiters, len(limits)), binds: make([]bindCounter, len(limits)),
		blocked: make([]atomic.Int64, len(limits)),
	}
	g.round.g = g
	g.round.open(rdb)
	g.batcher, _ = inner.(engine.Batcher)
	g.coster, _ = inner.(engine.Coster)
	switch t, _ := inner.(Tokener); {
	case opts.Tokens != nil:
		g.tokens = opts.Tokens
	case t != nil:
		g.tokens = t.Tokens
	case g.coster != nil:
		g.tokens = g.coster.Cost
	}
	switch {
	case opts.Cost != nil:
		g.cost = opts.Cost
	case g.coster != nil:
		g.cost = g.coster.Cost
	}
	for i, u := range limits {
		g.acqKeys = append(g.acqKeys, u.key("conf"), u.key("leases"), u.key("hold"), u.key("gcra"), u.key("state"), u.key("want"), u.key("changes"))
		g.relKeys = append(g.relKeys, u.key("leases"), u.key("hold"), u.key("state"), u.key("want"), u.key("changes"))
		g.renKeys = append(g.renKeys, u.key("conf"), u.key("leases"))
		g.perLimit = append(g.perLimit, []any{u.sharer, formatRateField(u.weight), u.lease.Milliseconds()})
		c, err := u.read(ctx)
		if err != nil {
			return nil, err
		}
		g.cfg[i] = c
	}
	if err := g.beat(ctx, false); err != nil {
		return nil, err
	}
	bctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.done.Add(2)
	go func() { defer g.done.Done(); g.heartbeat(bctx) }()
	go func() { defer g.done.Done(); g.listen(bctx) }()
	return g, nil
}

// Close stops the heartbeats and the subscription and leaves the limits: this host (or job)
// no longer counts in their shares. Calls still in flight keep their leases until they end.
func (g *Gate) Close() {
	g.closeOnce.Do(func() {
		g.cancel()
		g.done.Wait()
		g.dropKept()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = g.beat(ctx, true)
		g.round.close()
	})
}

// Adapter is the gate as the engine should see it: with DoBatch when the inner adapter
// batches (a chunk takes one lease), with Cost when it has one (the engine's own rate keeps
// counting it).
func (g *Gate) Adapter() engine.Adapter {
	switch {
	case g.batcher != nil && g.coster != nil:
		return gateBatchCost{gateBatch{g}}
	case g.batcher != nil:
		return gateBatch{g}
	case g.coster != nil:
		return gateCost{g}
	}
	return g
}

// gateBatch is a Gate over a batching adapter: the engine batches whenever its adapter has
// DoBatch, so it is a type of its own.
type gateBatch struct{ *Gate }

// DoBatch admits a chunk as one call, its cost as for Do, then calls the inner DoBatch and
// ends the call with the longest hold its answers ask for.
func (b gateBatch) DoBatch(ctx context.Context, items []engine.Item) ([]engine.Outcome, error) {
	l, err := b.admit(ctx, items)
	if err != nil {
		return nil, err
	}
	engine.CallStarts(ctx) // the wait in the gate is the row's wait_ms, not latency
	outs, err := b.batcher.DoBatch(ctx, items)
	var hold time.Duration
	if err == nil {
		for _, o := range outs {
			hold = max(hold, b.holdOf(o))
		}
	}
	b.finish(l, hold)
	return outs, err
}

// gateCost passes on the inner adapter's cost, for the engine's own rate.
type gateCost struct{ *Gate }

// Cost is the inner adapter's.
func (c gateCost) Cost(items []engine.Item) int { return c.coster.Cost(items) }

type gateBatchCost struct{ gateBatch }

func (c gateBatchCost) Cost(items []engine.Item) int { return c.coster.Cost(items) }

// Do admits one call under the limits, then calls the inner adapter and ends the call with
// the hold its answer asks for.
func (g *Gate) Do(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	l, err := g.admit(ctx, []engine.Item{it})
	if err != nil {
		return engine.Outcome{}, err
	}
	engine.CallStarts(ctx) // the wait in the gate is the row's wait_ms, not latency
	out, err := g.inner.Do(ctx, it)
	var hold time.Duration
	if err == nil {
		hold = g.holdOf(out)
	}
	g.finish(l, hold)
	return out, err
}

// Resize passes the engine's parallelism on to the inner adapter if it holds a resource per
// worker: that is this host's business, not the limits'.
func (g *Gate) Resize(parallelism int) {
	if r, ok := g.inner.(engine.Resizer); ok {
		r.Resize(parallelism)
	}
}

// CountsTokens says whether this job's calls take tokens from a limit's tpm: whether it has
// an estimate of a call's tokens.
func (g *Gate) CountsTokens() bool { return g.tokens != nil }

// LocalInFlight is the number of this gate's calls in flight (holding a lease). The engine's
// own count also includes its calls waiting in the gate.
func (g *Gate) LocalInFlight() int { return int(g.calling.Load()) }

// Config returns the settings of the limit used at index i as last heard.
func (g *Gate) Config(i int) LimitConfig {
	g.cfgMu.Lock()
	defer g.cfgMu.Unlock()
	return g.cfg[i]
}

// limitAhead is how far ahead of its due time a call may take a token of a rate (or a tpm's
// tokens), to start when it is due (see the acquire script's meter): more than a round trip to
// Redis under load, so that a call asking at its token's time is not late for it.
const limitAhead = 10 * time.Millisecond

// The acquire script's answers.
const (
	limitAdmitted = iota
	limitHeld
	limitFull      // the limit's parallelism is reached
	limitShare     // this job has its share of the parallelism and another job starves
	limitRate      // no token of the limit's rate yet
	limitRateShare // this job used its share of the rate and another job starves
	limitTPM
	limitTPMShare
	limitMissing
	limitTooBig // the call's tokens exceed the tpm, or its cost the burst: never allowed
)

// limitAcquireScript is the round trip before calls start, for a batch of calls (one, when a
// host's calls come one at a time; those that queued while the previous trip was out, under
// load: see gateTrips): for each call in turn, as if each had made its own trip, for every
// limit it uses, the hold, the leases under the parallelism and the job's share of it, the
// GCRA of the rate and of the tpm with the job's share of each; then, if every limit admits,
// a lease in each, the GCRA states and the counts. Nothing is written for a refused call but
// the refusal itself (want), so that one limit's refusal takes nothing from another. Settings
// are read from each conf hash here, so a `limit set` counts from the next call.
//
// A job refused within its share is starved ('!JOB' in want) until the window passes or it
// is admitted with no other call of its waiting on the limit: a job that wants little stops
// holding the others back as soon as it has what it asked for, while one that wants more
// keeps them to their shares.
//
// The "job" of the script is the sharer of each limit (a job of a named limit, a host of
// the job's own); a lease is SHARER|SEQ in each limit.
//
// The leases that came back since the last trip go back first, as the release script gives
// them back (see limitRelease): a slot one call frees is there for the next.
//
// KEYS: per limit conf, leases, hold, gcra, state, want, channel. ARGV: starve window ms, the
// number of calls R, the number of leases to give back M, the hold ms they ask for (0: none),
// the holder, the calls the host started on kept leases since its last trip, how far ahead
// (ms) a call may take the units of a rate or tpm (see meter); then per limit the sharer, its
// weight, the default lease ms and how many of the sharer's calls wait on the limit (refused
// before, none of the trip); then the M leases' sequence numbers; then per call its seq, its
// tokens and per limit what it takes from the rate.
// Answer: per call, {0, keep, due, lease ms per limit} (keep: 1 if the host may hand the lease
// on to its next calls, see keptLeases; due: the µs until the call may start, its tokens taken
// ahead) or {status, limit index (1-based), value, more}:
// the hold's pttl (ms); the leases and the ms until the first expires; the job's leases; the
// wait for a token and the interval between turns at tokens (µs: the limit's, or the job's
// share's while other jobs want tokens too), for this job's waiters to take turns; or, too
// big, the limit (tpm, burst) and 1 for the rate, 2 for the tpm.
var limitAcquireScript = redis.NewScript(limitNow + limitRelease + limitCount + `
local window, R, M, hold, calls, ahead = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[7])
-- H is the length of ARGV's head, before the limits' part.
local H = 7
local n = #KEYS / 7
local job

-- others says whether another job is starved (refused within its share), and whether
-- another job waits at all, in the last window. want holds JOB (waits for a slot), !JOB
-- (starved) and ~JOB (waits for a token).
local function others(want)
  local starved, waiting = false, false
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', want, now - window, '+inf')) do
    local c, who = string.sub(m, 1, 1), m
    if c == '!' or c == '~' then who = string.sub(m, 2) end
    if who ~= job then
      waiting = true
      if c == '!' then starved = true end
    end
  end
  return starved, waiting
end

-- gcra answers whether cost fits the bucket whose theoretical arrival time is tat, the new
-- tat if it does, and the wait in ms until it would.
local function gcra(tat, interval, burst, cost)
  tat = math.max(tonumber(tat) or now, now)
  local new = tat + interval * cost
  local wait = new - interval * burst - now
  if wait > 0 then return false, new, wait end
  return true, new, 0
end

-- limit reads limit i's hold, settings, sum of weights and leases once a trip, on first use:
-- nothing in a trip changes the first three, and the leases (all, and the sharer's) are
-- counted here as the trip's calls take them, so that each call of the trip is judged as if
-- it had come alone, with the calls before it in place.
local lim = {}
local function limit(i)
  if lim[i] then return lim[i] end
  local b = (i - 1) * 7
  local conf, leases, hold, state, want = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 5], KEYS[b + 6]
  local L = {hold = redis.call('PTTL', hold), c = redis.call('HMGET', conf, 'gen', 'parallelism', 'rate', 'burst', 'tpm', 'lease'), admitted = 0}
  if L.hold <= 0 and L.c[1] then
` + limitDropExpired + `
    redis.call('ZREMRANGEBYSCORE', want, '-inf', now - window)
    L.W = tonumber(redis.call('HGET', state, 'W')) or 0
    L.busy = redis.call('ZCARD', leases)
    L.mine = tonumber(redis.call('HGET', state, 'h:' .. ARGV[H + (i - 1) * 4 + 1])) or 0
  end
  lim[i] = L
  return L
end

-- starve marks the sharer of limit i starved in want; the trip remembers it, so that of its
-- admissions only the first after a mark takes the mark away (the others would repeat it).
local function starve(i, want)
  redis.call('ZADD', want, now, '!' .. job)
  lim[i].starved = true
end

-- meter judges n units of limit i (a rate's calls, a tpm's tokens) against its bucket (tat
-- all, interval iv, burst b) and this job's share of it (tat mine): the two new tats when they
-- fit, and the wait until the units are due, else the refusal: status refused (the limit's),
-- or refused + 1 (the share's, while another job is starved).
--
-- Units due within ahead ms are taken now, the call to start when they are due: a call that
-- asked at its token's time would reach Redis a round trip late, and a bucket of burst 1 loses
-- what lateness there is (a quarter of a rate of 400/s, measured). Taken ahead, the next
-- token counts from this one's due time, not from the call's arrival.
local function meter(i, want, share, all, mine, iv, b, n, refused)
  local ok, new, wait = gcra(all, iv, b, n)
  local due = 0
  if not ok and wait <= ahead then
    ok, due = true, wait
    redis.call('ZADD', want, now, '~' .. job)
  end
  -- The job's own bucket holds two at least: a call a little late then does not cost the job
  -- its turn (one of burst 1 would lose what lateness there is).
  local ivj, bj = iv / share, math.max(2 * n, b * share)
  local okj, newj, waitj = gcra(mine, ivj, bj, n)
  local starved, waiting = others(want)
  if not ok then
    redis.call('ZADD', want, now, '~' .. job)
    if okj then starve(i, want) end
    -- Turns come at the job's share of the tokens while other jobs want them too.
    if waiting then iv = ivj end
    return nil, nil, {refused, i, math.ceil(wait * 1000), math.ceil(iv * math.max(n, 1) * 1000)}
  end
  if not okj then
    if starved then
      redis.call('ZADD', want, now, '~' .. job)
      return nil, nil, {refused + 1, i, math.ceil(waitj * 1000), math.ceil(ivj * math.max(n, 1) * 1000)}
    end
    newj = math.min(newj, now + ivj * bj)
  end
  return new, newj, nil, due
end

local function try(seq, tokens, costs)
  local plan = {}
  -- keep: the host may hand this lease on to its next calls for a while (see keptLeases):
  -- no limit meters the calls (a rate, a tpm), and no other sharer waits on any of them.
  local keep = 1
  -- wait: the ms until the call's units of every rate and tpm are due (see meter).
  local wait = 0
  for i = 1, n do
    local b = (i - 1) * 7
    local leases, gk, want = KEYS[b + 2], KEYS[b + 4], KEYS[b + 6]
    local a = H + (i - 1) * 4
    job = ARGV[a + 1]
    local w, deflease, cost = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), costs[i]
    local L = limit(i)
    if L.hold > 0 then return {1, i, L.hold} end
    local c = L.c
    if not c[1] then return {8, i, 0} end
    local cap, rate, burst, tpm = tonumber(c[2]) or 0, tonumber(c[3]) or 0, tonumber(c[4]) or 1, tonumber(c[5]) or 0
    local p = {lease = tonumber(c[6]) or deflease}
    local share = w / math.max(L.W, w)
    if keep == 1 then
      if L.waiting == nil then L.waiting = select(2, others(want)) end
      if rate > 0 or tpm > 0 or L.waiting then keep = 0 end
    end
    if cap > 0 then
      local busy, mine = L.busy, L.mine
      if busy >= cap then
        redis.call('ZADD', want, now, job)
        if mine < cap * share then starve(i, want) end
        local first = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
        return {2, i, busy, math.ceil(tonumber(first[2]) - now)}
      end
      if mine >= cap * share and (others(want)) then
        redis.call('ZADD', want, now, job)
        return {3, i, mine}
      end
    end
    if rate > 0 or (tpm > 0 and tokens > 0) then
      local g = redis.call('HMGET', gk, 'gen', 'all', 'r:' .. job, 'tpm', 't:' .. job)
      if g[1] ~= c[1] then
        redis.call('DEL', gk)
        g = {c[1], false, false, false, false}
      end
      p.gen = c[1]
      if rate > 0 then
        if cost > burst then return {9, i, burst, 1} end
        local new, newj, refusal, due = meter(i, want, share, g[2], g[3], 1000 / rate, burst, cost, 4)
        if refusal then return refusal end
        p.all, p.mine, wait = new, newj, math.max(wait, due)
      end
      if tpm > 0 and tokens > 0 then
        if tokens > tpm then return {9, i, tpm, 2} end
        local new, newj, refusal, due = meter(i, want, share, g[4], g[5], 60000 / tpm, math.max(tpm / 60, tokens), tokens, 6)
        if refusal then return refusal end
        p.tpm, p.tmine, wait = new, newj, math.max(wait, due)
      end
    end
    plan[i] = p
  end

  local answer = {0, keep, math.ceil(wait * 1000)}
  for i = 1, n do
    local b = (i - 1) * 7
    local gk, p = KEYS[b + 4], plan[i]
    local a = H + (i - 1) * 4
    job = ARGV[a + 1]
    -- A whole ms: Redis reads a score of 12 digits faster than one of 17, and a lease of
    -- 100 ms or more lives as long within a ms.
    redis.call('ZADD', KEYS[b + 2], math.floor(now + p.lease), job .. '|' .. seq)
    if ARGV[a + 4] == '0' and lim[i].starved ~= false then
      redis.call('ZREM', KEYS[b + 6], '!' .. job)
      lim[i].starved = false
    end
    local L = lim[i]
    L.busy, L.mine, L.admitted = L.busy + 1, L.mine + 1, L.admitted + 1
    if p.gen then
      local f = {'gen', p.gen}
      if p.all then
        f[#f + 1] = 'all'; f[#f + 1] = string.format('%.4f', p.all)
        f[#f + 1] = 'r:' .. job; f[#f + 1] = string.format('%.4f', p.mine)
      end
      if p.tpm then
        f[#f + 1] = 'tpm'; f[#f + 1] = string.format('%.4f', p.tpm)
        f[#f + 1] = 't:' .. job; f[#f + 1] = string.format('%.4f', p.tmine)
      end
      redis.call('HSET', gk, unpack(f))
    end
    answer[#answer + 1] = p.lease
  end
  return answer
end

-- The trip's releases first: a slot one call gives back is there for the next.
if M > 0 then
  local keys, owners, members = {}, {}, {}
  for i = 1, n do
    local b = (i - 1) * 7
    keys[i] = {KEYS[b + 2], KEYS[b + 3], KEYS[b + 5], KEYS[b + 6], KEYS[b + 7]}
    owners[i] = ARGV[H + (i - 1) * 4 + 1]
  end
  for k = 1, M do members[k] = ARGV[H + 4 * n + k] end
  release(keys, owners, members, hold, ARGV[5], window)
end

local out = {}
for r = 1, R do
  local a = H + 4 * n + M + (r - 1) * (2 + n)
  local costs = {}
  for i = 1, n do costs[i] = tonumber(ARGV[a + 2 + i]) end
  out[r] = try(ARGV[a + 1], tonumber(ARGV[a + 2]), costs)
end

-- The counts, once a trip: of the calls admitted, and of those the host started on kept
-- leases since its last trip.
for i = 1, n do
  local admitted = lim[i] and lim[i].admitted or 0
  count(KEYS[(i - 1) * 7 + 5], ARGV[H + (i - 1) * 4 + 1], admitted, admitted + calls)
end
return out
`)

// limitReleaseScript gives leases back and, for a Retry-After, holds every job of each limit
// (only ever lengthening the hold: the calls of a batch that asked for holds take the
// longest, as they would one after the other). Each freed slot is announced on the limit's
// channel while some job waits for one, to wake one of its waiting calls.
//
// KEYS: per limit leases, hold, state, want, channel. ARGV: hold ms (0: none), holder,
// starve window ms, the number of limits, the calls the host started on kept leases since its
// last trip, then the sharer of each limit, then the leases' sequence numbers (a lease is
// SHARER|SEQ).
var limitReleaseScript = redis.NewScript(limitNow + limitRelease + limitCount + `
local hold, window, n, calls = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local keys, owners, members = {}, {}, {}
for i = 1, n do
  local b = (i - 1) * 5
  keys[i] = {KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4], KEYS[b + 5]}
  owners[i] = ARGV[5 + i]
end
for k = 6 + n, #ARGV do members[#members + 1] = ARGV[k] end
release(keys, owners, members, hold, ARGV[2], window)
for i = 1, n do count(keys[i][3], owners[i], 0, calls) end
return 0
`)

// limitCount defines count, which counts on a limit (its state) the sharer job's leases taken
// (taken) and its calls made (calls), and the limit's calls in this second and the last. It
// expects now.
const limitCount = `
local function count(state, job, taken, calls)
  if taken > 0 then redis.call('HINCRBY', state, 'h:' .. job, taken) end
  if calls <= 0 then return end
  redis.call('HINCRBY', state, 'c:' .. job, calls)
  local sec = math.floor(now / 1000)
  local s = redis.call('HMGET', state, 'sec', 'n')
  if tonumber(s[1]) == sec then
    redis.call('HINCRBY', state, 'n', calls)
  else
    local prev = 0
    if tonumber(s[1]) == sec - 1 then prev = tonumber(s[2]) or 0 end
    redis.call('HSET', state, 'sec', sec, 'n', calls, 'prev', prev)
  end
end
`

// limitRelease defines release, the release of leases that the release script makes alone and
// the acquire script before its acquisitions: for each limit (keys: leases, hold, state, want,
// channel; owners: the sharer), the leases SHARER|MEMBER go back, a hold of hold ms (0: none)
// is set by holder unless a longer one is, and each freed slot is announced on the limit's
// channel while some job waits for one; a hold set is announced there too. It expects now.
const limitRelease = `
local function release(keys, owners, members, hold, holder, window)
  for i, k in ipairs(keys) do
    local all = {}
    for j, m in ipairs(members) do all[j] = owners[i] .. '|' .. m end
    local freed = redis.call('ZREM', k[1], unpack(all))
    if freed > 0 and redis.call('HINCRBY', k[3], 'h:' .. owners[i], -freed) < 0 then
      redis.call('HSET', k[3], 'h:' .. owners[i], 0)
    end
    if hold > 0 and redis.call('PTTL', k[2]) < hold then
      redis.call('SET', k[2], holder, 'PX', hold)
      -- Every sharer's kept leases end now, not within keepFor: a call on one would not see
      -- the hold.
      redis.call('PUBLISH', k[5], 'hold')
    end
    if freed > 0 then
      for _, m in ipairs(redis.call('ZRANGEBYSCORE', k[4], now - window, '+inf')) do
        local c = string.sub(m, 1, 1)
        if c ~= '!' and c ~= '~' then
          -- One 'free' a slot, as when each lease came back alone: each wakes one waiting call.
          for _ = 1, freed do redis.call('PUBLISH', k[5], 'free') end
          break
        end
      end
    end
  end
end
`

// limitRenewScript pushes back the expiry of a call's leases still held, each by its limit's
// lease (XX: a lease released or expired is not brought back).
// KEYS: per limit conf, leases. ARGV: the lease's sequence number, then per limit its sharer
// and its default lease ms.
var limitRenewScript = redis.NewScript(limitNow + `
for b = 1, #KEYS, 2 do
  local a = b + 1
  local lease = tonumber(redis.call('HGET', KEYS[b], 'lease')) or tonumber(ARGV[a + 1])
  redis.call('ZADD', KEYS[b + 1], 'XX', math.floor(now + lease), ARGV[a] .. '|' .. ARGV[1])
end
return 0
`)

// limitBeatScript records a job's heartbeat on a limit (or its leaving, with its counts),
// forgets the jobs silent for long, and sums the weights of the jobs alive into the state's
// W, which the acquire script reads for the shares.
// KEYS: jobs, state, gcra. ARGV: job, beat JSON, alive ms, forget ms, leave (1) or not (0).
var limitBeatScript = redis.NewScript(`
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[5] == '1' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], 'c:' .. ARGV[1])
  redis.call('HDEL', KEYS[3], 'r:' .. ARGV[1], 't:' .. ARGV[1])
  if (tonumber(redis.call('HGET', KEYS[2], 'h:' .. ARGV[1])) or 0) <= 0 then
    redis.call('HDEL', KEYS[2], 'h:' .. ARGV[1])
  end
else
  local b = cjson.decode(ARGV[2])
  b['at'] = ms
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(b))
end
local W, all = 0, redis.call('HGETALL', KEYS[1])
for k = 1, #all, 2 do
  local ok, b = pcall(cjson.decode, all[k + 1])
  local at = ok and tonumber(b['at']) or 0
  if ms - at > tonumber(ARGV[4]) then
    redis.call('HDEL', KEYS[1], all[k])
    redis.call('HDEL', KEYS[2], 'h:' .. all[k], 'c:' .. all[k])
    redis.call('HDEL', KEYS[3], 'r:' .. all[k], 't:' .. all[k])
  elseif ms - at <= tonumber(ARGV[3]) then
    W = W + (tonumber(b['weight']) or 1)
  end
end
redis.call('HSET', KEYS[2], 'W', W)
return 0
`)

// limitBeatInfo is a job's heartbeat as the jobs hash stores it; At is set by Redis (unix ms).
type limitBeatInfo struct {
	Weight float64 `json:"weight"`
	Host   string  `json:"host"`
	Label  string  `json:"label"`
	// Waiting is the sharer's calls waiting on the limit (refused by it last) at the beat.
	Waiting int   `json:"waiting,omitempty"`
	At      int64 `json:"at,omitempty"`
}

// beat records this job on every limit it uses, or takes it off them (leave).
func (g *Gate) beat(ctx context.Context, leave bool) error {
	l := "0"
	if leave {
		l = "1"
	}
	for i, u := range g.limits {
		b, _ := json.Marshal(limitBeatInfo{Weight: u.weight, Host: g.host, Label: g.opts.Label, Waiting: int(max(g.blocked[i].Load(), 0))})
		keys := []string{u.key("jobs"), u.key("state"), u.key("gcra")}
		err := limitBeatScript.Run(ctx, g.rdb, keys, u.sharer, string(b), limitAlive.Milliseconds(), limitForget.Milliseconds(), l).Err()
		if err != nil {
			return redisFailure(ctx, err)
		}
	}
	return nil
}

// heartbeat beats every limitBeat until ctx ends. A beat that fails is skipped (the calls
// report the outage); the next one tries again.
func (g *Gate) heartbeat(ctx context.Context) {
	tick(ctx, limitBeat, limitBeat, false, func(ctx context.Context) bool {
		_ = g.beat(ctx, false)
		return true
	})
}

// limitMessage is what a limit's channel carries besides "free".
type limitMessage struct {
	Kind    string          `json:"kind"` // "set" or "rm"
	By      string          `json:"by"`
	At      string          `json:"at"`
	Changes json.RawMessage `json:"changes"`
}

// listen follows the limits' channels until ctx ends: a "free" wakes one call waiting for a
// slot of that limit, a change re-reads the limit and wakes every call waiting on it (a
// raised limit counts at once), and each (re)subscription re-reads every limit, so that a
// change made while this job could not hear is not missed. It survives Redis outages as
// [Job.Watch] does, through the one resubscribe loop.
func (g *Gate) listen(ctx context.Context) {
	resubscribe(ctx, g.listenOnce, func() { g.subscribed.Store(false) })
}

func (g *Gate) listenOnce(ctx context.Context) (subscribed bool) {
	channels := make([]string, len(g.limits))
	index := map[string]int{}
	for i, u := range g.limits {
		channels[i] = u.key("changes")
		index[channels[i]] = i
	}
	subs := 0
	follow(ctx, g.rdb, channels, func(msg any) bool {
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				return true
			}
			if subs++; subs < len(channels) {
				return true
			}
			subscribed = true
			for i := range g.limits {
				if !g.refresh(ctx, i) {
					return false
				}
			}
			g.subscribed.Store(true)
			for i := range g.limits {
				g.waiters[i].wakeAll()
			}
		case *redis.Message:
			i, ok := index[m.Channel]
			if !ok {
				return true
			}
			switch m.Payload {
			case "free":
				g.waiters[i].wakeSlot()
				return true
			case "hold": // another sharer's 429: no call may start on a lease kept from before
				g.dropKept()
				return true
			}
			var lm limitMessage
			if json.Unmarshal([]byte(m.Payload), &lm) != nil {
				return true
			}
			// The waiting calls first: their script reads the new settings itself; the
			// refresh, a round trip, is for Status only. The leases kept go back to be
			// judged by the new settings.
			g.waiters[i].wakeAll()
			g.dropKept()
			g.refresh(ctx, i)
			if g.opts.OnChange != nil && g.limits[i].name != "" {
				changes := decodeChanges(string(lm.Changes))
				if lm.Kind == "rm" {
					changes = []LimitChange{{Knob: "removed"}}
				}
				if len(changes) > 0 {
					g.opts.OnChange(g.limits[i].name, lm.By, changes)
				}
			}
		}
		return true
	})
	return subscribed
}

// refresh re-reads the settings of limit i for Status; it reports whether Redis answered.
func (g *Gate) refresh(ctx context.Context, i int) bool {
	c, err := g.limits[i].read(ctx)
	if errors.Is(err, ErrNoLimit) || errors.Is(err, ErrNoSettings) {
		return true // removed: the calls say so
	}
	if err != nil {
		return false
	}
	g.cfgMu.Lock()
	g.cfg[i] = c
	g.cfgMu.Unlock()
	return true
}

// limitLease is a call's leases on its limits, renewed at half their life while it runs.
// Its lease in each limit is SHARER|member.
type limitLease struct {
	g      *Gate
	member string
	ttl    time.Duration
	// keepUntil is until when the lease may go from call to call (see keptLeases); zero
	// when Redis did not allow it. gen is the gate's kept.gen when it was admitted.
	keepUntil time.Time
	gen       uint64
	mu        sync.Mutex
	timer     *time.Timer
	done      bool
}

// admit lets a call of items start, holding a lease on every limit, or returns the error Do
// returns: a Later once it waited up to MaxWait (woken by a freed slot or a change, or at its
// turn for a token, it asks again within that time, without going back to the engine), or a
// Permanent one for tokens a tpm can never grant.
func (g *Gate) admit(ctx context.Context, items []engine.Item) (*limitLease, error) {
	tokens := 0
	if g.tokens != nil {
		tokens = max(g.tokens(items), 0)
	}
	begun := time.Now()
	turned, again := false, false
	// The call counts as waiting on the limit that refused it last, until it starts or goes
	// back to the engine: `limit ls` shows those beside the calls in flight.
	on := -1
	defer func() {
		if on >= 0 {
			g.blocked[on].Add(-1)
		}
	}()
	for {
		l, r, err := g.tryAdmit(ctx, items, tokens)
		if l != nil || err != nil {
			return l, err
		}
		if r.limit != on {
			if on >= 0 {
				g.blocked[on].Add(-1)
			}
			on = r.limit
			g.blocked[on].Add(1)
		}
		left := g.opts.MaxWait - time.Since(begun)
		if left <= 0 {
			return nil, engine.Later(0)
		}
		if r.interval > 0 {
			// Each of this job's waiters takes a turn at a token of its own rather than all
			// asking for the next. One whose turn came and found the bucket a little ahead
			// (a late call moved it on: turns count from token times that then move) asks
			// once more when it is due, rather than at the end of the line: otherwise that
			// token would go unasked for. Refused again, it takes a turn again.
			if turned && !again && r.wait < r.interval {
				again = true
				r.wait += time.Duration(rand.Float64() * float64(r.interval) / 16)
			} else {
				again = false
				r.wait = g.waiters[r.limit].turn(r.wait, r.interval, g.opts.MaxWait)
			}
			turned = true
		}
		engine.WaitingFor(ctx, g.limits[r.limit].what(r.status))
		woken := g.sleep(ctx, r.limit, min(r.wait, left), r.slot)
		if ctx.Err() != nil || (!woken && r.wait >= left) {
			return nil, engine.Later(0)
		}
	}
}

// limitRefusal is why a call may not start yet: how long to wait, on which limit, and
// whether for a slot (a release may wake it) or for time to pass.
type limitRefusal struct {
	wait   time.Duration
	limit  int
	status int // the acquire script's answer
	slot   bool
	// interval is the time between two tokens of the rate or tpm that refused the call (the
	// limit's, or this job's for its share); 0 for other refusals.
	interval time.Duration
}

// tryAdmit asks once, with the next trip to Redis (see gateTrips): a lease on every limit, or
// the refusal to wait out, or the error to return.
func (g *Gate) tryAdmit(ctx context.Context, items []engine.Item, tokens int) (*limitLease, limitRefusal, error) {
	if l := g.takeKept(); l != nil {
		return l, limitRefusal{}, nil
	}
	// The gate's own id in the member: the hosts of one job are one sharer of a named limit.
	q := &acquireReq{member: g.id + "." + strconv.FormatUint(g.seq.Add(1), 36), tokens: tokens, costs: make([]int, len(g.limits))}
	for i := range g.limits {
		q.costs[i] = 1
		if g.limits[i].cost && g.cost != nil {
			q.costs[i] = max(g.cost(items), 0)
		}
	}
	start := time.Now()
	g.trips.Add(1)
	gen := g.kept.gen.Load() // before the trip: a change during it is one the lease may predate
	res, err := g.round.acquire(ctx, q)
	if err != nil {
		g.releaseLater(q.member, 0, start)
		return nil, limitRefusal{}, g.outageWait(ctx, err, start, -1)
	}
	status := gateInt(res, 0)
	if status == limitAdmitted {
		g.out.Report(nil, start)
		ttl := time.Duration(math.MaxInt64)
		for k := 3; k < len(res); k++ {
			ttl = min(ttl, time.Duration(gateInt(res, k))*time.Millisecond)
		}
		ttl = max(ttl, 100*time.Millisecond)
		g.calling.Add(1)
		l := &limitLease{g: g, member: q.member, ttl: ttl, gen: gen}
		if gateInt(res, 1) == 1 {
			l.keepUntil = start.Add(keepFor)
		}
		if due := time.Duration(gateInt(res, 2)) * time.Microsecond; due > 0 {
			// The call's tokens were taken ahead (at most limitAhead): it starts when they
			// are due, holding its place meanwhile.
			time.Sleep(due)
		}
		l.mu.Lock()
		l.timer = time.AfterFunc(ttl/2, l.renew)
		l.mu.Unlock()
		return l, limitRefusal{}, nil
	}
	i := int(gateInt(res, 1)) - 1
	if i < 0 || i >= len(g.limits) {
		return nil, limitRefusal{}, g.outageWait(ctx, fmt.Errorf("cluster: unexpected answer of the limits %v", res), start, -1)
	}
	v := time.Duration(gateInt(res, 2)) * time.Millisecond
	if status >= limitRate && status <= limitTPMShare {
		v = time.Duration(gateInt(res, 2)) * time.Microsecond
	}
	if status != limitMissing {
		g.out.Report(nil, start)
	}
	g.binds[i].add(status)
	r := limitRefusal{limit: i, status: int(status)}
	switch status {
	case limitHeld:
		// Past the hold by a random part of its spread, as the engine does, so that the jobs
		// do not come back in one instant.
		r.wait = v + time.Duration(rand.Float64()*float64(engine.HoldSpread(v)))
	case limitFull, limitShare:
		// A released slot wakes one waiting call; without the channel, poll.
		r.wait, r.slot = g.opts.MaxWait, true
		if !g.subscribed.Load() {
			r.wait = time.Duration(float64(g.opts.Poll) * (0.5 + rand.Float64()))
		}
		if status == limitFull {
			// A lease that expires (a dead job's) frees its slot without a word: be there.
			r.wait = min(r.wait, time.Duration(gateInt(res, 3))*time.Millisecond+time.Millisecond)
		}
	case limitRate, limitRateShare, limitTPM, limitTPMShare:
		r.wait, r.interval = v, max(time.Duration(gateInt(res, 3))*time.Microsecond, time.Microsecond)
	case limitMissing:
		return nil, r, g.outageWait(ctx, g.limits[i].gone(), start, i)
	case limitTooBig:
		return nil, r, engine.Permanent(g.tooBig(i, tokens, gateInt(res, 2), gateInt(res, 3)))
	default:
		return nil, r, g.outageWait(ctx, fmt.Errorf("cluster: unexpected answer of the limits %v", res), start, -1)
	}
	return nil, r, nil
}

// tooBig says why a call can never be allowed by limit i: its tokens exceed the tpm
// (what 2), or its cost the burst (what 1).
func (g *Gate) tooBig(i, tokens int, limit, what int64) error {
	which := "the job's"
	if n := g.limits[i].name; n != "" {
		which = "the shared limit " + n + "'s"
	}
	if what == 2 {
		return fmt.Errorf("cluster: a call of %d tokens exceeds the %d tokens per minute of %s: it can never be allowed", tokens, limit, strings.TrimSuffix(which, "'s"))
	}
	return fmt.Errorf("cluster: a call costing more than %s burst %d: it can never be allowed", which, limit)
}

// finish ends a call: its lease goes to this host's next call if it may (see keptLeases),
// else it stops the renewal, releases the leases and sets the hold, with the next trip to
// Redis. The call's ctx does not bound it: an ended call's place must come back. A hold ends
// the keeping of every lease admitted before it.
func (g *Gate) finish(l *limitLease, hold time.Duration) {
	g.calling.Add(-1)
	if hold > 0 {
		g.dropKept()
	} else if g.keep(l) {
		return
	}
	g.giveBack([]*limitLease{l}, hold)
}

// releaseOnce gives back leases and sets the hold, in round trips of up to 1,000 leases.
func (g *Gate) releaseOnce(ctx context.Context, members []string, hold time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for len(members) > 0 {
		n := min(len(members), maxTripReleases)
		if err := limitReleaseScript.Run(ctx, g.rdb, g.relKeys, g.releaseArgs(members[:n], hold, 0)...).Err(); err != nil {
			return redisFailure(ctx, err)
		}
		members = members[n:]
	}
	return nil
}

// releaseLater keeps trying to give back a lease in the background until Redis answers or
// the lease would have expired anyway: the places of calls that ended during an outage are
// then free as soon as Redis is back, not a lease later. It also takes the leases whose
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

// longestLease is the longest lease of the limits used, as last heard.
func (g *Gate) longestLease() time.Duration {
	g.cfgMu.Lock()
	defer g.cfgMu.Unlock()
	d := DefaultLimitLease
	for _, u := range g.limits {
		d = max(d, u.lease)
	}
	for _, c := range g.cfg {
		d = max(d, c.Lease)
	}
	return d
}

func (g *Gate) releaseLoop() {
	for {
		ttl := g.longestLease()
		time.Sleep(min(g.opts.OutageWait, ttl/4))
		var members []string
		var hold time.Duration
		g.pendMu.Lock()
		for m, p := range g.pending {
			if time.Since(p.since) >= ttl {
				delete(g.pending, m) // expired by now
				continue
			}
			members = append(members, m)
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
			g.out.Report(err, start)
			continue
		}
		g.out.Report(nil, start)
		g.pendMu.Lock()
		for _, m := range members {
			delete(g.pending, m)
		}
		g.pendMu.Unlock()
	}
}

func (l *limitLease) renew() {
	g := l.g
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl/2)
	defer cancel()
	start := time.Now()
	args := []any{l.member}
	for _, u := range g.perLimit {
		args = append(args, u[0], u[2])
	}
	err := limitRenewScript.Run(ctx, g.rdb, g.renKeys, args...).Err()
	next := l.ttl / 2
	if err != nil {
		g.out.Report(redisFailure(ctx, err), start)
		next = l.ttl / 8 // try again before the lease lapses
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.timer = time.AfterFunc(next, l.renew)
	}
}

func (l *limitLease) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
	l.timer.Stop()
}

// holdOf is the hold every job of the limits should keep after out: a 429's Retry-After, or
// a quota the target says is spent until its reset, as the engine holds its own workers;
// capped by MaxHold.
func (g *Gate) holdOf(out engine.Outcome) time.Duration {
	if out.LocalRetryAfter {
		return 0
	}
	var d time.Duration
	if out.Status == 429 && out.RetryAfter > 0 {
		d = out.RetryAfter
	}
	if q := out.Quota; q != nil && q.Remaining <= 0 && q.Reset > 0 {
		d = max(d, q.Reset)
	}
	return min(d, g.opts.MaxHold)
}

// sleep waits d, or until ctx ends or a wake-up of limit i comes (a freed slot, when slot,
// or a change of the limit); it reports whether it was woken.
func (g *Gate) sleep(ctx context.Context, i int, d time.Duration, slot bool) bool {
	if d <= 0 {
		return false
	}
	w := g.waiters[i].add(slot)
	defer g.waiters[i].remove(w)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-w.ch:
		return true
	}
	return false
}

// outageWait handles a failure before a call: the item waits, it does not fail. i is the
// limit concerned, -1 for all. The end of ctx (a stop, a timeout) is no outage.
func (g *Gate) outageWait(ctx context.Context, err error, start time.Time, i int) error {
	if ctx.Err() != nil {
		return engine.Later(0)
	}
	if !errors.Is(err, ErrNoLimit) && !errors.Is(err, ErrNoSettings) {
		err = redisFailure(ctx, err)
	}
	g.out.Report(err, start)
	for k := range g.binds {
		if i < 0 || k == i {
			g.binds[k].add(-1)
		}
	}
	what := "Redis" // unreachable: every limit waits for it
	if i >= 0 {
		what = g.limits[i].what(limitMissing)
	}
	engine.WaitingFor(ctx, what)
	g.sleep(ctx, max(i, 0), g.opts.OutageWait, false)
	return engine.Later(0)
}

// limitWaiters are the calls of this job waiting on one limit.
type limitWaiters struct {
	mu   sync.Mutex
	q    []*limitWaiter
	next time.Time // the first token time no waiter has taken yet
}

// turn returns how long a call refused a token should wait: until the token is due (v from
// now) or, when this job's waiters took that one, until the next one no waiter took, the
// limit's interval between tokens apart. Without turns every waiter would ask for the same
// token, and the refused would each ask again, a storm of round trips; a waiter that would
// wait longer than maxWait takes no turn and comes back to ask.
func (w *limitWaiters) turn(v, interval, maxWait time.Duration) time.Duration {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	at := now.Add(v)
	if w.next.After(at) {
		at = w.next
	}
	d := at.Sub(now)
	if d > maxWait {
		return maxWait
	}
	w.next = at.Add(interval)
	// A little past the token, so that the waiters of several jobs do not ask in the same
	// instant.
	return d + time.Duration(rand.Float64()*float64(interval)/16)
}

type limitWaiter struct {
	ch   chan struct{}
	slot bool // waits for a slot, not for a token or a hold
}

func (w *limitWaiters) add(slot bool) *limitWaiter {
	x := &limitWaiter{ch: make(chan struct{}, 1), slot: slot}
	w.mu.Lock()
	w.q = append(w.q, x)
	w.mu.Unlock()
	return x
}

func (w *limitWaiters) remove(x *limitWaiter) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, y := range w.q {
		if y == x {
			w.q = append(w.q[:k], w.q[k+1:]...)
			return
		}
	}
}

func (w *limitWaiters) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.q)
}

// wakeSlot wakes the call that has waited longest for a slot.
func (w *limitWaiters) wakeSlot() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, y := range w.q {
		if y.slot {
			y.ch <- struct{}{}
			w.q = append(w.q[:k], w.q[k+1:]...)
			return
		}
	}
}

// wakeAll wakes every waiting call: the limit changed.
func (w *limitWaiters) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, y := range w.q {
		y.ch <- struct{}{}
	}
	w.q = nil
	w.next = time.Time{} // the turns were for the old settings
}

// bindCounter counts a limit's refusals of this job's calls by reason over the current and
// the previous second, for Status. Reason -1 is an outage.
type bindCounter struct {
	mu        sync.Mutex
	sec       int64
	cur, prev [limitTooBig + 2]int
}

func (b *bindCounter) add(status int64) {
	if status < -1 || status > limitTooBig {
		return
	}
	now := time.Now().Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.roll(now)
	b.cur[status+1]++
}

func (b *bindCounter) roll(now int64) {
	switch now {
	case b.sec:
	case b.sec + 1:
		b.prev, b.cur, b.sec = b.cur, [limitTooBig + 2]int{}, now
	default:
		b.prev, b.cur, b.sec = [limitTooBig + 2]int{}, [limitTooBig + 2]int{}, now
	}
}

// top returns the reason of most refusals in the last one to two seconds, and their count.
func (b *bindCounter) top() (status int64, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.roll(time.Now().Unix())
	status = limitAdmitted
	for k := range b.cur {
		if c := b.cur[k] + b.prev[k]; c > n {
			status, n = int64(k-1), c
		}
	}
	return status, n
}

// LimitStatus is one limit as this job sees it now, for a screen or a snapshot: which limit
// binds the job, and how.
type LimitStatus struct {
	Name   string
	Weight float64
	Config LimitConfig
	// InFlight is this job's calls holding a lease; Waiting its calls waiting on this limit.
	InFlight, Waiting int
	// Binds says what of this limit held this job's calls in the last second or two: "" when
	// nothing did (the job's own knobs or the target bind), else "parallelism", "share of
	// parallelism", "rate", "share of rate", "tpm", "share of tpm", "Retry-After",
	// "unavailable" (Redis cannot be reached or the limit was removed).
	Binds string
	// Refused counts the refusals behind Binds.
	Refused int
}

// Status returns each limit this job uses as it sees it now.
func (g *Gate) Status() []LimitStatus {
	out := make([]LimitStatus, len(g.limits))
	for i, u := range g.limits {
		status, n := g.binds[i].top()
		out[i] = LimitStatus{
			Name: u.name, Weight: u.weight, Config: g.Config(i), InFlight: int(g.calling.Load()),
			Waiting: g.waiters[i].count(), Binds: limitReason(status), Refused: n,
		}
	}
	return out
}

// Binding says in a line which shared limit binds this job now, "" when none does: then
// the job's own knobs (or its target) bind. E.g. "shared limit tmdb: rate 100/s".
func (g *Gate) Binding() string {
	best, most := -1, 0
	st := g.Status()
	for i, s := range st {
		if s.Binds != "" && s.Refused > most {
			best, most = i, s.Refused
		}
	}
	if best < 0 {
		return ""
	}
	s := st[best]
	what := s.Binds
	switch s.Binds {
	case "rate", "share of rate":
		what += " " + engine.FormatRate(s.Config.Rate)
	case "parallelism", "share of parallelism":
		what += " " + strconv.Itoa(s.Config.Parallelism)
	case "tpm", "share of tpm":
		what += " " + strconv.FormatFloat(s.Config.TPM, 'f', -1, 64)
	}
	return "shared limit " + s.Name + ": " + what
}

func limitReason(status int64) string {
	switch status {
	case limitHeld:
		return "Retry-After"
	case limitFull:
		return "parallelism"
	case limitShare:
		return "share of parallelism"
	case limitRate:
		return "rate"
	case limitRateShare:
		return "share of rate"
	case limitTPM:
		return "tpm"
	case limitTPMShare:
		return "share of tpm"
	case -1, limitMissing:
		return "unavailable"
	}
	return ""
}

// gatePending is a lease to give back once Redis answers: the hold its call asked for and
// when it ended.
type gatePending struct {
	hold  time.Duration
	since time.Time
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
