package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/engine"
)

// Named limits: one API quota shared by different jobs ("one quota, many backfills").
//
// A named limit lives in Redis under keys of its own, throttle:limit:{NAME}:PART (the braces
// keep a limit's keys in one Redis Cluster slot):
//
//	conf     hash: gen, parallelism, rate, burst, tpm, lease (ms), updated_by, updated_at
//	leases   sorted set: one member JOB|SEQ per call in flight, scored by its expiry (ms)
//	hold     string with a TTL: a Retry-After seen by one job holds every job
//	gcra     hash: the GCRA state of generation gen: all (the limit's rate), tpm (its tokens),
//	         r:JOB and t:JOB (each job's share of them)
//	state    hash: h:JOB (a job's leases), c:JOB (its calls), W (the weights of the jobs alive),
//	         sec, n, prev (calls in the current and in the previous second)
//	want     sorted set: JOB (refused a slot lately), ~JOB (refused a token lately) and !JOB
//	         (refused while under its share), scored by when
//	jobs     hash: JOB → {"weight","host","label","at"}, each job's heartbeat
//	changes  the channel that announces `limit set` and `limit rm`, and free slots ("free")
//
// Every call takes, in one Lua script and one round trip, from every limit it uses: the
// hold, a lease under the limit's parallelism, a token of its rate and its call's tokens of
// its tokens per minute (GCRA, in the script, on Redis's clock). The script checks every
// limit before it changes any, so a call refused by one limit takes nothing from the others.
// The several limits of one call are named in one script: that needs one Redis (this
// package's client), not a Redis Cluster, where they would be in different slots.
//
// Fair sharing. Each job alive (a heartbeat within limitAlive) has a share of each limit,
// its weight over the weights of the jobs alive: of the parallelism (share × cap leases) and
// of the rate and the tokens (a GCRA of its own at share × rate next to the limit's). The
// shares are work-conserving: a job may go past its share while no other job is starved,
// that is refused within its share in the last limitStarveWindow and not served since with
// nothing more to ask (see limitAcquireScript). So one job alone gets the
// whole limit, a job that wants little leaves the rest to the others, and two jobs that both
// want more than the limit each get their share. A job that went past its share carries no
// debt: its own GCRA is clamped to an empty bucket, so that once another starves it falls
// back to its share at once rather than paying for the past.

// ErrNoLimit says a named limit does not exist in Redis (never set, or removed). The error
// returned is a [*NoLimitError], which names the limit; errors.Is(err, ErrNoLimit) holds for it.
var ErrNoLimit = errors.New("cluster: no such shared limit")

// NoLimitError says which limit does not exist in Redis, for a caller that tells the operator
// how to create it: take it with errors.As rather than reading the name out of the text.
type NoLimitError struct {
	// Name is the limit's name.
	Name string
}

// Error says "cluster: no such shared limit: NAME".
func (e *NoLimitError) Error() string { return ErrNoLimit.Error() + ": " + e.Name }

// Unwrap returns [ErrNoLimit], so that errors.Is(err, ErrNoLimit) holds.
func (e *NoLimitError) Unwrap() error { return ErrNoLimit }

// ErrLimitInUse says a limit that jobs use now cannot be removed without force.
var ErrLimitInUse = errors.New("cluster: the shared limit is in use")

const (
	// DefaultLimitLease is how long a call's lease on a named limit lives without renewal
	// unless the limit says otherwise: how long the slots of a job that died stay taken.
	DefaultLimitLease = 10 * time.Second
	// limitAlive is how recent a job's heartbeat must be for it to count in the shares.
	limitAlive = 3 * time.Second
	// limitBeat is the interval of a job's heartbeat on each limit it uses.
	limitBeat = time.Second
	// limitForget is how long a job that stopped beating stays in the jobs hash.
	limitForget = time.Minute
	// limitStarveWindow is how long a refusal within a job's share makes the other jobs keep
	// to theirs. Longer than the longest wait before a refused call asks again (MaxWait),
	// so that a job that keeps asking stays starved between its asks.
	limitStarveWindow = 500 * time.Millisecond
)

// LimitConfig is a named limit's settings. A zero Rate, Parallelism or TPM means none.
type LimitConfig struct {
	// Rate is calls per second across the jobs that use the limit; Burst the calls it allows
	// at once (GCRA: never more than Rate·t + Burst in any window t).
	Rate  float64
	Burst int
	// Parallelism caps the calls in flight across the jobs.
	Parallelism int
	// TPM caps the tokens per minute of the calls (an LLM provider's limit); a call costs its
	// estimate (see [Tokener]). The burst is a second's tokens, or one call when it is larger.
	TPM float64
	// Lease is how long a call's place lives without renewal: the slots of a job that
	// crashed come back after it. Calls that run longer renew their leases.
	Lease time.Duration
}

// Check holds c to the rules a limit's settings follow.
func (c LimitConfig) Check() error {
	switch {
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("cluster: rate %v/s: must be 0 (none) or more", c.Rate)
	case c.Burst < 1:
		return fmt.Errorf("cluster: burst %d: must be at least 1", c.Burst)
	case c.Parallelism < 0:
		return fmt.Errorf("cluster: parallelism %d: must be 0 (none) or more", c.Parallelism)
	case c.TPM < 0 || math.IsNaN(c.TPM) || math.IsInf(c.TPM, 0):
		return fmt.Errorf("cluster: tpm %v: must be 0 (none) or more", c.TPM)
	case c.Lease < 100*time.Millisecond || c.Lease > time.Hour:
		// Leases renew at half their life: below this a round trip could let one lapse.
		return fmt.Errorf("cluster: lease %v: want 100ms to 1h", c.Lease)
	case c.Rate == 0 && c.Parallelism == 0 && c.TPM == 0:
		return errors.New("cluster: a shared limit needs a rate, a parallelism or a tpm: it would limit nothing")
	}
	return nil
}

// String is the limit in one line: "rate 50/s, burst 5, parallelism 128, tpm none, lease 10s".
func (c LimitConfig) String() string {
	par, tpm := "none", "none"
	if c.Parallelism > 0 {
		par = strconv.Itoa(c.Parallelism)
	}
	if c.TPM > 0 {
		tpm = strconv.FormatFloat(c.TPM, 'f', -1, 64)
	}
	return fmt.Sprintf("rate %s, burst %d, parallelism %s, tpm %s, lease %v", engine.FormatRate(c.Rate), c.Burst, par, tpm, c.Lease)
}

// LimitSet is a change of a named limit: nil fields stay as they are (for a new limit: no
// rate, parallelism or tpm, burst 1, lease DefaultLimitLease).
type LimitSet struct {
	Rate        *float64
	Burst       *int
	Parallelism *int
	TPM         *float64
	Lease       *time.Duration
}

// LimitChange is one knob of a limit changed by `limit set`, as the hash stores it ("50",
// "10000" ms); Knob "removed" says `limit rm` removed it.
type LimitChange struct {
	Knob string `json:"knob"`
	From string `json:"from"`
	To   string `json:"to"`
}

// String renders the change for people: "rate 50/s → 200/s".
func (c LimitChange) String() string {
	if c.Knob == "removed" {
		return "removed"
	}
	show := func(v string) string {
		switch c.Knob {
		case "rate":
			r, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return engine.FormatRate(r)
			}
		case "lease":
			ms, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				return (time.Duration(ms) * time.Millisecond).String()
			}
		case "parallelism", "tpm":
			if v == "0" {
				return "none"
			}
		}
		if v == "" {
			return "none"
		}
		return v
	}
	return fmt.Sprintf("%s %s → %s", c.Knob, show(c.From), show(c.To))
}

// LimitInfo is a named limit as `limit get` and `limit ls` show it.
type LimitInfo struct {
	Name string
	LimitConfig
	// InFlight is the calls holding a lease now: at their target. Waiting is the calls of
	// the jobs alive waiting for this limit (refused by it, not started), as of their last
	// heartbeats. CallsPerSecond is the calls admitted in the last whole second.
	InFlight       int
	Waiting        int
	CallsPerSecond float64
	// Hold is what is left of a Retry-After hold; 0 when none.
	Hold time.Duration
	// Jobs are the jobs that use the limit: alive, and those that stopped beating within
	// limitForget.
	Jobs []LimitJob
	// UpdatedBy and UpdatedAt say who last set the limit, and when.
	UpdatedBy string
	UpdatedAt time.Time
}

// AliveJobs counts the jobs alive among Jobs.
func (i LimitInfo) AliveJobs() int {
	n := 0
	for _, j := range i.Jobs {
		if j.Alive {
			n++
		}
	}
	return n
}

// LimitJob is one job's use of a limit.
type LimitJob struct {
	ID, Host, Label string
	Weight          float64
	InFlight        int
	Waiting         int // as of its last heartbeat
	Calls           int64
	Seen            time.Time
	Alive           bool
}

// Limits is a connection to the named limits of one Redis.
type Limits struct {
	rdb *redis.Client
}

// ConnectLimits connects to the Redis at url (redis://HOST:PORT/DB) that holds the named
// limits, and checks that it answers.
func ConnectLimits(ctx context.Context, url string) (*Limits, error) {
	rdb, err := dial(ctx, url)
	if err != nil {
		return nil, err
	}
	return &Limits{rdb: rdb}, nil
}

// Close closes the connection.
func (l *Limits) Close() error { return l.rdb.Close() }

// Client is the Redis client, for tests.
func (l *Limits) Client() *redis.Client { return l.rdb }

// LimitKey names one of a limit's keys: throttle:limit:{NAME}:part.
func LimitKey(name, part string) string { return "throttle:limit:{" + name + "}:" + part }

// limitParts are every key of a limit, for rm.
var limitParts = []string{"conf", "leases", "hold", "gcra", "state", "want", "jobs"}

func checkLimitName(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("cluster: limit name %q: want letters, digits, '-', '_' or '.' (1 to 64)", name)
	}
	return nil
}

// limitSetScript creates or changes a limit and announces it. Reading the old values,
// writing the new and publishing happen in one step, so that the "from" of each change is
// exact when two operators set one limit at once. A change of rate, burst or tpm bumps gen:
// the acquire script then starts from a fresh GCRA state, so a raise counts at once.
//
// KEYS[1] conf. ARGV: channel, by, at, default lease ms, then field/value pairs.
// Answer: {created, changes as JSON}.
var limitSetScript = redis.NewScript(`
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  created = 1
  redis.call('HSET', KEYS[1], 'gen', 1, 'parallelism', 0, 'rate', 0, 'burst', 1, 'tpm', 0, 'lease', ARGV[4])
end
local changes, gen = {}, false
for i = 5, #ARGV, 2 do
  local k, v = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], k)
  if old ~= v or created == 1 then
    redis.call('HSET', KEYS[1], k, v)
    if k == 'rate' or k == 'burst' or k == 'tpm' then gen = true end
    if created == 1 then old = '' end
    changes[#changes + 1] = {knob = k, from = old or '', to = v}
  end
end
if gen and created == 0 then redis.call('HINCRBY', KEYS[1], 'gen', 1) end
if #changes > 0 then
  redis.call('HSET', KEYS[1], 'updated_by', ARGV[2], 'updated_at', ARGV[3])
  redis.call('PUBLISH', ARGV[1], cjson.encode({kind = 'set', by = ARGV[2], at = ARGV[3], changes = changes}))
end
return {created, cjson.encode(changes)}
`)

// Set creates the limit name or changes it; by names who did it (host/pid) for ls and the
// jobs' logs. The jobs that use the limit follow at their next call, and hear of it on the
// limit's channel at once: a raised limit wakes their waiting calls. It returns whether the
// limit was created and what changed.
func (l *Limits) Set(ctx context.Context, name, by string, s LimitSet) (created bool, changes []LimitChange, err error) {
	if err := checkLimitName(name); err != nil {
		return false, nil, err
	}
	cur, err := l.config(ctx, name)
	exists := err == nil
	switch {
	case errors.Is(err, ErrNoLimit):
		cur = LimitConfig{Burst: 1, Lease: DefaultLimitLease}
	case err != nil:
		return false, nil, err
	}
	var pairs []any
	if s.Rate != nil {
		cur.Rate = *s.Rate
		pairs = append(pairs, "rate", formatRateField(*s.Rate))
	}
	if s.Burst != nil {
		cur.Burst = *s.Burst
		pairs = append(pairs, "burst", strconv.Itoa(*s.Burst))
	}
	if s.Parallelism != nil {
		cur.Parallelism = *s.Parallelism
		pairs = append(pairs, "parallelism", strconv.Itoa(*s.Parallelism))
	}
	if s.TPM != nil {
		cur.TPM = *s.TPM
		pairs = append(pairs, "tpm", formatRateField(*s.TPM))
	}
	if s.Lease != nil {
		cur.Lease = *s.Lease
		pairs = append(pairs, "lease", strconv.FormatInt(s.Lease.Milliseconds(), 10))
	}
	if err := cur.Check(); err != nil {
		return false, nil, err
	}
	if !exists && len(pairs) == 0 {
		return false, nil, fmt.Errorf("cluster: limit %s does not exist: give it a rate, a parallelism or a tpm", name)
	}
	args := append([]any{LimitKey(name, "changes"), by, time.Now().UTC().Format(time.RFC3339Nano), DefaultLimitLease.Milliseconds()}, pairs...)
	res, err := limitSetScript.Run(ctx, l.rdb, []string{LimitKey(name, "conf")}, args...).Slice()
	if err != nil {
		return false, nil, redisFailure(ctx, err)
	}
	return gateInt(res, 0) == 1, decodeChanges(gateString(res, 1)), nil
}

// decodeChanges reads the changes a script encoded; Lua's cjson writes an empty list as {}.
func decodeChanges(s string) []LimitChange {
	var c []LimitChange
	if s == "" || s == "{}" {
		return nil
	}
	_ = json.Unmarshal([]byte(s), &c)
	return c
}

// config reads a limit's settings; ErrNoLimit when it does not exist.
func (l *Limits) config(ctx context.Context, name string) (LimitConfig, error) {
	h, err := l.rdb.HGetAll(ctx, LimitKey(name, "conf")).Result()
	if err != nil {
		return LimitConfig{}, redisFailure(ctx, err)
	}
	if len(h) == 0 || h["gen"] == "" {
		return LimitConfig{}, &NoLimitError{Name: name}
	}
	return parseLimitConfig(h), nil
}

// parseLimitConfig reads the conf hash; fields that do not parse count as their zero value,
// which the scripts read the same way (Lua's tonumber).
func parseLimitConfig(h map[string]string) LimitConfig {
	c := LimitConfig{Burst: 1, Lease: DefaultLimitLease}
	c.Rate, _ = strconv.ParseFloat(h["rate"], 64)
	c.TPM, _ = strconv.ParseFloat(h["tpm"], 64)
	c.Parallelism, _ = strconv.Atoi(h["parallelism"])
	if b, err := strconv.Atoi(h["burst"]); err == nil {
		c.Burst = b
	}
	if ms, err := strconv.ParseInt(h["lease"], 10, 64); err == nil {
		c.Lease = time.Duration(ms) * time.Millisecond
	}
	return c
}

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

// limitInfoScript reads what ls shows of a limit, dropping expired leases first so that
// the counts are true. KEYS: conf, leases, hold, state, jobs.
// Answer: {conf, leases, hold pttl, state, jobs, now in s since limitEpoch, unix ms}.
var limitInfoScript = redis.NewScript(limitNow + `
local leases, state = KEYS[2], KEYS[4]
if redis.call('EXISTS', KEYS[1]) == 0 then return {false} end
` + limitDropExpired + `
return {redis.call('HGETALL', KEYS[1]), redis.call('ZCARD', leases), redis.call('PTTL', KEYS[3]),
  redis.call('HGETALL', state), redis.call('HGETALL', KEYS[5]), math.floor(now / 1000),
  tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
`)

// Get returns the limit name with its use now; ErrNoLimit when it does not exist.
func (l *Limits) Get(ctx context.Context, name string) (LimitInfo, error) {
	if err := checkLimitName(name); err != nil {
		return LimitInfo{}, err
	}
	keys := []string{LimitKey(name, "conf"), LimitKey(name, "leases"), LimitKey(name, "hold"), LimitKey(name, "state"), LimitKey(name, "jobs")}
	res, err := limitInfoScript.Run(ctx, l.rdb, keys).Slice()
	if err != nil {
		return LimitInfo{}, redisFailure(ctx, err)
	}
	if len(res) < 7 {
		return LimitInfo{}, &NoLimitError{Name: name}
	}
	conf, state, jobs := flatMap(res[0]), flatMap(res[3]), flatMap(res[4])
	info := LimitInfo{Name: name, LimitConfig: parseLimitConfig(conf), InFlight: int(gateInt(res, 1)), UpdatedBy: conf["updated_by"]}
	info.UpdatedAt, _ = time.Parse(time.RFC3339Nano, conf["updated_at"])
	if h := gateInt(res, 2); h > 0 {
		info.Hold = time.Duration(h) * time.Millisecond
	}
	sec, nowMS := gateInt(res, 5), gateInt(res, 6)
	last, _ := strconv.ParseInt(state["sec"], 10, 64)
	switch last {
	case sec: // the current second is under way: the last whole one is prev
		info.CallsPerSecond, _ = strconv.ParseFloat(state["prev"], 64)
	case sec - 1:
		info.CallsPerSecond, _ = strconv.ParseFloat(state["n"], 64)
	}
	for id, raw := range jobs {
		var b limitBeatInfo
		if json.Unmarshal([]byte(raw), &b) != nil {
			continue
		}
		j := LimitJob{ID: id, Host: b.Host, Label: b.Label, Weight: b.Weight, Seen: time.UnixMilli(b.At)}
		j.Alive = time.Duration(nowMS-b.At)*time.Millisecond <= limitAlive
		if j.Alive {
			j.Waiting = b.Waiting
			info.Waiting += b.Waiting
		}
		j.InFlight, _ = strconv.Atoi(state["h:"+id])
		j.Calls, _ = strconv.ParseInt(state["c:"+id], 10, 64)
		info.Jobs = append(info.Jobs, j)
	}
	sort.Slice(info.Jobs, func(a, b int) bool { return info.Jobs[a].ID < info.Jobs[b].ID })
	return info, nil
}

// List returns every limit of the Redis, sorted by name.
func (l *Limits) List(ctx context.Context) ([]LimitInfo, error) {
	var names []string
	iter := l.rdb.Scan(ctx, 0, "throttle:limit:{*}:conf", 512).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if i, j := strings.Index(k, "{"), strings.LastIndex(k, "}"); i >= 0 && j > i {
			names = append(names, k[i+1:j])
		}
	}
	if err := iter.Err(); err != nil {
		return nil, redisFailure(ctx, err)
	}
	sort.Strings(names)
	var out []LimitInfo
	for _, n := range names {
		info, err := l.Get(ctx, n)
		if errors.Is(err, ErrNoLimit) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// limitRemoveScript deletes a limit's keys unless jobs alive use it (ARGV[2] = "1" forces
// it) and announces it. KEYS: conf, then the other keys. ARGV: channel, force, alive ms, by.
// Answer: 1 removed, 0 no such limit, -N in use by N jobs.
var limitRemoveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] ~= '1' then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local alive, jobs = 0, redis.call('HGETALL', KEYS[#KEYS])
  for k = 2, #jobs, 2 do
    local ok, b = pcall(cjson.decode, jobs[k])
    if ok and ms - (tonumber(b['at']) or 0) <= tonumber(ARGV[3]) then alive = alive + 1 end
  end
  if alive > 0 then return -alive end
end
redis.call('DEL', unpack(KEYS))
redis.call('PUBLISH', ARGV[1], cjson.encode({kind = 'rm', by = ARGV[4]}))
return 1
`)

// Remove deletes the limit name. While jobs alive use it, it refuses with ErrLimitInUse
// unless force: their calls then wait (a job never goes on without its limit) until the
// limit is set again.
func (l *Limits) Remove(ctx context.Context, name, by string, force bool) error {
	if err := checkLimitName(name); err != nil {
		return err
	}
	keys := make([]string, len(limitParts))
	for i, p := range limitParts {
		keys[i] = LimitKey(name, p)
	}
	f := "0"
	if force {
		f = "1"
	}
	n, err := limitRemoveScript.Run(ctx, l.rdb, keys, LimitKey(name, "changes"), f, limitAlive.Milliseconds(), by).Int()
	switch {
	case err != nil:
		return redisFailure(ctx, err)
	case n == 0:
		return &NoLimitError{Name: name}
	case n < 0:
		return fmt.Errorf("%w: %d jobs use %s now", ErrLimitInUse, -n, name)
	}
	return nil
}

func flatMap(v any) map[string]string {
	m := map[string]string{}
	flat, _ := v.([]any)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		s, _ := flat[i+1].(string)
		m[k] = s
	}
	return m
}

// LimitUse names a limit a job takes from, with the job's weight in its fair share (1 by
// default: two jobs of weight 2 and 1 share 2:1 when both want more than the limit).
type LimitUse struct {
	Name   string
	Weight float64
}

// Tokener is an optional interface of adapters whose calls spend tokens of a provider's
// tokens-per-minute limit (an LLM): Tokens is the estimate a call of items takes from a
// shared limit's tpm before it is made.
type Tokener interface {
	Tokens(items []engine.Item) int
}

// LimitOptions tune a [LimitGate]. Zero values pick the defaults shown.
type LimitOptions struct {
	// Job names this job in the limits: its share, its leases, its line in `limit ls`.
	// Default: hostname/pid/random. Processes that give the same Job share one share (the
	// hosts of one job across hosts).
	Job string
	// Host and Label describe the job in `limit ls` (default: hostname/pid, "").
	Host, Label string
	// Poll is how often a call waiting for a slot asks again when no wake-up can reach it
	// (the limit's channel is not subscribed yet, or again) (default 25 ms, jittered).
	// Subscribed, a released slot wakes one waiting call at once.
	Poll time.Duration
	// MaxWait is the longest a call waits in the gate — for a slot, a hold or a token — before
	// its item goes back to the engine, so that a pause or a drain reaches it (default 250 ms).
	MaxWait time.Duration
	// OutageWait is how long a call waits when Redis cannot be reached (default 1 s).
	OutageWait time.Duration
	// MaxHold caps a target's Retry-After as shared with the other jobs (default 60 s).
	MaxHold time.Duration
	// Tokens returns the tokens a call of items takes from a limit's tpm. Default: the inner
	// adapter's [Tokener], else its engine.Coster; without either a tpm does not apply to
	// this job's calls (see [LimitGate.CountsTokens]).
	Tokens func(items []engine.Item) int
	// OnRedisError is told when the limits become unavailable — Redis cannot be reached,
	// or a limit was removed (errors.Is ErrNoLimit) — once per outage, and when they are back
	// (nil). It is called with a lock held, in order: it must not block.
	OnRedisError func(err error)
	// OnChange is told of each `limit set` or `limit rm` of a limit in use, from the limit's
	// channel. It must not block.
	OnChange func(name, by string, changes []LimitChange)
}

// LimitGate holds a job's calls to the named limits it uses. Before each call, one script
// takes from every limit: the hold, a lease, a token of the rate, the tokens of the tpm, each
// within the job's fair share when other jobs want more (see the package's notes on named
// limits). After the call the leases are released, and a 429 with Retry-After (or a spent
// quota) holds every job that uses the limits.
//
// A call that may not start waits in the gate — for a slot until a release wakes it (the
// limit's channel says "free"), for a token until it is due, taking turns with this job's
// other waiters, for a hold until it ends — asking again after each wait, for at most
// MaxWait in all; then it returns engine.Later(0), as [Gate] does and for the same reasons. An unavailable Redis or a removed limit makes
// calls wait: the gate never lets a call through without its limits.
type LimitGate struct {
	l       *Limits
	inner   engine.Adapter
	batcher engine.Batcher
	coster  engine.Coster
	tokens  func([]engine.Item) int
	opts    LimitOptions
	uses    []LimitUse
	job     string
	host    string

	acqKeys, relKeys, renKeys []string
	weights                   []any

	seq     atomic.Uint64
	calling atomic.Int64
	trips   atomic.Int64 // acquisitions asked of Redis, admitted or not

	cfgMu sync.Mutex
	cfg   []LimitConfig // as last heard: at Use, at each (re)subscription and change

	waiters    []limitWaiters
	blocked    []atomic.Int64 // per limit: this job's calls in the gate whose last refusal was that limit's
	binds      []bindCounter
	subscribed atomic.Bool

	out limitOutage

	pendMu    sync.Mutex
	pending   map[string]gatePending
	releasing bool

	cancel    context.CancelFunc
	done      sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ engine.Adapter = (*LimitGate)(nil)
	_ engine.Resizer = (*LimitGate)(nil)
	_ engine.Batcher = limitBatch{}
	_ engine.Coster  = limitCost{}
)

// Use puts inner behind the named limits uses. It checks that each exists (ErrNoLimit
// otherwise), joins them as a job (a first heartbeat, so that the shares count this job from
// its first call) and starts the heartbeats and the subscription to the limits' channels,
// which run until Close. Give the engine [LimitGate.Adapter].
func (l *Limits) Use(ctx context.Context, inner engine.Adapter, uses []LimitUse, opts LimitOptions) (*LimitGate, error) {
	if len(uses) == 0 {
		return nil, errors.New("cluster: no limit to use")
	}
	uses = append([]LimitUse(nil), uses...)
	seen := map[string]bool{}
	for i, u := range uses {
		if err := checkLimitName(u.Name); err != nil {
			return nil, err
		}
		if seen[u.Name] {
			return nil, fmt.Errorf("cluster: limit %s named twice", u.Name)
		}
		seen[u.Name] = true
		if u.Weight == 0 {
			uses[i].Weight = 1
		}
		if w := uses[i].Weight; w <= 0 || math.IsNaN(w) || math.IsInf(w, 0) || w > 1000 {
			return nil, fmt.Errorf("cluster: limit %s: weight %v: want more than 0, at most 1000", u.Name, u.Weight)
		}
	}
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
	g := &LimitGate{
		l: l, inner: inner, opts: opts, uses: uses, job: opts.Job, host: opts.Host,
		cfg: make([]LimitConfig, len(uses)), waiters: make([]limitWaiters, len(uses)), binds: make([]bindCounter, len(uses)),
		blocked: make([]atomic.Int64, len(uses)),
	}
	g.out.notify = opts.OnRedisError
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
	for i, u := range g.uses {
		g.acqKeys = append(g.acqKeys, LimitKey(u.Name, "conf"), LimitKey(u.Name, "leases"), LimitKey(u.Name, "hold"),
			LimitKey(u.Name, "gcra"), LimitKey(u.Name, "state"), LimitKey(u.Name, "want"))
		g.relKeys = append(g.relKeys, LimitKey(u.Name, "leases"), LimitKey(u.Name, "hold"), LimitKey(u.Name, "state"), LimitKey(u.Name, "want"))
		g.renKeys = append(g.renKeys, LimitKey(u.Name, "conf"), LimitKey(u.Name, "leases"))
		g.weights = append(g.weights, formatRateField(u.Weight))
		c, err := l.config(ctx, u.Name)
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

// Close stops the heartbeats and the subscription and leaves the limits: this job no longer
// counts in their shares. Calls still in flight keep their leases until they end.
func (g *LimitGate) Close() {
	g.closeOnce.Do(func() {
		g.cancel()
		g.done.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = g.beat(ctx, true)
	})
}

// Adapter is the gate as the engine should see it: with DoBatch when the inner adapter
// batches (a chunk takes one lease), with Cost when it has one (the engine's own rate keeps
// counting it).
func (g *LimitGate) Adapter() engine.Adapter {
	switch {
	case g.batcher != nil && g.coster != nil:
		return limitBatchCost{limitBatch{g}}
	case g.batcher != nil:
		return limitBatch{g}
	case g.coster != nil:
		return limitCost{g}
	}
	return g
}

// limitBatch is a LimitGate over a batching adapter: the engine batches whenever its adapter
// has DoBatch, so it is a type of its own.
type limitBatch struct{ *LimitGate }

// DoBatch admits a chunk as one call, then calls the inner DoBatch.
func (b limitBatch) DoBatch(ctx context.Context, items []engine.Item) ([]engine.Outcome, error) {
	return admitBatch(ctx, items, b.admit, b.batcher, b.holdOf, b.finish)
}

// limitCost passes on the inner adapter's cost, for the engine's own rate.
type limitCost struct{ *LimitGate }

// Cost is the inner adapter's.
func (c limitCost) Cost(items []engine.Item) int { return c.coster.Cost(items) }

type limitBatchCost struct{ limitBatch }

func (c limitBatchCost) Cost(items []engine.Item) int { return c.coster.Cost(items) }

// Do admits one call under the limits, then calls the inner adapter.
func (g *LimitGate) Do(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	return admitOne(ctx, it, g.admit, g.inner, g.holdOf, g.finish)
}

// Resize passes the engine's parallelism on to the inner adapter if it holds a resource per
// worker.
func (g *LimitGate) Resize(parallelism int) {
	if r, ok := g.inner.(engine.Resizer); ok {
		r.Resize(parallelism)
	}
}

// CountsTokens says whether this job's calls take tokens from a limit's tpm: whether it has
// an estimate of a call's tokens.
func (g *LimitGate) CountsTokens() bool { return g.tokens != nil }

// Job is this job's name in the limits.
func (g *LimitGate) Job() string { return g.job }

// Config returns the settings of the limit used at index i as last heard.
func (g *LimitGate) Config(i int) LimitConfig {
	g.cfgMu.Lock()
	defer g.cfgMu.Unlock()
	return g.cfg[i]
}

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
	limitTooBig // the call's tokens exceed the tpm: it can never be allowed
)

// limitAcquireScript is a call's one round trip before it starts: for every limit it uses,
// the hold, the leases under the parallelism and the job's share of it, the GCRA of the rate
// and of the tpm with the job's share of each; then, if every limit admits, a lease in each,
// the GCRA states and the counts. Nothing is written for a refused call but the refusal
// itself (want), so that one limit's refusal takes nothing from another. Settings are read
// from each conf hash here, so a `limit set` counts from the next call.
//
// A job refused within its share is starved ('!JOB' in want) until the window passes or it
// is admitted with no other call of its waiting on the limit: a job that wants little stops
// holding the others back as soon as it has what it asked for, while one that wants more
// keeps them to their shares.
//
// KEYS: per limit conf, leases, hold, gcra, state, want. ARGV: job, member, tokens, starve
// window ms, default lease ms, then per limit the job's weight and how many of its calls
// wait on the limit besides this one.
// Answer: {0, lease ms per limit} or {status, limit index (1-based), value, more}: the
// hold's pttl (ms); the leases and the ms until the first expires; the job's leases; or the
// wait for a token and the interval between turns at tokens (µs: the limit's, or the job's
// share's while other jobs want tokens too), for this job's waiters to take turns.
var limitAcquireScript = redis.NewScript(limitNow + `
local job, member = ARGV[1], ARGV[2]
local tokens, window, deflease = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = #KEYS / 6

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

local plan = {}
for i = 1, n do
  local b = (i - 1) * 6
  local conf, leases, hold, gk, state, want = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4], KEYS[b + 5], KEYS[b + 6]
  local w = tonumber(ARGV[4 + 2 * i])
  local h = redis.call('PTTL', hold)
  if h > 0 then return {1, i, h} end
  local c = redis.call('HMGET', conf, 'gen', 'parallelism', 'rate', 'burst', 'tpm', 'lease')
  if not c[1] then return {8, i, 0} end
  local cap, rate, burst, tpm = tonumber(c[2]) or 0, tonumber(c[3]) or 0, tonumber(c[4]) or 1, tonumber(c[5]) or 0
  local p = {lease = tonumber(c[6]) or deflease}
` + limitDropExpired + `
  redis.call('ZREMRANGEBYSCORE', want, '-inf', now - window)
  local share = w / math.max(tonumber(redis.call('HGET', state, 'W')) or 0, w)
  if cap > 0 then
    local busy = redis.call('ZCARD', leases)
    local mine = tonumber(redis.call('HGET', state, 'h:' .. job)) or 0
    if busy >= cap then
      redis.call('ZADD', want, now, job)
      if mine < cap * share then redis.call('ZADD', want, now, '!' .. job) end
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
      local iv = 1000 / rate
      local ok, new, wait = gcra(g[2], iv, burst, 1)
      -- The job's own bucket holds two calls at least: a call a little late then does not
      -- cost the job its turn (one of burst 1 would lose what lateness there is).
      local ivj, bj = iv / share, math.max(2, burst * share)
      local okj, newj, waitj = gcra(g[3], ivj, bj, 1)
      local starved, waiting = others(want)
      if not ok then
        redis.call('ZADD', want, now, '~' .. job)
        if okj then redis.call('ZADD', want, now, '!' .. job) end
        -- Turns come at the job's share of the tokens while other jobs want them too.
        if waiting then iv = ivj end
        return {4, i, math.ceil(wait * 1000), math.ceil(iv * 1000)}
      end
      if not okj then
        if starved then
          redis.call('ZADD', want, now, '~' .. job)
          return {5, i, math.ceil(waitj * 1000), math.ceil(ivj * 1000)}
        end
        newj = math.min(newj, now + ivj * bj)
      end
      p.all, p.mine = new, newj
    end
    if tpm > 0 and tokens > 0 then
      if tokens > tpm then return {9, i, tpm} end
      local iv = 60000 / tpm
      local bt = math.max(tpm / 60, tokens)
      local ok, new, wait = gcra(g[4], iv, bt, tokens)
      local ivj, bj = iv / share, math.max(2 * tokens, bt * share)
      local okj, newj, waitj = gcra(g[5], ivj, bj, tokens)
      local starved, waiting = others(want)
      if not ok then
        redis.call('ZADD', want, now, '~' .. job)
        if okj then redis.call('ZADD', want, now, '!' .. job) end
        if waiting then iv = ivj end
        return {6, i, math.ceil(wait * 1000), math.ceil(iv * tokens * 1000)}
      end
      if not okj then
        if starved then
          redis.call('ZADD', want, now, '~' .. job)
          return {7, i, math.ceil(waitj * 1000), math.ceil(ivj * tokens * 1000)}
        end
        newj = math.min(newj, now + ivj * bj)
      end
      p.tpm, p.tmine = new, newj
    end
  end
  plan[i] = p
end

local answer = {0}
local sec = math.floor(now / 1000)
for i = 1, n do
  local b = (i - 1) * 6
  local gk, state, p = KEYS[b + 4], KEYS[b + 5], plan[i]
  redis.call('ZADD', KEYS[b + 2], now + p.lease, member)
  if ARGV[5 + 2 * i] == '0' then redis.call('ZREM', KEYS[b + 6], '!' .. job) end
  redis.call('HINCRBY', state, 'h:' .. job, 1)
  redis.call('HINCRBY', state, 'c:' .. job, 1)
  local s = redis.call('HMGET', state, 'sec', 'n')
  if tonumber(s[1]) == sec then
    redis.call('HINCRBY', state, 'n', 1)
  else
    local prev = 0
    if tonumber(s[1]) == sec - 1 then prev = tonumber(s[2]) or 0 end
    redis.call('HSET', state, 'sec', sec, 'n', 1, 'prev', prev)
  end
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
`)

// limitReleaseScript gives leases back and, for a Retry-After, holds every job of each limit
// (only ever lengthening the hold). A freed slot is announced on the limit's channel while
// some job waits for one, to wake one of its waiting calls.
//
// KEYS: per limit leases, hold, state, want. ARGV: hold ms (0: none), holder, starve window
// ms, then the leases' members.
var limitReleaseScript = redis.NewScript(limitNow + `
local hold, window = tonumber(ARGV[1]), tonumber(ARGV[3])
for b = 1, #KEYS, 4 do
  local freed = 0
  for k = 4, #ARGV do
    if redis.call('ZREM', KEYS[b], ARGV[k]) == 1 then
      freed = freed + 1
      local owner = string.match(ARGV[k], '^(.*)|')
      if owner and redis.call('HINCRBY', KEYS[b + 2], 'h:' .. owner, -1) < 0 then
        redis.call('HSET', KEYS[b + 2], 'h:' .. owner, 0)
      end
    end
  end
  if hold > 0 and redis.call('PTTL', KEYS[b + 1]) < hold then
    redis.call('SET', KEYS[b + 1], ARGV[2], 'PX', hold)
  end
  if freed > 0 then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[b + 3], now - window, '+inf')) do
      local c = string.sub(m, 1, 1)
      if c ~= '!' and c ~= '~' then
        redis.call('PUBLISH', string.sub(KEYS[b], 1, -7) .. 'changes', 'free')
        break
      end
    end
  end
end
return 0
`)

// limitRenewScript pushes back the expiry of a call's leases still held, each by its limit's
// lease (XX: a lease released or expired is not brought back).
// KEYS: per limit conf, leases. ARGV: member, default lease ms.
var limitRenewScript = redis.NewScript(limitNow + `
for b = 1, #KEYS, 2 do
  local lease = tonumber(redis.call('HGET', KEYS[b], 'lease')) or tonumber(ARGV[2])
  redis.call('ZADD', KEYS[b + 1], 'XX', now + lease, ARGV[1])
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
	// Waiting is the job's calls waiting on the limit (refused by it last) at the beat.
	Waiting int   `json:"waiting,omitempty"`
	At      int64 `json:"at,omitempty"`
}

// beat records this job on every limit it uses, or takes it off them (leave).
func (g *LimitGate) beat(ctx context.Context, leave bool) error {
	l := "0"
	if leave {
		l = "1"
	}
	for i, u := range g.uses {
		b, _ := json.Marshal(limitBeatInfo{Weight: u.Weight, Host: g.host, Label: g.opts.Label, Waiting: int(max(g.blocked[i].Load(), 0))})
		keys := []string{LimitKey(u.Name, "jobs"), LimitKey(u.Name, "state"), LimitKey(u.Name, "gcra")}
		err := limitBeatScript.Run(ctx, g.l.rdb, keys, g.job, string(b), limitAlive.Milliseconds(), limitForget.Milliseconds(), l).Err()
		if err != nil {
			return redisFailure(ctx, err)
		}
	}
	return nil
}

// heartbeat beats every limitBeat until ctx ends. A beat that fails is skipped (the calls
// report the outage); the next one tries again.
func (g *LimitGate) heartbeat(ctx context.Context) {
	t := time.NewTicker(limitBeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		bctx, cancel := context.WithTimeout(ctx, limitBeat)
		_ = g.beat(bctx, false)
		cancel()
	}
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
// [Job.Watch] does.
func (g *LimitGate) listen(ctx context.Context) {
	wait := watchBackoffMin
	for ctx.Err() == nil {
		if g.listenOnce(ctx) {
			wait = watchBackoffMin
		}
		g.subscribed.Store(false)
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(time.Duration(float64(wait) * (0.5 + rand.Float64()/2)))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, watchBackoffMax)
	}
}

func (g *LimitGate) listenOnce(ctx context.Context) (subscribed bool) {
	channels := make([]string, len(g.uses))
	index := map[string]int{}
	for i, u := range g.uses {
		channels[i] = LimitKey(u.Name, "changes")
		index[channels[i]] = i
	}
	ps := g.l.rdb.Subscribe(ctx, channels...)
	var closeOnce sync.Once
	closePS := func() { closeOnce.Do(func() { _ = ps.Close() }) } // closing a subscription: nothing is lost
	defer closePS()
	stop := context.AfterFunc(ctx, closePS)
	defer stop()
	pinged, subs := false, 0
	for {
		msg, ok := receive(ctx, ps, &pinged)
		if !ok {
			return subscribed
		}
		if msg == nil {
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			if subs++; subs < len(channels) {
				continue
			}
			subscribed = true
			for i := range g.uses {
				if !g.refresh(ctx, i) {
					return subscribed
				}
			}
			g.subscribed.Store(true)
			for i := range g.uses {
				g.waiters[i].wakeAll()
			}
		case *redis.Message:
			i, ok := index[m.Channel]
			if !ok {
				continue
			}
			if m.Payload == "free" {
				g.waiters[i].wakeSlot()
				continue
			}
			var lm limitMessage
			if json.Unmarshal([]byte(m.Payload), &lm) != nil {
				continue
			}
			g.refresh(ctx, i)
			g.waiters[i].wakeAll()
			if g.opts.OnChange != nil {
				changes := decodeChanges(string(lm.Changes))
				if lm.Kind == "rm" {
					changes = []LimitChange{{Knob: "removed"}}
				}
				if len(changes) > 0 {
					g.opts.OnChange(g.uses[i].Name, lm.By, changes)
				}
			}
		}
	}
}

// refresh re-reads the settings of limit i for Status; it reports whether Redis answered.
func (g *LimitGate) refresh(ctx context.Context, i int) bool {
	c, err := g.l.config(ctx, g.uses[i].Name)
	if errors.Is(err, ErrNoLimit) {
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
type limitLease struct {
	g      *LimitGate
	member string
	ttl    time.Duration
	mu     sync.Mutex
	timer  *time.Timer
	done   bool
}

// admit lets a call of items start, holding a lease on every limit, or returns the error Do
// returns: a Later once it waited up to MaxWait (woken by a freed slot or a change, or at its
// turn for a token, it asks again within that time, without going back to the engine), or a
// Permanent one for tokens a tpm can never grant.
func (g *LimitGate) admit(ctx context.Context, items []engine.Item) (*limitLease, error) {
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
		l, r, err := g.tryAdmit(ctx, tokens)
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
		engine.WaitingFor(ctx, "limit "+g.uses[r.limit].Name)
		woken := g.sleep(ctx, r.limit, min(r.wait, left), r.slot)
		if ctx.Err() != nil || (!woken && r.wait >= left) {
			return nil, engine.Later(0)
		}
	}
}

// limitRefusal is why a call may not start yet: how long to wait, on which limit, and
// whether for a slot (a release may wake it) or for time to pass.
type limitRefusal struct {
	wait  time.Duration
	limit int
	slot  bool
	// interval is the time between two tokens of the rate or tpm that refused the call (the
	// limit's, or this job's for its share); 0 for other refusals.
	interval time.Duration
}

// tryAdmit makes one round trip: a lease on every limit, or the refusal to wait out, or the
// error to return.
func (g *LimitGate) tryAdmit(ctx context.Context, tokens int) (*limitLease, limitRefusal, error) {
	member := g.job + "|" + strconv.FormatUint(g.seq.Add(1), 36)
	args := []any{g.job, member, tokens, limitStarveWindow.Milliseconds(), DefaultLimitLease.Milliseconds()}
	for i, w := range g.weights {
		args = append(args, w, g.waiters[i].count())
	}
	start := time.Now()
	g.trips.Add(1)
	res, err := limitAcquireScript.Run(ctx, g.l.rdb, g.acqKeys, args...).Slice()
	if err != nil {
		g.releaseLater(member, 0, start)
		return nil, limitRefusal{}, g.outageWait(ctx, err, start, -1)
	}
	status := gateInt(res, 0)
	if status == limitAdmitted {
		g.out.report(nil, start)
		ttl := time.Duration(math.MaxInt64)
		for k := 1; k < len(res); k++ {
			ttl = min(ttl, time.Duration(gateInt(res, k))*time.Millisecond)
		}
		ttl = max(ttl, 100*time.Millisecond)
		g.calling.Add(1)
		l := &limitLease{g: g, member: member, ttl: ttl}
		l.mu.Lock()
		l.timer = time.AfterFunc(ttl/2, l.renew)
		l.mu.Unlock()
		return l, limitRefusal{}, nil
	}
	i := int(gateInt(res, 1)) - 1
	if i < 0 || i >= len(g.uses) {
		return nil, limitRefusal{}, g.outageWait(ctx, fmt.Errorf("cluster: unexpected answer of the limits %v", res), start, -1)
	}
	v := time.Duration(gateInt(res, 2)) * time.Millisecond
	if status >= limitRate && status <= limitTPMShare {
		v = time.Duration(gateInt(res, 2)) * time.Microsecond
	}
	if status != limitMissing {
		g.out.report(nil, start)
	}
	g.binds[i].add(status)
	r := limitRefusal{limit: i}
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
		return nil, r, g.outageWait(ctx, &NoLimitError{Name: g.uses[i].Name}, start, i)
	case limitTooBig:
		return nil, r, engine.Permanent(fmt.Errorf("cluster: a call of %d tokens exceeds the %d tokens per minute of the shared limit %s: it can never be allowed", tokens, gateInt(res, 2), g.uses[i].Name))
	default:
		return nil, r, g.outageWait(ctx, fmt.Errorf("cluster: unexpected answer of the limits %v", res), start, -1)
	}
	return nil, r, nil
}

// finish ends a call: stops the renewal, releases the leases and sets the hold.
func (g *LimitGate) finish(ctx context.Context, l *limitLease, hold time.Duration) {
	g.calling.Add(-1)
	l.stop()
	start := time.Now()
	if err := g.releaseOnce(context.WithoutCancel(ctx), []string{l.member}, hold); err != nil {
		g.out.report(err, start)
		g.releaseLater(l.member, hold, start)
	}
}

// releaseOnce gives back leases and sets the hold, in round trips of up to 1,000 leases.
func (g *LimitGate) releaseOnce(ctx context.Context, members []string, hold time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for len(members) > 0 {
		n := min(len(members), 1000)
		args := []any{hold.Milliseconds(), g.job, limitStarveWindow.Milliseconds()}
		for _, m := range members[:n] {
			args = append(args, m)
		}
		if err := limitReleaseScript.Run(ctx, g.l.rdb, g.relKeys, args...).Err(); err != nil {
			return redisFailure(ctx, err)
		}
		members = members[n:]
	}
	return nil
}

// releaseLater keeps trying to give back a lease in the background until Redis answers or
// the lease would have expired anyway, as [Gate] does; it also takes the leases whose
// acquisition failed, as Redis may have granted one whose answer was lost.
func (g *LimitGate) releaseLater(member string, hold time.Duration, since time.Time) {
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
func (g *LimitGate) longestLease() time.Duration {
	g.cfgMu.Lock()
	defer g.cfgMu.Unlock()
	d := DefaultLimitLease
	for _, c := range g.cfg {
		d = max(d, c.Lease)
	}
	return d
}

func (g *LimitGate) releaseLoop() {
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
			g.out.report(err, start)
			continue
		}
		g.out.report(nil, start)
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
	err := limitRenewScript.Run(ctx, g.l.rdb, g.renKeys, l.member, DefaultLimitLease.Milliseconds()).Err()
	next := l.ttl / 2
	if err != nil {
		g.out.report(redisFailure(ctx, err), start)
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
func (g *LimitGate) holdOf(out engine.Outcome) time.Duration {
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
func (g *LimitGate) sleep(ctx context.Context, i int, d time.Duration, slot bool) bool {
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
func (g *LimitGate) outageWait(ctx context.Context, err error, start time.Time, i int) error {
	if ctx.Err() != nil {
		return engine.Later(0)
	}
	if !errors.Is(err, ErrNoLimit) {
		err = redisFailure(ctx, err)
	}
	g.out.report(err, start)
	for k := range g.binds {
		if i < 0 || k == i {
			g.binds[k].add(-1)
		}
	}
	what := "Redis" // unreachable: every limit waits for it
	if i >= 0 {
		what = "limit " + g.uses[i].Name
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
func (g *LimitGate) Status() []LimitStatus {
	out := make([]LimitStatus, len(g.uses))
	for i, u := range g.uses {
		status, n := g.binds[i].top()
		out[i] = LimitStatus{
			Name: u.Name, Weight: u.Weight, Config: g.Config(i), InFlight: int(g.calling.Load()),
			Waiting: g.waiters[i].count(), Binds: limitReason(status), Refused: n,
		}
	}
	return out
}

// Binding says in a line which shared limit binds this job now, "" when none does: then
// the job's own knobs (or its target) bind. E.g. "shared limit tmdb: rate 100/s".
func (g *LimitGate) Binding() string {
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

// limitOutage reports outages once each, as [Gate.report] does: an outage when an operation
// begun after the last one ended fails, its end once Redis answered without failure for
// gateQuiet.
type limitOutage struct {
	notify   func(error)
	down     atomic.Bool
	mu       sync.Mutex
	outDown  bool
	lastFail time.Time
	upAt     time.Time
}

func (o *limitOutage) report(err error, start time.Time) {
	if err == nil && !o.down.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	switch {
	case err != nil:
		o.lastFail = now
		if o.outDown || start.Before(o.upAt) {
			return
		}
		o.outDown = true
	case o.outDown && now.Sub(o.lastFail) >= gateQuiet:
		o.outDown = false
		o.upAt = now
	default:
		return
	}
	o.down.Store(o.outDown)
	if o.notify != nil {
		o.notify(err)
	}
}
